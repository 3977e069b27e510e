"""How digits are laid out in a number: the layouts, their parameters and random draws, and where
each layout puts its digits.

Everything a layout decides lives here: its id and mixes, the ranges it draws from
(``NaturalParams``, ``TouchingParams``), the draws themselves (the only random numbers after
``numbers.sample_numbers``), where each digit's centre goes before the warp and where its patch
lands after it. The pixel work every layout shares (warping, pasting, the seed stitch) is in
``warp``, which draws nothing; ``compose`` runs the two in order. A new layout is a new entry in
``LAYOUT_IDS`` and a branch in ``layout_draws``, ``centres`` and ``place`` below.

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
spaced 0.2 (``mix3`` plus ink-spaced numbers); ``people`` = most numbers spaced by their ink.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from digitseq.core.constants import DIGIT_SIZE, N_DIGITS

LAYOUT_IDS = {"seed": 0, "natural": 1, "touching": 2, "spaced": 3}
SEED, NATURAL, TOUCHING, SPACED = (LAYOUT_IDS[k] for k in ("seed", "natural", "touching", "spaced"))
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


# --- which layout each number gets ---------------------------------------------------------------


def draw_layouts(layout, n: int, rng: np.random.Generator) -> np.ndarray:
    """(n,) uint8 layout ids for a layout name ('seed', 'natural', 'touching', 'spaced'), a mix
    name ('mixed': half seed half natural, drawn as before; 'mix3', 'mix4', 'people': see
    LAYOUT_MIXES) or a {layout name: weight} dict (weights are normalized)."""
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


# --- the draws -----------------------------------------------------------------------------------


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


def layout_draws(layout: int, n: int, length: int, rng, p: NaturalParams, t: TouchingParams):
    """The draws of n numbers of ``length`` digits in ``layout`` (None for seed: it draws
    nothing)."""
    if layout == SEED:
        return None
    if layout == NATURAL:
        return natural_draws(n, rng, p, length)
    return touching_draws(n, rng, p, t, length, spaced=layout == SPACED)


# --- where the digits go -------------------------------------------------------------------------


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


def centres(layout: int, length: int, d: dict[str, np.ndarray], t: TouchingParams):
    """(n, L) canvas column of each digit's centre before the warp (None for seed)."""
    if layout == SEED:
        return None
    if layout == NATURAL:
        return digit_centres(d["slots"], d["margin"], DIGIT_SIZE * length)
    return touching_centres(d["gap"], t.pitch)


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


def place(layout: int, length: int, d: dict[str, np.ndarray], left, top, ink):
    """(x0, y0, widths) of warped patches (n, L) in ``layout`` (not seed), from ``warp_digits``'s
    left, top and ink and the numbers' draws ``d``: the canvas column and row of each patch's
    top-left corner, and each number's width (28*L for natural)."""
    if layout == NATURAL:
        x0, y0 = place_natural(left, top, ink, DIGIT_SIZE * length)
        return x0, y0, np.full(len(x0), DIGIT_SIZE * length, np.int64)
    if layout == SPACED:
        return place_spaced(top, ink, d["gap"], d["margin"])
    return place_touching(left, top, ink, d["margin"])
