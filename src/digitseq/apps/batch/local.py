"""Every core of one machine: ``digitseq predict --jobs N``.

Paths are cut into chunks; worker processes decode and preprocess a chunk each and send back the
model inputs (numpy arrays); the main process runs the model on each chunk as one batch and
yields the readings in input order. At most ``2 * jobs + 1`` chunks are in flight, so memory does
not grow with the number of files. A worker that dies (killed, or a decoder that crashes) breaks
the pool: a new pool is started and the chunks not yet yielded are submitted again, so every file
is read exactly once. A chunk that breaks the pool three times is read one file per process,
and the file that kills its process becomes an error reading.
"""

from __future__ import annotations

import itertools
import logging
import multiprocessing
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path

from digitseq.apps.batch.work import finish, init_worker, line_input, prepare_files
from digitseq.core.errors import one_line
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
    # forkserver: workers start from a small clean process, never from this one (which holds
    # the model and its threads: forking a threaded process can deadlock the child).
    ctx = multiprocessing.get_context("forkserver")
    return ProcessPoolExecutor(jobs, mp_context=ctx, initializer=init_worker)


def read_all(
    items: Iterable[Path | Reading],
    predictor,
    jobs: int = 1,
    min_confidence: float | None = None,
    chunk_size: int = 64,
) -> Iterator[Reading]:
    """Readings of ``items`` in order; with ``jobs`` > 1, preprocessing in worker processes."""
    chunks = (Chunk(list(c)) for c in batched(items, chunk_size))
    line = line_input(predictor)
    if jobs <= 1:
        for c in chunks:
            yield from assemble(c, prepare_files(c.paths, line), predictor, min_confidence)
        return
    window: deque[Chunk] = deque()
    pool = new_pool(jobs)
    try:
        while True:
            while len(window) < 2 * jobs + 1 and (c := next(chunks, None)) is not None:
                window.append(c)
                submit(pool, c, line)
            if not window:
                return
            head = window[0]
            try:
                prepared = wait(head, line)
            except BrokenProcessPool:
                log.warning("a worker process died: restarting the pool, reading its chunks again")
                pool.shutdown(wait=False, cancel_futures=True)
                pool = new_pool(jobs)
                for c in window:
                    c.attempts += 1
                    submit(pool, c, line)
                continue
            window.popleft()
            yield from assemble(head, prepared, predictor, min_confidence)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def submit(pool: ProcessPoolExecutor, c: Chunk, line: bool) -> None:
    c.future = None
    if c.paths and c.attempts < MAX_ATTEMPTS:
        try:
            c.future = pool.submit(prepare_files, c.paths, line)
        except BrokenProcessPool:  # found broken on submit: wait() will restart it
            c.future = Future()
            c.future.set_exception(BrokenProcessPool("broken on submit"))


def wait(c: Chunk, line: bool) -> list[Reading]:
    if not c.paths:
        return []
    if c.future is None:  # broke the pool MAX_ATTEMPTS times: one process per file
        return isolated(c.paths, line)
    try:
        return c.future.result()
    except BrokenProcessPool:
        raise
    except Exception as e:  # noqa: BLE001 - e.g. a result that cannot be sent back
        return [Reading(file=p, error=f"cannot read image ({one_line(e)})") for p in c.paths]


def isolated(paths: list[str], line: bool) -> list[Reading]:
    """Read each file in a process of its own; a file whose process dies gets an error."""
    out = []
    for p in paths:
        with new_pool(1) as solo:
            try:
                out.extend(solo.submit(prepare_files, [p], line).result())
            except BrokenProcessPool:
                out.append(Reading(file=p, error=CRASHED))
    return out


def assemble(c: Chunk, prepared: list[Reading], predictor, min_confidence) -> Iterator[Reading]:
    """The chunk's readings in input order: the model run once over its prepared inputs."""
    read = iter(finish(predictor, prepared, min_confidence, batch_size=max(1, len(prepared))))
    for e in c.entries:
        yield next(read) if isinstance(e, Path) else e


def batched(items: Iterable, n: int) -> Iterator[tuple]:
    it = iter(items)
    while chunk := tuple(itertools.islice(it, n)):
        yield chunk
