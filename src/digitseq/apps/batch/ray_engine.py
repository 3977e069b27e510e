"""``digitseq predict --engine ray``: the same reading on Ray Data, from a laptop to a cluster.

files (local paths, or any URI Ray Data reads: ``s3://``, ``gs://``, ...) -> preprocessing in
parallel tasks -> the model in a pool of actors, each holding one loaded Predictor, on batches
of ``batch_size`` -> records with the fields of ``predict --format jsonl`` (streamed back to
the driver in input order, or written as Parquet by the cluster).

``ray.init()`` joins the cluster named by ``RAY_ADDRESS`` when it is set, or starts a local one
(all cores). This is the only module of the package that imports ray (``digitseq[cluster]``).
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from digitseq.apps.batch.inputs import iter_items
from digitseq.apps.batch.output import json_record
from digitseq.apps.batch.work import finish, prepare_bytes, prepare_files
from digitseq.core import reaper
from digitseq.core.errors import DigitseqError
from digitseq.core.progress import is_terminal
from digitseq.reading.predictor import Reading
from digitseq.reading.preprocess import IMAGE_SUFFIXES

PREPARE = {"batch_size": 64, "batch_format": "numpy"}  # files per preprocessing task


def ray_module():
    try:
        import ray
        import ray.data  # noqa: F401 - the data extra (pyarrow, pandas)
    except ImportError:
        raise DigitseqError(
            "--engine ray needs Ray Data: pip install 'digitseq[cluster]'"
        ) from None
    return ray


_REAPER: list = []  # the reaper of the local cluster this process started (core.reaper)


def init(num_cpus: int | None = None):
    """Join ``RAY_ADDRESS``'s cluster, or start a local one; reuse a running session."""
    ray = ray_module()
    if not ray.is_initialized():
        address = os.environ.get("RAY_ADDRESS") or None
        kwargs = {} if address else {"num_cpus": num_cpus, "include_dashboard": False}
        if not address:  # the cluster's agents outlive a driver killed with SIGKILL
            _REAPER.append(reaper.start())
        previous = signal.getsignal(signal.SIGTERM)
        ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING, **kwargs)
        if callable(previous) and threading.current_thread() is threading.main_thread():
            # ray.init put in its own handler (sys.exit at once, even mid-write); the CLI's
            # (core.lifeline.stop_raises) also unwinds, but never inside a write, and the
            # cluster is shut down on the way out (shutdown below)
            signal.signal(signal.SIGTERM, previous)
    ctx = ray.data.DataContext.get_current()
    ctx.execution_options.preserve_order = True  # output order = input order, as --jobs
    ctx.enable_progress_bars = is_terminal(sys.stderr)
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    return ray


def shutdown() -> None:
    """Stop the local cluster this process started (nothing for a joined one)."""
    if _REAPER:
        ray_module().shutdown()
        reaper.stop(_REAPER.pop())


# --- the stages -----------------------------------------------------------------------------------


def as_columns(readings: list[Reading]) -> dict:
    """Prepared readings -> a batch of columns: file, input (N, H, W) float32, error."""
    shapes = {r.input.shape for r in readings if r.input is not None} or {(1, 1)}
    shape = next(iter(shapes))
    if len(shapes) == 1:
        inputs = np.stack([r.input if r.input is not None else np.zeros(shape, np.float32)
                           for r in readings])  # fmt: skip
    else:  # lines of different widths (any-length readers): a ragged column
        inputs = np.empty(len(readings), dtype=object)
        for i, r in enumerate(readings):
            inputs[i] = r.input if r.input is not None else np.zeros(shape, np.float32)
    return {
        "file": np.array([r.file for r in readings], dtype=object),
        "input": inputs,
        "error": np.array([r.error for r in readings], dtype=object),
    }


def text_or_none(value) -> str | None:
    """A string column cell; an all-None column arrives as float NaN in numpy batches."""
    return value if isinstance(value, str) else None


def prepare_local(batch: dict, line: bool) -> dict:
    """Rows of (path, error) from the local listing -> prepared columns."""
    readings = []
    for path, error in zip(batch["path"], map(text_or_none, batch["error"]), strict=True):
        if error is None:
            readings.extend(prepare_files([path], line))
        else:
            readings.append(Reading(file=path, error=error))
    return as_columns(readings)


def prepare_remote(batch: dict, line: bool) -> dict:
    """Rows of (bytes, path) read by Ray Data from any filesystem -> prepared columns."""
    pairs = list(zip(batch["path"], batch["bytes"], strict=True))
    return as_columns(prepare_bytes(pairs, line))


class Reader:
    """An actor of the inference pool: one Predictor, loaded once, run on whole batches."""

    def __init__(self, model, backend: str, min_confidence, include_abstained: bool, digits,
                 pattern=None):  # fmt: skip
        from digitseq.reading.predictor import Predictor

        self.predictor = Predictor.load(model, backend=backend)
        self.predictor.digits, self.predictor.pattern = digits, pattern
        self.min_confidence = min_confidence
        self.include_abstained = include_abstained

    def __call__(self, batch: dict):
        import pyarrow as pa

        errors = map(text_or_none, batch["error"])
        readings = [
            Reading(file=f, error=e, input=None if e is not None else np.asarray(x, np.float32))
            for f, x, e in zip(batch["file"], batch["input"], errors, strict=True)
        ]
        finish(self.predictor, readings, self.min_confidence, batch_size=len(readings))
        records = [json_record(r.to_json(self.include_abstained)) for r in readings]
        table = pa.Table.from_pylist(records)
        for i, col in enumerate(table.schema):  # an all-None column of this batch: keep it text
            if pa.types.is_null(col.type):
                table = table.set_column(i, col.name, table.column(i).cast(pa.string()))
        return table


# --- the pipeline ---------------------------------------------------------------------------------


def dataset(
    sources: Iterable[str], model, backend: str, recursive: bool, min_confidence,
    include_abstained: bool, batch_size: int, digits=None, num_cpus: int | None = None,
    pattern: str | None = None,
):  # fmt: skip
    """The lazy Ray Dataset of records for ``sources`` (nothing runs until it is consumed)."""
    from digitseq.reading.predictor import Predictor

    probe = Predictor.load(model, backend=backend)  # a bad model or --digits: one line, now
    probe.check_digits(digits, pattern)
    line = probe.line
    del probe
    ray = init(num_cpus)
    local, remote = [], []
    for s in sources:
        (remote if "://" in str(s) else local).append(str(s))
    parts = []
    if local:
        rows = [
            {"path": str(i.file), "error": i.error} if isinstance(i, Reading)
            else {"path": str(i), "error": None}
            for i in iter_items(local, recursive)
        ]  # fmt: skip
        listed = ray.data.from_items(rows)
        parts.append(listed.map_batches(prepare_local, fn_kwargs={"line": line}, **PREPARE))
    if remote:
        files = ray.data.read_binary_files(
            remote, include_paths=True, file_extensions=[s[1:] for s in IMAGE_SUFFIXES]
        )
        parts.append(files.map_batches(prepare_remote, fn_kwargs={"line": line}, **PREPARE))
    ds = parts[0] if len(parts) == 1 else parts[0].union(*parts[1:])
    cpus = int(ray.cluster_resources().get("CPU", 1))
    return ds.map_batches(
        Reader,
        fn_constructor_kwargs={
            "model": str(model) if model is not None else None,
            "backend": backend,
            "min_confidence": min_confidence,
            "include_abstained": include_abstained,
            "digits": digits,
            "pattern": pattern,
        },
        batch_size=batch_size,
        batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=max(1, cpus // 4)),  # most CPUs preprocess
        num_cpus=0.5,  # Ray Data's defaults restart a dead actor and retry its batches; a
    )  # failed preprocessing task is retried too (tasks never raise for a bad image)


def read(
    sources: Iterable[str], model, backend: str, recursive: bool, min_confidence,
    include_abstained: bool, batch_size: int, parquet_dir: str | Path | None = None, digits=None,
    num_cpus: int | None = None, pattern: str | None = None,
) -> Iterator[dict]:  # fmt: skip
    """Records in input order, streamed to the driver; with ``parquet_dir``, the cluster writes
    them there as Parquet instead, and this yields only each file's ``error`` (for the count)."""
    try:
        ds = dataset(
            sources, model, backend, recursive, min_confidence, include_abstained, batch_size,
            digits, num_cpus, pattern,
        )  # fmt: skip
        if parquet_dir is not None:
            ds.write_parquet(str(parquet_dir))
            written = ray_module().data.read_parquet(str(parquet_dir)).select_columns(["error"])
            for table in written.iter_batches(batch_format="pyarrow", batch_size=None):
                yield from table.to_pylist()  # {"error": ...} per file: the caller counts them
            return
        for table in ds.iter_batches(batch_format="pyarrow", batch_size=None):
            for rec in table.to_pylist():
                if rec.get("file_bytes", "") is None:
                    del rec["file_bytes"]
                yield rec
    finally:
        shutdown()
