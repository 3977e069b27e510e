"""Reading split in two halves that can run in different processes: ``prepare_files`` (decode +
preprocess) and ``finish`` (the model on a whole batch, where a Predictor is loaded); and
``read_files``, both halves in a worker process that holds its own Predictor (``ReaderSpec``)."""

from __future__ import annotations

import os
import signal
import sys
from dataclasses import dataclass

from digitseq.core.lifeline import exit_with_parent
from digitseq.reading import predictor as reading
from digitseq.reading.predictor import Reading


@dataclass(frozen=True)
class ReaderSpec:
    """What a worker needs to load the same reader as the main process (picklable)."""

    model: str | None = None
    backend: str = "onnx"
    digits: tuple[int, int] | None = None
    min_confidence: float | None = None
    pattern: str | None = None  # a format (ctc_pattern.FORMATS) or a regular expression

    def load(self):
        predictor = reading.Predictor.load(self.model, backend=self.backend)
        predictor.check_digits(self.digits, self.pattern)
        predictor.digits, predictor.pattern = self.digits, self.pattern
        return predictor


_LOADED: dict[ReaderSpec, object] = {}  # this process's reader, loaded on first use


def loaded(spec: ReaderSpec):
    if spec not in _LOADED:
        _LOADED.clear()
        _LOADED[spec] = spec.load()
    return _LOADED[spec]


def read_files(paths: list[str], spec: ReaderSpec) -> list[Reading]:
    """Decode, preprocess and read a chunk of files with this process's reader (one batch).
    A model that cannot be loaded raises its DigitseqError (the caller reports it once)."""
    if "torch" in sys.modules:  # the torch backend, or a checkpoint exported on load
        sys.modules["torch"].set_num_threads(1)
    predictor = loaded(spec)
    readings = prepare_files(paths, predictor.line)
    return finish(predictor, readings, spec.min_confidence, batch_size=max(1, len(paths)))


def init_worker(parent: int) -> None:
    """A worker process uses one thread (the cores are shared by the workers themselves), and
    exits when ``parent`` is gone: a pool's idle workers would otherwise outlive a main process
    killed with SIGKILL, waiting forever on a queue they themselves hold open. Ctrl-C reaches
    the whole process group: the workers leave it to the main process, which stops them."""
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ.setdefault(var, "1")
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    exit_with_parent(parent, signal.SIGKILL)


def prepare_files(paths: list[str], line: bool = True) -> list[Reading]:
    """Decode and preprocess files: one Reading each, holding its model input or its error."""
    return [reading.prepare(p, line=line) for p in paths]


def prepare_bytes(items: list[tuple[str, bytes]], line: bool = True) -> list[Reading]:
    """The same for (name, file bytes) pairs, as a remote reader delivers them."""
    out = []
    for name, data in items:
        r = reading.prepare(data, line=line)
        r.file = name
        out.append(r)
    return out


def finish(predictor, readings: list[Reading], min_confidence=None, batch_size: int = 256):
    """Run the model once over the prepared readings (errors pass through); returns them.

    The Predictor's own ``predict`` does prepare + this step in one call; this is its second
    half, for inputs prepared elsewhere. tests/test_batch.py compares this path with
    ``predict``."""
    readings = predictor.predict_prepared(readings, min_confidence, batch_size)
    for r in readings:
        r.input = None  # (28, 140) float32 each: not kept once read
    return readings
