"""Compose images of handwritten numbers of any length (1-12 digits and beyond) from MNIST digits.

A generalization of ``digitseq/compose.py`` (5 digits, 28x140) that imports nothing from
``digitseq``. Randomness comes only from the ``np.random.Generator`` passed in.

Layouts (``LAYOUT_IDS``), for a number of L digits:

``seed`` (0)      digits edge to edge, width 28*L, pure numpy (one gather).
``natural`` (1)   handwriting on a form: each digit scaled, rotated, sheared, thickened or thinned,
                  jittered vertically, at uneven slot centres filling 28*L minus a margin on
                  each side (``NaturalParams``); width 28*L.
``touching`` (2)  the natural warps, but centre-to-centre spacing ``pitch + gap`` = 20 px + a gap
                  in [-8, 0] px per pair (``TouchingParams``): MNIST ink is ~20 px wide, so the
                  digits touch or overlap. Width = ink extent + a blank margin on each side, so
                  it differs per number (~20*L px).
``spaced`` (3)    the natural warps, each digit's ink starting ``gap`` px after the previous
                  digit's ink ends, a gap in [-2, 8] px per pair (``TouchingParams.ink_gap``):
                  spaced by ink as people write, so a narrow 1 sits as close to its neighbours
                  as any digit (in the other layouts its slot is a whole digit wide). Width as
                  touching.

Layout mixes (``draw_layouts``): a layout name, a mix name or a {layout: weight} dict.
``mixed`` = half seed, half natural, drawn exactly as before (``rng.integers(0, 2)``), so old
5-digit datasets reproduce byte for byte; ``mix3`` = seed 0.3 / natural 0.4 / touching 0.3, the
suggested training mix for variable lengths; ``mix4`` = seed 0.25 / natural 0.3 / touching 0.25 /
spaced 0.2 (``mix3`` plus ink-spaced numbers). ``generate``'s default stays ``mixed`` (5 digits),
so a call with the defaults reproduces the old one; ask for ``layout="mix3", lengths=(1, 12)``.

Entry points
------------
New, any length (``Lines`` = images padded on the right with black + real widths + labels):

* ``generate(images, labels, n, rng, layout, leading_zero, params, index, *, lengths, touching,
  width, pad_to) -> Lines``
* ``compose_lines(pool, idx, lengths, layouts, rng, params, touching, width, pad_to)
  -> (images, widths)``
* ``sample_numbers(labels, n, rng, lengths, leading_zero, index) -> (digits, lengths, idx)``
* ``bucket_batches(...)`` / ``length_batch(...)``: training batches of similar widths.
* ``labels_to_strings(digits, lengths)`` / ``strings_to_labels(strings)``.

Old fixed-length entry points (byte-identical to ``digitseq.compose`` at L = 5 for the same rng):

* ``generate_fixed(images, labels, n, rng, layout, leading_zero, params, index, length=5)``
  -> (images (n, 28, 140), digits (n, 5), idx (n, 5), layouts): what ``generate`` used to return
  (any fixed length: the canvas is 28*length; touching numbers are padded to it).
* ``sample_fixed(labels, n, rng, leading_zero, index) -> (digits (n, 5), idx (n, 5))``: what
  ``sample_numbers`` used to return (``sample_numbers`` now also returns lengths, and takes
  ``lengths`` as its 4th argument).
* ``compose``, ``compose_seed``, ``stitch_seed``, ``compose_natural``, ``natural_draws``,
  ``natural_patches``, ``digit_centres``, ``paste``, ``class_index``: same names, same results at
  L = 5; they now take any fixed L (the canvas is 28*L).

Reproducibility: the draw order is sample_numbers (lengths only when lo != hi, then digits,
first digits if no leading zero, pool offsets) -> layouts -> per layout (natural, touching, then
spaced) and per length (ascending): all that group's draws. With lengths=(5, 5) and layout seed /
natural / mixed this is exactly today's sequence of draws. All draws come before any warp,
so the output does not depend on the block size (``BLOCK_DIGITS``).
"""

from __future__ import annotations

import functools
from dataclasses import asdict, dataclass

import numpy as np

from digitseq.core.constants import DIGIT_SIZE

IMG_H = DIGIT_SIZE  # image height
N_DIGITS = 5  # the old fixed length: default where a length is implied
PAD_LABEL = 255  # digits beyond a number's length
PAD_INDEX = -1  # pool indices beyond a number's length

LAYOUT_IDS = {"seed": 0, "natural": 1, "touching": 2, "spaced": 3}
LAYOUT_MIXES = {
    "mixed": {"seed": 0.5, "natural": 0.5},  # today's default; drawn as rng.integers(0, 2)
    "mix3": {"seed": 0.3, "natural": 0.4, "touching": 0.3},  # the training mix, any length
    "mix4": {"seed": 0.25, "natural": 0.3, "touching": 0.25, "spaced": 0.2},
    # as people write: most numbers spaced by their ink, from slight overlap to a few pixels
    "people": {"seed": 0.15, "natural": 0.2, "touching": 0.2, "spaced": 0.45},
}


@dataclass(frozen=True)
class NaturalParams:
    """Ranges of the ``natural`` layout (each drawn uniformly per digit unless noted).

    ``touching`` uses the warp ranges (scale .. p_thin) too, not spacing_jitter and margin.
    """

    scale: tuple[float, float] = (0.80, 1.10)  # digit size relative to MNIST's 20-px box
    rotation_deg: float = 12.0  # rotation in [-r, r] degrees
    shear: float = 0.15  # horizontal shear in [-s, s]
    vertical_jitter: float = 3.0  # baseline shift in [-v, v] pixels
    spacing_jitter: float = 0.30  # slot width 28*(1 +- j): uneven gaps, slight overlaps
    margin: float = 4.0  # blank margin left of the first digit in [0, m] pixels
    p_thick: float = 0.25  # probability a digit's stroke is thickened (pen / marker)
    p_thin: float = 0.20  # probability a digit's stroke is thinned (fine pen)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> NaturalParams:
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


@dataclass(frozen=True)
class TouchingParams:
    """Spacing of the ``touching`` layout (the digits themselves are warped as in natural).

    Consecutive digit centres are ``pitch + gap`` apart, gap drawn uniformly per pair in
    [gap_min, gap_max]; MNIST ink is ~20 px wide in its 28-px box, so with pitch 20 and gap <= 0
    most neighbours touch or overlap (narrow digits such as 1 may still stand apart). The image
    is cropped to the ink plus a blank margin drawn per side as an integer in [margin[0],
    margin[1]] pixels. The ``spaced`` layout draws its gaps per pair from ``ink_gap`` instead,
    measured between the digits' ink boxes (with the same margins).
    """

    gap_min: float = -8.0  # most overlap between neighbours, pixels (negative = closer)
    gap_max: float = 0.0  # least overlap, pixels (0 = centres a digit's ink width apart)
    pitch: float = 20.0  # centre-to-centre spacing at gap 0, pixels (MNIST ink width)
    margin: tuple[int, int] = (0, 8)  # blank columns left of the ink and right of it
    ink_gap: tuple[float, float] = (-2.0, 8.0)  # spaced: blank columns between ink boxes

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> TouchingParams:
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


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


# --- labels --------------------------------------------------------------------------------------


def labels_to_strings(digits: np.ndarray, lengths: np.ndarray) -> list[str]:
    """(n, Lmax) digits + (n,) lengths -> the numbers as strings, leading zeros kept."""
    digits = np.asarray(digits)
    n, lmax = digits.shape
    if lmax == 0:
        return [""] * n
    keep = np.arange(lmax) < np.asarray(lengths)[:, None]
    chars = np.where(keep, digits.astype(np.uint8) + ord("0"), 0).astype(np.uint8)
    return [s.decode() for s in np.ascontiguousarray(chars).view(f"S{lmax}").ravel()]


def strings_to_labels(strings, max_len: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Strings of digits -> (digits (n, Lmax) uint8, 255-padded; lengths (n,) uint8).

    Lmax is ``max_len`` if given, else the longest string.
    """
    raw = [s.encode("ascii") for s in strings]
    lengths = np.array([len(b) for b in raw], np.int64)
    lmax = int(lengths.max(initial=0)) if max_len is None else max_len
    if (lengths > lmax).any() or lmax >= PAD_LABEL:
        raise ValueError(f"a string is longer than max_len={lmax} (or max_len >= 255)")
    digits = np.full((len(raw), lmax), PAD_LABEL, np.uint8)
    if raw:
        flat = np.frombuffer(b"".join(raw), np.uint8) - ord("0")
        if (flat > 9).any():
            raise ValueError("strings must contain only the digits 0-9")
        rows = np.repeat(np.arange(len(raw)), lengths)
        cols = np.arange(len(flat)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        digits[rows, cols] = flat
    return digits, lengths.astype(np.uint8)


# --- which digits --------------------------------------------------------------------------------


def class_index(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(order, starts, counts): pool indices sorted by label, where each class starts, its size."""
    order = np.argsort(labels, kind="stable")
    counts = np.bincount(labels, minlength=10)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    return order, starts, counts


def length_range(lengths) -> tuple[int, int]:
    """An int L or a pair (lo, hi) -> (lo, hi), checked: 1 <= lo <= hi < 255."""
    if isinstance(lengths, (bool, np.bool_)):
        raise TypeError("lengths must be an int or (lo, hi); old positional leading_zero? "
                        "use sample_fixed / pass leading_zero= by name")  # fmt: skip
    lo, hi = (lengths, lengths) if np.isscalar(lengths) else lengths
    lo, hi = int(lo), int(hi)
    if not 1 <= lo <= hi < PAD_LABEL:
        raise ValueError(f"lengths must satisfy 1 <= lo <= hi < 255, got {lengths}")
    return lo, hi


def sample_numbers(
    labels: np.ndarray,
    n: int,
    rng: np.random.Generator,
    lengths=(N_DIGITS, N_DIGITS),
    leading_zero: bool = True,
    index: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Draw n numbers: a length uniform in [lo, hi], uniform digits, per digit a random pool
    image of that class.

    Returns (digits (n, hi) uint8 with 255 beyond each length, lengths (n,) uint8, pool indices
    (n, hi) int64 with -1 beyond each length). Lengths are drawn only when lo != hi, so with
    lengths=(5, 5) the draws are exactly the old ``sample_numbers``'s. ``leading_zero=False``
    makes the first digit 1-9, except that a one-digit number may be 0.
    """
    lo, hi = length_range(lengths)
    order, starts, counts = index if index is not None else class_index(labels)
    lens = rng.integers(lo, hi + 1, size=n) if lo != hi else np.full(n, hi, np.int64)
    digits = rng.integers(0, 10, size=(n, hi), dtype=np.int64)
    if not leading_zero:
        first = rng.integers(1, 10, size=n)
        digits[:, 0] = first if lo > 1 else np.where(lens == 1, digits[:, 0], first)
    offsets = (rng.random((n, hi)) * counts[digits]).astype(np.int64)
    idx = order[starts[digits] + offsets]
    if lo != hi:
        pad = np.arange(hi) >= lens[:, None]
        digits[pad] = PAD_LABEL
        idx[pad] = PAD_INDEX
    return digits.astype(np.uint8), lens.astype(np.uint8), idx


def sample_fixed(labels, n, rng, leading_zero=True, index=None) -> tuple[np.ndarray, np.ndarray]:
    """The old ``sample_numbers``: n 5-digit numbers -> (digits (n, 5) uint8, idx (n, 5))."""
    digits, _, idx = sample_numbers(labels, n, rng, (N_DIGITS, N_DIGITS), leading_zero, index)
    return digits, idx


# --- seed ----------------------------------------------------------------------------------------


def compose_seed(digit_images: np.ndarray) -> np.ndarray:
    """(n, L, 28, 28) uint8 -> (n, 28, 28*L): digits side by side, no gaps."""
    n, length = digit_images.shape[:2]
    out = np.ascontiguousarray(digit_images.transpose(0, 2, 1, 3))
    return out.reshape(n, IMG_H, DIGIT_SIZE * length)


def stitch_seed(pool: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """``compose_seed(pool[idx])`` in one gather: (N, 28, 28) pool, (n, L) idx -> (n, 28, 28*L).

    Each output row r of digit k is row r of pool image idx[n, k]; viewing a 28-pixel row as
    one opaque 28-byte item makes that a single ``np.take`` (~2x faster than gather + transpose).
    """
    n, length = idx.shape
    rows = np.ascontiguousarray(pool, dtype=np.uint8).reshape(-1, DIGIT_SIZE).view(f"V{DIGIT_SIZE}")
    which = idx[:, None, :] * DIGIT_SIZE + np.arange(DIGIT_SIZE)[None, :, None]  # (n, 28, L)
    return np.take(rows[:, 0], which).view(np.uint8).reshape(n, IMG_H, DIGIT_SIZE * length)


# --- natural and touching: draws -----------------------------------------------------------------


def natural_draws(
    n: int, rng: np.random.Generator, p: NaturalParams, length: int = N_DIGITS
) -> dict[str, np.ndarray]:
    """All random numbers the natural layout needs for n numbers of ``length`` digits, drawn in
    a fixed order (the old order at length 5)."""
    shape = (n, length)
    slots = 1.0 + rng.uniform(-p.spacing_jitter, p.spacing_jitter, size=shape)
    margin = rng.uniform(0.0, p.margin, size=(n, 1))
    return {
        "scale": rng.uniform(p.scale[0], p.scale[1], size=shape),
        "angle": np.deg2rad(rng.uniform(-p.rotation_deg, p.rotation_deg, size=shape)),
        "shear": rng.uniform(-p.shear, p.shear, size=shape),
        "dy": rng.uniform(-p.vertical_jitter, p.vertical_jitter, size=shape),
        "slots": slots,
        "margin": margin,
        "stroke": rng.random(shape),
    }


def touching_draws(
    n: int,
    rng: np.random.Generator,
    p: NaturalParams,
    t: TouchingParams,
    length: int,
    spaced: bool = False,
) -> dict[str, np.ndarray]:
    """All random numbers the touching layout (or with ``spaced``, the spaced layout: gaps from
    ``t.ink_gap``) needs for n numbers of ``length`` digits."""
    shape = (n, length)
    gap = t.ink_gap if spaced else (t.gap_min, t.gap_max)
    return {
        "scale": rng.uniform(p.scale[0], p.scale[1], size=shape),
        "angle": np.deg2rad(rng.uniform(-p.rotation_deg, p.rotation_deg, size=shape)),
        "shear": rng.uniform(-p.shear, p.shear, size=shape),
        "dy": rng.uniform(-p.vertical_jitter, p.vertical_jitter, size=shape),
        "stroke": rng.random(shape),
        "gap": rng.uniform(gap[0], gap[1], size=(n, length - 1)),
        "margin": rng.integers(int(t.margin[0]), int(t.margin[1]) + 1, size=(n, 2)),
    }


def digit_centres(slots: np.ndarray, margin: np.ndarray, width: int | None = None) -> np.ndarray:
    """Uneven slot widths scaled to fill the canvas after the margins -> centre x of each digit.

    ``width`` is the canvas width (default 28 * L).
    """
    half = DIGIT_SIZE / 2
    width = DIGIT_SIZE * slots.shape[1] if width is None else width
    usable = width - 2 * margin  # (n, 1): margins on both sides
    widths = slots / slots.sum(axis=1, keepdims=True) * usable
    centres = margin + np.cumsum(widths, axis=1) - widths / 2
    return np.clip(centres, half - 2, width - half + 2)  # never push ink off the canvas


def touching_centres(gap: np.ndarray, pitch: float) -> np.ndarray:
    """(n, L-1) gaps -> (n, L) centre x of each digit, the first at 14 (shifted later)."""
    steps = np.concatenate([np.zeros((gap.shape[0], 1)), pitch + gap], axis=1)
    return DIGIT_SIZE / 2 + np.cumsum(steps, axis=1)


# --- natural and touching: warp and paste ------------------------------------------------------


def warp_digits(digit_images: np.ndarray, d: dict[str, np.ndarray], p: NaturalParams, centres):
    """Thicken/thin, scale, rotate and shear each digit, and move it by the sub-pixel part of
    its position (one batched ``grid_sample`` over all digits).

    digit_images (n, L, 28, 28) uint8; d the draws (scale, angle, shear, dy, stroke: (n, L));
    centres (n, L): the canvas column of each digit's centre.
    Returns (patches (n, L, 28, 28) uint8, left (n, L), top (n, L): the canvas column and row of
    each patch's top-left corner before any clipping (whole numbers, float), ink: (first row,
    last row, first column, last column) of each patch's ink (pixels > 0), each (n, L) int64).
    """
    import torch
    import torch.nn.functional as F

    n, length = digit_images.shape[:2]
    m = n * length
    left = np.floor(centres - DIGIT_SIZE / 2)
    frac_x = centres - DIGIT_SIZE / 2 - left  # sub-pixel part, done by the warp
    top = np.round(d["dy"])
    frac_y = d["dy"] - top

    # Stroke thickness on the source digits (uint8, cheap): blend with a 3x3 dilation
    # (pen or marker) or erosion (fine pen).
    x = np.ascontiguousarray(digit_images).reshape(m, DIGIT_SIZE, DIGIT_SIZE)
    stroke = d["stroke"].reshape(m)
    thick = np.flatnonzero(stroke < p.p_thick)
    thin = np.flatnonzero((stroke >= p.p_thick) & (stroke < p.p_thick + p.p_thin))
    if thick.size or thin.size:
        x = x.copy()
        x[thick] = (x[thick] >> 1) + (neighbourhood(x[thick], np.maximum) >> 1)
        x[thin] = (x[thin] >> 1) + (neighbourhood(x[thin], np.minimum) >> 1)

    # Forward map A = rotation @ shear * scale; grid_sample wants output -> input, so invert.
    s, a, sh = (d[k].reshape(m) for k in ("scale", "angle", "shear"))
    cos, sin = np.cos(a), np.sin(a)
    a00, a01 = s * cos, s * (cos * sh - sin)
    a10, a11 = s * sin, s * (sin * sh + cos)
    det = a00 * a11 - a01 * a10
    inv = np.stack([a11, -a01, -a10, a00], axis=1).reshape(m, 2, 2) / det[:, None, None]
    shift = np.stack([frac_x.reshape(m), frac_y.reshape(m)], axis=1) * (2.0 / DIGIT_SIZE)
    theta = np.concatenate([inv, -(inv @ shift[:, :, None])], axis=2)  # (m, 2, 3)

    # The sampling grid as one GEMM: (m*2, 3) @ (3, 784) (affine_grid is slow on CPU).
    theta_t = torch.from_numpy(theta.astype(np.float32)).reshape(m * 2, 3)
    grid = (theta_t @ base_grid()).reshape(m, 2, DIGIT_SIZE, DIGIT_SIZE).permute(0, 2, 3, 1)
    xt = torch.from_numpy(x).reshape(m, 1, DIGIT_SIZE, DIGIT_SIZE).float()
    xt = F.grid_sample(xt, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    patches = xt.round_().to(torch.uint8).reshape(n, length, DIGIT_SIZE, DIGIT_SIZE)

    rows = (patches.amax(dim=3) > 0).numpy()  # (n, L, 28)
    cols = (patches.amax(dim=2) > 0).numpy()
    last = DIGIT_SIZE - 1
    ink = (
        rows.argmax(2),
        last - rows[..., ::-1].argmax(2),
        cols.argmax(2),
        last - cols[..., ::-1].argmax(2),
    )
    return patches.numpy(), left, top, ink


def clip_rows(top: np.ndarray, ink) -> np.ndarray:
    """Shift each patch vertically just enough that its ink stays in rows 0..27.

    A warped digit is at most ~27 px tall (scale <= 1.1 of MNIST's 20-px box, rotated), so it
    always fits.
    """
    return np.clip(top, -ink[0], DIGIT_SIZE - 1 - ink[1]).astype(np.int64)


def place_natural(left, top, ink, width: int) -> tuple[np.ndarray, np.ndarray]:
    """(x0, y0) of natural patches: jitter and uneven spacing may push a tall or edge digit
    past the canvas, so shift it back just enough that its ink stays inside."""
    x0 = np.clip(left, -ink[2], width - 1 - ink[3]).astype(np.int64)
    return x0, clip_rows(top, ink)


def place_touching(left, top, ink, margin) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(x0, y0, widths) of touching patches (n, L): the ink starts after the left margin;
    widths = first to last ink column of the number + the two margins (n, 2)."""
    ink_left = (left + ink[2]).min(axis=1)
    ink_right = (left + ink[3]).max(axis=1)
    x0 = (left - ink_left[:, None] + margin[:, :1]).astype(np.int64)
    widths = (ink_right - ink_left + 1).astype(np.int64) + margin[:, 0] + margin[:, 1]
    return x0, clip_rows(top, ink), widths


def place_spaced(top, ink, gap, margin) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(x0, y0, widths) of spaced patches (n, L): each digit's ink starts round(gap) columns
    after the previous digit's ink ends (gap (n, L-1), < 0: they overlap), the leftmost ink
    after the left margin; widths as ``place_touching``. Where the warp put each patch does not
    matter (it was only asked for the sub-pixel part), so only its rows are taken."""
    ink_w = ink[3] - ink[2] + 1
    steps = ink_w[:, :-1] + np.round(gap)
    start = np.concatenate([np.zeros((len(ink_w), 1)), np.cumsum(steps, axis=1)], axis=1)
    start += margin[:, :1] - start.min(axis=1, keepdims=True)
    x0 = (start - ink[2]).astype(np.int64)
    widths = (start + ink_w).max(axis=1).astype(np.int64) + margin[:, 1]
    return x0, clip_rows(top, ink), widths


def natural_patches(
    digit_images: np.ndarray, d: dict[str, np.ndarray], p: NaturalParams, width: int | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Warp each digit and choose where it goes, keeping all its ink inside the canvas.

    Returns (patches (n, L, 28, 28) uint8, x0 (n, L), y0 (n, L)): the canvas column and row of
    each patch's top-left corner (the patch is mostly blank margin, so x0/y0 may be negative).
    ``width`` is the canvas width (default 28 * L).
    """
    width = DIGIT_SIZE * digit_images.shape[1] if width is None else width
    centres = digit_centres(d["slots"], d["margin"], width)  # (n, L) float
    patches, left, top, ink = warp_digits(digit_images, d, p, centres)
    return (patches, *place_natural(left, top, ink, width))


def touching_patches(
    digit_images: np.ndarray, d: dict[str, np.ndarray], p: NaturalParams, t: TouchingParams
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Warp each digit and place the digits ``pitch + gap`` apart, the ink starting after the
    left margin.

    Returns (patches (n, L, 28, 28) uint8, x0 (n, L), y0 (n, L), widths (n,) int64).
    """
    centres = touching_centres(d["gap"], t.pitch)
    patches, left, top, ink = warp_digits(digit_images, d, p, centres)
    return (patches, *place_touching(left, top, ink, d["margin"]))


def paste(patches: np.ndarray, x0: np.ndarray, y0: np.ndarray, width: int | None = None):
    """Paste (n, L, 28, 28) patches at columns x0, rows y0 (n, L) -> (n, 28, width) uint8.

    ``width`` defaults to 28 * L. Overlapping strokes merge with max. The canvas is padded to
    take the blank margins of patches that hang over the edge (the callers keep all ink inside).
    """
    n, length = patches.shape[:2]
    width = DIGIT_SIZE * length if width is None else width
    if n == 0:
        return np.zeros((0, IMG_H, width), np.uint8)
    pad = int(max(0, -x0.min(), x0.max() + DIGIT_SIZE - width, -y0.min(), y0.max()))
    ph, pw = IMG_H + 2 * pad, width + 2 * pad
    canvas = np.zeros((n, ph, pw), np.uint8)
    # Every 28x28 window of every canvas as a view: window (j, y, x) is canvas[j, y:y+28, x:x+28].
    s0, s1, s2 = canvas.strides
    windows = np.lib.stride_tricks.as_strided(
        canvas,
        (n, ph - DIGIT_SIZE + 1, pw - DIGIT_SIZE + 1, DIGIT_SIZE, DIGIT_SIZE),
        (s0, s1, s2, s1, s2),
        writeable=True,
    )
    rows = np.arange(n)
    for i in range(length):  # one gather/max/scatter per position, not per sample
        at = (rows, y0[:, i] + pad, x0[:, i] + pad)
        windows[at] = np.maximum(windows[at], patches[:, i])
    return canvas[:, pad : pad + IMG_H, pad : pad + width]


@functools.cache
def base_grid():
    """(3, 784) homogeneous output coordinates (x, y, 1) of a 28x28 grid, align_corners=False."""
    import torch

    c = (torch.arange(DIGIT_SIZE, dtype=torch.float32) * 2 + 1) / DIGIT_SIZE - 1
    ys, xs = torch.meshgrid(c, c, indexing="ij")
    return torch.stack([xs.reshape(-1), ys.reshape(-1), torch.ones(DIGIT_SIZE**2)])


def neighbourhood(x: np.ndarray, reduce) -> np.ndarray:
    """Separable 3x3 max or min of (k, 28, 28) uint8 images (zero padded)."""
    pad = np.pad(x, ((0, 0), (1, 1), (1, 1)))
    rows = reduce(reduce(pad[:, :, :-2], pad[:, :, 1:-1]), pad[:, :, 2:])
    return reduce(reduce(rows[:, :-2], rows[:, 1:-1]), rows[:, 2:])


# --- rendering in blocks -------------------------------------------------------------------------

BLOCK_DIGITS = 2560  # digits per warp block (512 five-digit numbers): float work stays in cache


def block_slices(n: int, length: int) -> list[slice]:
    """Row slices of n numbers of ``length`` digits, about BLOCK_DIGITS digits each."""
    step = max(1, BLOCK_DIGITS // length)
    return [slice(s, min(s + step, n)) for s in range(0, n, step)]


def render_natural(digit_images: np.ndarray, d: dict[str, np.ndarray], p: NaturalParams):
    """(n, L, 28, 28) uint8 + the draws (from ``natural_draws``) -> (n, 28, 28*L) uint8."""
    patches, x0, y0 = natural_patches(digit_images, d, p)
    return paste(patches, x0, y0)


def render_touching(digit_images, d, p: NaturalParams, t: TouchingParams):
    """(n, L, 28, 28) + the draws (``touching_draws``) -> (images (n, 28, max width), widths)."""
    patches, x0, y0, widths = touching_patches(digit_images, d, p, t)
    return paste(patches, x0, y0, int(widths.max(initial=0))), widths


def _as_pool(digit_images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(n, L, 28, 28) digit images -> (pool (n*L, 28, 28), idx (n, L)) for compose_lines."""
    n, length = digit_images.shape[:2]
    pool = digit_images.reshape(-1, DIGIT_SIZE, DIGIT_SIZE)
    return pool, np.arange(n * length).reshape(n, length)


def compose_natural(
    digit_images: np.ndarray, rng: np.random.Generator, params: NaturalParams | None = None
) -> np.ndarray:
    """(n, L, 28, 28) uint8 -> (n, 28, 28*L) uint8 in the natural layout."""
    pool, idx = _as_pool(digit_images)
    layouts = np.full(len(idx), LAYOUT_IDS["natural"], np.uint8)
    return compose_lines(pool, idx, np.full(len(idx), idx.shape[1]), layouts, rng, params)[0]


def compose_touching(
    digit_images: np.ndarray,
    rng: np.random.Generator,
    params: NaturalParams | None = None,
    touching: TouchingParams | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(n, L, 28, 28) uint8 -> (images (n, 28, widest) uint8, widths (n,)) in the touching
    layout."""
    pool, idx = _as_pool(digit_images)
    layouts = np.full(len(idx), LAYOUT_IDS["touching"], np.uint8)
    return compose_lines(pool, idx, np.full(len(idx), idx.shape[1]), layouts, rng, params, touching)


def output_width(widths: np.ndarray, width: int | None, pad_to: int) -> int:
    """The image width for numbers of these widths: ``width`` if given (it must fit them all),
    else the widest rounded up to a multiple of pad_to."""
    widest = int(widths.max(initial=0))
    if width is not None:
        if widest > width:
            raise ValueError(f"a number is {widest} px wide, more than width={width}")
        return int(width)
    return -(-widest // pad_to) * pad_to


WARP_DRAWS = ("scale", "angle", "shear", "dy", "stroke")  # the per-digit draws warp_digits uses


def _put(out: np.ndarray, rows: np.ndarray, img: np.ndarray) -> None:
    """out[rows, :, :w] = img, with a plain slice when rows are consecutive."""
    w = img.shape[2]
    if len(rows) and rows[-1] - rows[0] + 1 == len(rows):
        out[rows[0] : rows[-1] + 1, :, :w] = img
    else:
        out[rows, :, :w] = img


def warp_blocks(pool, idx, groups, draws, centres, p: NaturalParams, which: list[int]):
    """Warp the digits of the groups ``which`` in blocks of about BLOCK_DIGITS digits (short
    groups share a block: one grid_sample for many lengths), and yield per group slice
    (group, row slice, patches (k, L, 28, 28), left (k, L), top (k, L), ink) as ``warp_digits``.

    groups: (layout, length, rows) per group; draws / centres: per group, (n_g, L) arrays.
    """
    blocks, size = [], BLOCK_DIGITS
    for g in which:
        length, rows = groups[g][1], groups[g][2]
        for sl in block_slices(len(rows), length):
            k = (sl.stop - sl.start) * length
            if size + k > BLOCK_DIGITS:
                blocks.append([])
                size = 0
            blocks[-1].append((g, sl))
            size += k
    for block in blocks:
        d = {
            key: np.concatenate([draws[g][key][sl].ravel() for g, sl in block])[:, None]
            for key in WARP_DRAWS
        }
        where = np.concatenate([centres[g][sl].ravel() for g, sl in block])[:, None]
        src = np.concatenate([idx[groups[g][2][sl], : groups[g][1]].ravel() for g, sl in block])
        patches, left, top, ink = warp_digits(pool[src][:, None], d, p, where)
        at = 0
        for g, sl in block:
            shape = (sl.stop - sl.start, groups[g][1])
            cut = slice(at, at + shape[0] * shape[1])
            at = cut.stop
            yield (
                g,
                sl,
                patches[cut].reshape(*shape, DIGIT_SIZE, DIGIT_SIZE),
                left[cut].reshape(shape),
                top[cut].reshape(shape),
                tuple(e[cut].reshape(shape) for e in ink),
            )


def compose_lines(
    pool: np.ndarray,
    idx: np.ndarray,
    lengths: np.ndarray,
    layouts: np.ndarray,
    rng: np.random.Generator,
    params: NaturalParams | None = None,
    touching: TouchingParams | None = None,
    width: int | None = None,
    pad_to: int = 1,
) -> tuple[np.ndarray, np.ndarray]:
    """Compose numbers from pool digits idx[i, :lengths[i]], each in its layout (LAYOUT_IDS).

    Returns (images (n, 28, W) uint8 padded on the right with 0, widths (n,) int32), W = the
    widest rounded up to a multiple of pad_to, or ``width``. The numbers are grouped by
    (layout, length): each group's draws and digit positions are one vectorized step; the
    warp runs as one batched grid_sample per block of ~BLOCK_DIGITS digits (natural and
    touching, short groups share a block); the paste is one scatter per digit position per
    group slice; seed is one gather per length. The draws go natural groups by ascending
    length, then touching groups, then spaced groups (none for seed).
    """
    p = params or NaturalParams()
    t = touching or TouchingParams()
    idx = np.asarray(idx)
    n = len(idx)
    lengths = np.asarray(lengths, np.int64)
    layouts = np.asarray(layouts, np.int64)
    if n and not np.isin(layouts, list(LAYOUT_IDS.values())).all():
        raise ValueError(f"unknown layout id in {np.unique(layouts)}")
    key = layouts * 1024 + lengths
    order = np.argsort(key, kind="stable")  # rows ascending within each group
    keys, starts = np.unique(key[order], return_index=True)
    groups = (
        [
            (int(k) // 1024, int(k) % 1024, rows)
            for k, rows in zip(keys, np.split(order, starts[1:]), strict=True)
        ]
        if n
        else []
    )
    seed, natural, spaced = LAYOUT_IDS["seed"], LAYOUT_IDS["natural"], LAYOUT_IDS["spaced"]

    # 1. Draws, in group order: each group's draws all before the next group's.
    draws = []
    for lay, length, rows in groups:
        if lay == natural:
            draws.append(natural_draws(len(rows), rng, p, length))
        elif lay == seed:
            draws.append(None)
        else:
            draws.append(touching_draws(len(rows), rng, p, t, length, spaced=lay == spaced))

    # 2. Where each digit goes before the warp: (n_g, L) centres per group, vectorized.
    centres = [
        None if lay == seed
        else digit_centres(d["slots"], d["margin"], DIGIT_SIZE * length) if lay == natural
        else touching_centres(d["gap"], t.pitch)
        for (lay, length, _), d in zip(groups, draws, strict=True)
    ]  # fmt: skip

    # 3. The image width is known now unless touching or spaced numbers need their warp first.
    widths = np.zeros(n, np.int32)
    for _, length, rows in groups:
        widths[rows] = DIGIT_SIZE * length  # touching and spaced ones: set after their warp
    out, pieces = None, []
    if all(lay in (seed, natural) for lay, _, _ in groups):
        out_w = output_width(widths, width, pad_to)
        if len(groups) == 1 and groups[0][0] == seed and out_w == DIGIT_SIZE * groups[0][1]:
            return stitch_seed(pool, idx[:, : groups[0][1]]), widths  # all seed: one gather
        out = np.zeros((n, IMG_H, out_w), np.uint8)

    # 4. Warp natural and touching digits together, paste each group slice, straight into the
    # output when its width is known, else kept until it is.
    warp_groups = [g for g, (lay, _, _) in enumerate(groups) if lay != seed]
    for g, sl, patches, left, top, ink in warp_blocks(pool, idx, groups, draws, centres, p,
                                                      warp_groups):  # fmt: skip
        lay, length, rows = groups[g][0], groups[g][1], groups[g][2][sl]
        if lay == natural:
            x0, y0 = place_natural(left, top, ink, DIGIT_SIZE * length)
            img = paste(patches, x0, y0, DIGIT_SIZE * length)
        else:
            margin = draws[g]["margin"][sl]
            x0, y0, w = (
                place_spaced(top, ink, draws[g]["gap"][sl], margin) if lay == spaced
                else place_touching(left, top, ink, margin)
            )  # fmt: skip
            widths[rows] = w
            img = paste(patches, x0, y0, int(w.max()))
        if out is None:
            pieces.append((rows, img))
        else:
            _put(out, rows, img)
    if out is None:
        out = np.zeros((n, IMG_H, output_width(widths, width, pad_to)), np.uint8)
        for rows, img in pieces:
            _put(out, rows, img)
    for lay, length, rows in groups:
        if lay == seed:
            _put(out, rows, stitch_seed(pool, idx[rows, :length]))
    return out, widths


def compose(
    pool: np.ndarray,
    idx: np.ndarray,
    layouts: np.ndarray,
    rng: np.random.Generator,
    params: NaturalParams | None = None,
) -> np.ndarray:
    """Compose numbers of one length from pool digits ``idx`` (n, L), each in its layout
    (seed or natural) -> (n, 28, 28*L). Same as the old ``compose`` at L = 5."""
    if not np.isin(layouts, [LAYOUT_IDS["seed"], LAYOUT_IDS["natural"]]).all():
        raise ValueError("compose takes seed and natural; use compose_lines for touching, spaced")
    n, length = idx.shape
    return compose_lines(pool, idx, np.full(n, length), layouts, rng, params)[0]


# --- layouts and the generator -------------------------------------------------------------------


def draw_layouts(layout, n: int, rng: np.random.Generator) -> np.ndarray:
    """(n,) uint8 layout ids for a layout name ('seed', 'natural', 'touching', 'spaced'), a mix
    name ('mixed': half seed half natural, drawn as before; 'mix3', 'mix4': see LAYOUT_MIXES) or a
    {layout name: weight} dict (weights are normalized)."""
    if isinstance(layout, str) and layout == "mixed":
        return rng.integers(0, 2, size=n).astype(np.uint8)  # the old draw, kept byte for byte
    if isinstance(layout, str) and layout in LAYOUT_IDS:
        return np.full(n, LAYOUT_IDS[layout], np.uint8)
    if isinstance(layout, str):
        if layout not in LAYOUT_MIXES:
            raise ValueError(f"unknown layout {layout!r}: one of "
                             f"{sorted(LAYOUT_IDS) + sorted(LAYOUT_MIXES)} or a dict")  # fmt: skip
        layout = LAYOUT_MIXES[layout]
    names = list(layout)
    weights = np.array([layout[k] for k in names], np.float64)
    if (weights < 0).any() or weights.sum() <= 0:
        raise ValueError(f"layout weights must be >= 0 and not all 0: {layout}")
    ids = np.array([LAYOUT_IDS[k] for k in names], np.uint8)
    cum = np.cumsum(weights / weights.sum())
    pick = np.searchsorted(cum, rng.random(n), side="right")
    return ids[np.minimum(pick, len(ids) - 1)]


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
    ``draw_layouts``. Images are padded on the right with black to the widest number rounded
    up to a multiple of pad_to, or to ``width``. With the defaults (5 digits, 'mixed') the draws
    and images are the old ``generate``'s.
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


# --- batches of similar widths, for training -----------------------------------------------------


def bucket_batches(
    images: np.ndarray,
    labels: np.ndarray,
    batch_size: int,
    n_batches: int,
    rng: np.random.Generator,
    layout="mix3",
    lengths=(1, 12),
    pad_to: int = 32,
    leading_zero: bool = True,
    params: NaturalParams | None = None,
    touching: TouchingParams | None = None,
    index: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
) -> list[Lines]:
    """``n_batches`` batches of similar widths: draw batch_size * n_batches numbers, sort them
    by width, cut into batches, crop each to its widest rounded up to a multiple of pad_to, and
    return them in random order. Every number is used once, so the numbers are distributed as
    with ``generate``; only which numbers share a batch changes. A larger n_batches gives
    tighter batches (less padding)."""
    lines = generate(
        images, labels, batch_size * n_batches, rng, layout, leading_zero, params, index,
        lengths=lengths, touching=touching,
    )  # fmt: skip
    order = np.argsort(lines.widths, kind="stable")
    batches = [lines.take(order[b * batch_size : (b + 1) * batch_size], pad_to)
               for b in range(n_batches)]  # fmt: skip
    return [batches[b] for b in rng.permutation(n_batches)]


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
    """One batch whose numbers all have one length L (drawn uniformly in [lo, hi]), padded to
    a multiple of pad_to; digits/idx are padded to (batch_size, hi) like ``generate``'s."""
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
