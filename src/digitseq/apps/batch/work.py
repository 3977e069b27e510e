"""The two halves of reading, split so that each can run where it is cheapest: ``prepare_files``
(decode + preprocess, CPU-bound, in worker processes or Ray tasks) and ``finish`` (the model
on a large batch, in the process that holds the loaded Predictor)."""

from __future__ import annotations

import os

import numpy as np

from digitseq.reading import predictor as reading
from digitseq.reading.predictor import Reading


def init_worker() -> None:
    """A worker process uses one thread: the cores are shared by the workers themselves."""
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ.setdefault(var, "1")
    import sys

    if "torch" in sys.modules:  # only when the parent had it and the worker was forked
        sys.modules["torch"].set_num_threads(1)


def line_input(predictor) -> bool:
    """Whether the model reads whole lines (the CTC reader) or five 28x28 digit cells."""
    return getattr(predictor, "kind", "fixed") == "ctc"


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
    half, for inputs prepared elsewhere. When the Predictor offers ``predict_prepared`` it is
    used; otherwise (fixed-length models of older versions) its batched ``logits`` and the
    module's ``softmax``/``fill``. tests/test_batch.py compares this path with ``predict``."""
    hook = getattr(predictor, "predict_prepared", None)
    if hook is not None:
        readings = hook(readings, min_confidence, batch_size)
    else:
        ok = [r for r in readings if r.error is None]
        if ok:
            logits = predictor.logits(np.stack([r.input for r in ok]), batch_size)
            for r, p in zip(ok, reading.softmax(logits), strict=True):
                reading.fill(r, p, min_confidence)
    for r in readings:
        r.input = None  # (28, 140) float32 each: not kept once read
    return readings
