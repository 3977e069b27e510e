"""What a training run reads: ``training_data(spec)`` -> (training batches, val batches, the
stream of training batches that the run iterates, read by ``spec.workers`` processes).

One function per source, chosen by the spec: a stored dataset (``spec.data``), lines of any
length composed on the fly (line readers), or 5-digit images composed on the fly. On-the-fly
numbers draw their digits from ``digit_pool``: MNIST train digits plus the shares of redrawn,
font and pen-trajectory digits that the spec asks for. Val is always MNIST's own val digits.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from digitseq.core.constants import IMG_W, N_DIGITS
from digitseq.core.errors import DigitseqError
from digitseq.data import drawn, fonts, loaders, mnist, storage, strokes

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DataSpec:
    """The data part of a training configuration."""

    lines: bool  # a line reader (numbers of any length) or a 5-digit reader (28x140 images)
    layout: str = "mix3"
    lengths: tuple[int, int] = (1, 12)
    pad_to: int = 32
    data: str | None = None  # a stored dataset folder instead of on-the-fly numbers
    p_drawn: float = 0.0
    p_font: float = 0.0
    p_pen: float = 0.0
    p_format: float = 0.0  # share of batches of formatted numbers (a reader of text only)
    text: bool = False  # the reader reads text (digits and separators), not digits alone
    batch_size: int = 128
    steps: int = 500  # batches per epoch
    val_size: int = 5000
    seed: int = 0
    workers: int = 0  # DataLoader processes composing the training batches (0: the trainer's own)
    pin: bool = False  # pinned memory (CUDA)


def training_data(spec: DataSpec, rank: int = 0, world: int = 1, mnist_dir=None):
    """(training batches, val batches, the stream of training batches) for this process of
    ``world``; the batches' epochs (``set_epochs``) may be chosen until the stream is read."""
    extra = spec.p_drawn + spec.p_font + spec.p_pen
    if min(spec.p_drawn, spec.p_font, spec.p_pen) < 0 or extra >= 1 or (spec.data and extra):
        raise DigitseqError(
            "p_drawn, p_font and p_pen must be >= 0 and sum to under 1, with on-the-fly numbers"
        )
    if spec.p_format and not spec.text:
        raise DigitseqError('--p-format needs a reader of text (hparams alphabet "text")')
    if spec.p_format and (spec.data or not spec.lines or not 0 < spec.p_format < 1):
        raise DigitseqError("p_format must be in (0, 1), for a line reader on on-the-fly numbers")
    if spec.data:
        batches, val = stored(spec, rank, world)
    else:
        m = mnist.load(mnist_dir)
        pool = digit_pool(*mnist.split_pool(m, "train")[:2], spec)
        val_digits = mnist.split_pool(m, "val")[:2]
        batches, val = (composed_lines if spec.lines else composed_fixed)(
            spec, pool, val_digits, rank
        )
    return batches, val, loaders.stream(batches, spec.workers, spec.pin)


def stored(spec: DataSpec, rank: int, world: int):
    train = storage.load_split(Path(spec.data), "train")
    val = storage.load_split(Path(spec.data), "val")
    if not spec.lines and (train.images.shape[-1] != IMG_W or (train.lengths != N_DIGITS).any()):
        raise DigitseqError(
            f"this model reads {N_DIGITS}-digit numbers only; {spec.data} holds numbers of "
            f"{int(train.lengths.min())}-{int(train.lengths.max())} digits: train a line "
            "reader on it (--arch ctc, or --preset demo)"
        )
    pad = spec.pad_to if spec.lines else None
    batches = loaders.StoredBatches(train, spec.batch_size, spec.steps, spec.seed, rank, world, pad)
    return batches, loaders.split_batches(val, spec.val_size, pad_to=pad)


def composed_lines(spec: DataSpec, pool, val, rank: int):
    batches = loaders.LineBatches(
        *pool, spec.batch_size, spec.steps, spec.seed, spec.layout, rank, spec.lengths,
        spec.pad_to, spec.p_format,
    )  # fmt: skip
    n_text = round(spec.val_size * spec.p_format)
    plain = loaders.line_set(
        *val, spec.val_size - n_text, spec.seed, spec.layout, spec.lengths, spec.pad_to
    )
    if not n_text:
        return batches, plain
    return batches, plain + loaders.text_set(*val, n_text, spec.seed, spec.layout, spec.pad_to)


def composed_fixed(spec: DataSpec, pool, val, rank: int):
    batches = loaders.StreamBatches(
        *pool, spec.batch_size, spec.steps, spec.seed, spec.layout, rank
    )
    vimg, vlab, _ = loaders.fixed_set(*val, spec.val_size, spec.seed, spec.layout)
    return batches, [loaders.fixed_batch(vimg[i : i + 1024].numpy(), vlab[i : i + 1024].numpy())
                     for i in range(0, len(vimg), 1024)]  # fmt: skip


def digit_pool(images: np.ndarray, labels: np.ndarray, spec: DataSpec):
    """MNIST train digits, plus the shares of the pool that ``p_drawn`` (train digits redrawn
    with a round pen), ``p_font`` (digits of the training fonts) and ``p_pen`` (synthetic pen
    trajectories) ask for. Val digits are never redrawn: val stays MNIST's."""
    base = 1 - spec.p_drawn - spec.p_font - spec.p_pen

    def redrawn(n: int, rng: np.random.Generator):
        cells, idx = drawn.drawn_pool(images, n, rng)
        return cells, labels[idx]

    sources = [  # (share, rng stream, what it adds, maker (n, rng) -> (cells, labels))
        (spec.p_drawn, 17, "redrawn with a round pen", redrawn),
        (spec.p_font, 18, f"from {len(fonts.FAMILIES)} training fonts",
         lambda n, rng: fonts.font_cells(fonts.fetch(), n, rng)),
        (spec.p_pen, 19, "drawn from pen trajectories", strokes.stroke_cells),
    ]  # fmt: skip
    parts, names = [(images, labels)], []
    for share, stream, what, make in sources:
        if share > 0:
            n = round(len(images) * share / base)
            parts.append(make(n, np.random.default_rng([spec.seed, stream])))
            names.append(f"{n} {what}")
    if names:
        log.info("training pool: %d MNIST train digits + %s", len(images), ", ".join(names))
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
