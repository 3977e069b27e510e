"""Compose images of handwritten numbers of any length (1-12 digits and beyond) from MNIST digits.

The generator's entry points; the parts it runs live by what they do: ``numbers`` (which
digits), ``layouts`` (each layout's parameters, draws and placement), ``warp`` (the shared pixel
work). This module groups the numbers by (layout, length), runs those three in order and hands
back ``Lines``; training batches of one length come from ``length_batch``. Randomness comes only
from the ``np.random.Generator`` passed in.

* ``generate(images, labels, n, rng, layout, leading_zero, params, index, *, lengths, touching,
  width, pad_to) -> Lines`` (images padded on the right with black + real widths + labels).
* ``compose_lines(pool, idx, lengths, layouts, rng, params, touching, width, pad_to)
  -> (images, widths)``: given numbers, in given layouts.
* ``length_batch(...) -> Lines``: one training batch, every number of one length.
* ``generate_fixed(images, labels, n, rng, layout, leading_zero, params, index, length=5)``
  -> (images (n, 28, 28*length), digits, idx, layouts): the old 5-digit ``generate``,
  byte-identical to it at length 5 (touching numbers are padded to the 28*length canvas).

``generate``'s default stays ``mixed`` at 5 digits, so a call with the defaults reproduces the
old one; ask for ``layout="mix3", lengths=(1, 12)``.

Reproducibility: the draw order is sample_numbers (lengths only when lo != hi, then digits,
first digits if no leading zero, pool offsets) -> layouts -> per layout (natural, touching, then
spaced) and per length (ascending): all that group's draws. With lengths=(5, 5) and layout seed /
natural / mixed this is exactly the original sequence of draws. All draws come before any warp,
so the output does not depend on the block size (``warp.BLOCK_DIGITS``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from digitseq.core.constants import DIGIT_SIZE, IMG_H, N_DIGITS
from digitseq.data import layouts
from digitseq.data.layouts import (
    LAYOUT_IDS,
    LAYOUT_MIXES,
    NaturalParams,
    TouchingParams,
    draw_layouts,
)
from digitseq.data.numbers import (
    PAD_INDEX,
    PAD_LABEL,
    class_index,
    labels_to_strings,
    length_range,
    sample_numbers,
)
from digitseq.data.warp import compose_seed, paste, stitch_seed, warp_blocks

__all__ = [  # the generator, and the names its callers use beside it
    "LAYOUT_IDS",
    "LAYOUT_MIXES",
    "Lines",
    "NaturalParams",
    "TouchingParams",
    "class_index",
    "compose_lines",
    "compose_seed",
    "generate",
    "generate_fixed",
    "labels_to_strings",
    "length_batch",
    "sample_numbers",
]


@dataclass
class Lines:
    """A batch of numbers of (possibly) different lengths and widths."""

    images: np.ndarray  # (n, 28, W) uint8, white ink on black, padded on the right with 0
    widths: np.ndarray  # (n,) int32: the real width of each number (columns >= it are 0)
    digits: np.ndarray  # (n, Lmax) uint8: the digits, PAD_LABEL (255) beyond each length
    lengths: np.ndarray  # (n,) uint8: digits per number
    idx: np.ndarray  # (n, Lmax) int64: pool index of each digit image, -1 beyond each length
    layouts: np.ndarray  # (n,) uint8: LAYOUT_IDS

    def __len__(self) -> int:
        return len(self.widths)

    @property
    def strings(self) -> list[str]:
        return labels_to_strings(self.digits, self.lengths)

    def take(self, sel, pad_to: int = 1, width: int | None = None) -> Lines:
        """The numbers ``sel``, cropped to their widest (rounded up to pad_to) or to ``width``."""
        sel = np.asarray(sel)
        widths = self.widths[sel]
        w = output_width(widths, width, pad_to)
        images = self.images[sel, :, : min(w, self.images.shape[2])]
        if w > images.shape[2]:
            images = np.pad(images, ((0, 0), (0, 0), (0, w - images.shape[2])))
        return Lines(
            np.ascontiguousarray(images),
            widths,
            self.digits[sel],
            self.lengths[sel],
            self.idx[sel],
            self.layouts[sel],
        )


def output_width(widths: np.ndarray, width: int | None, pad_to: int) -> int:
    """The image width for numbers of these widths: ``width`` if given (it must fit them all),
    else the widest rounded up to a multiple of pad_to."""
    widest = int(widths.max(initial=0))
    if width is not None:
        if widest > width:
            raise ValueError(f"a number is {widest} px wide, more than width={width}")
        return int(width)
    return -(-widest // pad_to) * pad_to


# --- composing given numbers ---------------------------------------------------------------------


def group_rows(layout_ids: np.ndarray, lengths: np.ndarray) -> list[tuple[int, int, np.ndarray]]:
    """(layout, length, rows) per group of numbers sharing both, ordered by layout id then
    length, rows ascending in each group (the order the groups draw in)."""
    if not len(layout_ids):
        return []
    if not np.isin(layout_ids, list(LAYOUT_IDS.values())).all():
        raise ValueError(f"unknown layout id in {np.unique(layout_ids)}")
    key = layout_ids * 1024 + lengths
    order = np.argsort(key, kind="stable")
    keys, starts = np.unique(key[order], return_index=True)
    return [
        (int(k) // 1024, int(k) % 1024, rows)
        for k, rows in zip(keys, np.split(order, starts[1:]), strict=True)
    ]


def _put(out: np.ndarray, rows: np.ndarray, img: np.ndarray) -> None:
    """out[rows, :, :w] = img, with a plain slice when rows are consecutive."""
    w = img.shape[2]
    if len(rows) and rows[-1] - rows[0] + 1 == len(rows):
        out[rows[0] : rows[-1] + 1, :, :w] = img
    else:
        out[rows, :, :w] = img


def compose_lines(
    pool: np.ndarray,
    idx: np.ndarray,
    lengths: np.ndarray,
    layout_ids: np.ndarray,
    rng: np.random.Generator,
    params: NaturalParams | None = None,
    touching: TouchingParams | None = None,
    width: int | None = None,
    pad_to: int = 1,
) -> tuple[np.ndarray, np.ndarray]:
    """Compose numbers from pool digits idx[i, :lengths[i]], each in its layout (LAYOUT_IDS).

    Returns (images (n, 28, W) uint8 padded on the right with 0, widths (n,) int32), W = the
    widest rounded up to a multiple of pad_to, or ``width``. The numbers are grouped by
    (layout, length): each group's draws and digit positions are one vectorized step, all
    drawn before any warp (natural groups by ascending length, then touching, then spaced;
    none for seed); the warp runs in blocks shared across groups (``warp.warp_blocks``); the
    paste is one scatter per digit position per group slice; seed is one gather per length.
    """
    p, t = params or NaturalParams(), touching or TouchingParams()
    idx, n = np.asarray(idx), len(idx)
    groups = group_rows(np.asarray(layout_ids, np.int64), np.asarray(lengths, np.int64))
    draws = [layouts.layout_draws(lay, len(rows), k, rng, p, t) for lay, k, rows in groups]
    centres = [layouts.centres(lay, k, d, t) for (lay, k, _), d in zip(groups, draws, strict=True)]
    widths = np.zeros(n, np.int32)
    for _, length, rows in groups:
        widths[rows] = DIGIT_SIZE * length  # touching and spaced ones: set after their warp

    # The image width is known now unless touching or spaced numbers need their warp first.
    out, pieces = None, []
    if all(lay in (layouts.SEED, layouts.NATURAL) for lay, _, _ in groups):
        out_w = output_width(widths, width, pad_to)
        if len(groups) == 1 and groups[0][0] == layouts.SEED and out_w == DIGIT_SIZE * groups[0][1]:
            return stitch_seed(pool, idx[:, : groups[0][1]]), widths  # all seed: one gather
        out = np.zeros((n, IMG_H, out_w), np.uint8)

    # Paste each warped group slice straight into the output when its width is known, else keep
    # it until it is.
    warped = [g for g, (lay, _, _) in enumerate(groups) if lay != layouts.SEED]
    for g, sl, patches, left, top, ink in warp_blocks(pool, idx, groups, draws, centres, p, warped):
        lay, length, rows = groups[g][0], groups[g][1], groups[g][2][sl]
        d = {key: v[sl] for key, v in draws[g].items()}
        x0, y0, widths[rows] = layouts.place(lay, length, d, left, top, ink)
        img = paste(patches, x0, y0, int(widths[rows].max()))
        if out is None:
            pieces.append((rows, img))
        else:
            _put(out, rows, img)
    if out is None:
        out = np.zeros((n, IMG_H, output_width(widths, width, pad_to)), np.uint8)
        for rows, img in pieces:
            _put(out, rows, img)
    for lay, length, rows in groups:
        if lay == layouts.SEED:
            _put(out, rows, stitch_seed(pool, idx[rows, :length]))
    return out, widths


# --- generating numbers --------------------------------------------------------------------------


def generate(
    images: np.ndarray,
    labels: np.ndarray,
    n: int,
    rng: np.random.Generator,
    layout="mixed",
    leading_zero: bool = True,
    params: NaturalParams | None = None,
    index: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
    *,
    lengths=(N_DIGITS, N_DIGITS),
    touching: TouchingParams | None = None,
    width: int | None = None,
    pad_to: int = 1,
) -> Lines:
    """n numbers from a digit pool (images (N, 28, 28), labels (N,)) -> ``Lines``.

    lengths: an int or (lo, hi), each number's length uniform in [lo, hi]. layout: see
    ``layouts.draw_layouts``. Images are padded on the right with black to the widest number
    rounded up to a multiple of pad_to, or to ``width``. With the defaults (5 digits, 'mixed')
    the draws and images are the old ``generate``'s.
    """
    digits, lens, idx = sample_numbers(labels, n, rng, lengths, leading_zero, index)
    lay = draw_layouts(layout, n, rng)
    img, widths = compose_lines(images, idx, lens, lay, rng, params, touching, width, pad_to)
    return Lines(img, widths, digits, lens, idx, lay)


def generate_fixed(
    images: np.ndarray,
    labels: np.ndarray,
    n: int,
    rng: np.random.Generator,
    layout="mixed",
    leading_zero: bool = True,
    params: NaturalParams | None = None,
    index: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
    length: int = N_DIGITS,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The old ``generate``: n numbers of ``length`` digits -> (images (n, 28, 28*length),
    digits (n, length), pool idx (n, length), layouts). Byte-identical to it at length 5."""
    lines = generate(
        images, labels, n, rng, layout, leading_zero, params, index,
        lengths=(length, length), width=DIGIT_SIZE * length,
    )  # fmt: skip
    return lines.images, lines.digits, lines.idx, lines.layouts


def length_batch(
    images: np.ndarray,
    labels: np.ndarray,
    batch_size: int,
    rng: np.random.Generator,
    layout="mix3",
    lengths=(1, 12),
    pad_to: int = 32,
    leading_zero: bool = True,
    params: NaturalParams | None = None,
    touching: TouchingParams | None = None,
    index: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
) -> Lines:
    """One training batch whose numbers all have one length L (drawn uniformly in [lo, hi]),
    padded to a multiple of pad_to: a trainer sees a handful of shapes and little padding.
    digits/idx are padded to (batch_size, hi) like ``generate``'s."""
    lo, hi = length_range(lengths)
    length = int(rng.integers(lo, hi + 1))
    lines = generate(
        images, labels, batch_size, rng, layout, leading_zero, params, index,
        lengths=(length, length), touching=touching, pad_to=pad_to,
    )  # fmt: skip
    extra = ((0, 0), (0, hi - length))
    lines.digits = np.pad(lines.digits, extra, constant_values=PAD_LABEL)
    lines.idx = np.pad(lines.idx, extra, constant_values=PAD_INDEX)
    return lines
