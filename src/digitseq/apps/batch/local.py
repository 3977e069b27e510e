"""Every core of one machine: ``digitseq predict --jobs N``.

Paths are cut into chunks; each worker process holds one loaded reader and turns a chunk into
readings (decode, preprocess, then the model on the chunk as one batch); the main process only
walks the inputs, puts the readings back in input order and writes them. The model runs in the
workers, not in the main process: with it in the main process, reading 28x140 strips kept the
main process busy and the workers idle, and two jobs were no faster than one. At most
``2 * jobs + 1`` chunks are in flight, so memory does not grow with the number of files.

A worker that dies (killed, or a decoder that crashes) breaks the pool: a new pool is started
and the chunks not yet yielded are submitted again, so every file is read exactly once. A chunk
that breaks the pool three times is read one file per process, and the file that kills its
process becomes an error reading.
"""

from __future__ import annotations

import itertools
import logging
import multiprocessing
import os
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path

from digitseq.apps.batch.work import ReaderSpec, init_worker, read_files
from digitseq.core.errors import DigitseqError, one_line
from digitseq.reading.predictor import Reading

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 3
CRASHED = "the reading process died on this file (a crash in the image decoder?)"


@dataclass
class Chunk:
    entries: list  # Path (to read) | Reading (an input error, already final), in input order
    attempts: int = 0
    future: Future | None = field(default=None, repr=False)

    @property
    def paths(self) -> list[str]:
        return [str(e) for e in self.entries if isinstance(e, Path)]


def new_pool(jobs: int) -> ProcessPoolExecutor:
    # spawn: fresh interpreters, direct children of this process (so they can tell when it
    # dies), never a fork of it (it may hold a model and its threads: forking a threaded
    # process can deadlock the child). Each worker loads its reader once, on its first chunk.
    ctx = multiprocessing.get_context("spawn")
    return ProcessPoolExecutor(
        jobs, mp_context=ctx, initializer=init_worker, initargs=(os.getpid(),)
    )


def read_all(
    items: Iterable[Path | Reading], spec: ReaderSpec, jobs: int = 1, chunk_size: int = 64
) -> Iterator[Reading]:
    """Readings of ``items`` in order; with ``jobs`` > 1 (and more than one chunk), read in
    worker processes."""
    chunks = (Chunk(list(c)) for c in batched(items, chunk_size))
    head = list(itertools.islice(chunks, 2))
    chunks = itertools.chain(head, chunks)
    if jobs <= 1 or len(head) < 2:  # one chunk: not worth starting processes
        for c in chunks:
            yield from assemble(c, read_files(c.paths, spec) if c.paths else [])
        return
    window: deque[Chunk] = deque()
    pool = new_pool(jobs)
    try:
        while True:
            while len(window) < 2 * jobs + 1 and (c := next(chunks, None)) is not None:
                window.append(c)
                submit(pool, c, spec)
            if not window:
                return
            head = window[0]
            try:
                readings = wait(head, spec)
            except BrokenProcessPool:
                log.warning("a worker process died: restarting the pool, reading its chunks again")
                pool.shutdown(wait=False, cancel_futures=True)
                pool = new_pool(jobs)
                for c in window:
                    c.attempts += 1
                    submit(pool, c, spec)
                continue
            window.popleft()
            yield from assemble(head, readings)
    except BaseException:  # a stop signal, or the reader closed early: do not finish chunks
        stop(pool)
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def stop(pool: ProcessPoolExecutor) -> None:
    """End the workers now (SIGTERM each, then wait for it): chunks in flight are dropped."""
    procs = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for p in procs:
        p.terminate()
    for p in procs:
        p.join(10)


def submit(pool: ProcessPoolExecutor, c: Chunk, spec: ReaderSpec) -> None:
    c.future = None
    if c.paths and c.attempts < MAX_ATTEMPTS:
        try:
            c.future = pool.submit(read_files, c.paths, spec)
        except BrokenProcessPool:  # found broken on submit: wait() will restart it
            c.future = Future()
            c.future.set_exception(BrokenProcessPool("broken on submit"))


def wait(c: Chunk, spec: ReaderSpec) -> list[Reading]:
    if not c.paths:
        return []
    if c.future is None:  # broke the pool MAX_ATTEMPTS times: one process per file
        return isolated(c.paths, spec)
    try:
        return c.future.result()
    except (BrokenProcessPool, DigitseqError):  # DigitseqError: the model cannot be loaded
        raise
    except Exception as e:  # noqa: BLE001 - e.g. a result that cannot be sent back
        return [Reading(file=p, error=f"cannot read image ({one_line(e)})") for p in c.paths]


def isolated(paths: list[str], spec: ReaderSpec) -> list[Reading]:
    """Read each file in a process of its own; a file whose process dies gets an error."""
    out = []
    for p in paths:
        with new_pool(1) as solo:
            try:
                out.extend(solo.submit(read_files, [p], spec).result())
            except BrokenProcessPool:
                out.append(Reading(file=p, error=CRASHED))
    return out


def assemble(c: Chunk, readings: list[Reading]) -> Iterator[Reading]:
    """The chunk's readings in input order (input errors in their places)."""
    read = iter(readings)
    for e in c.entries:
        yield next(read) if isinstance(e, Path) else e


def batched(items: Iterable, n: int) -> Iterator[tuple]:
    it = iter(items)
    while chunk := tuple(itertools.islice(it, n)):
        yield chunk
