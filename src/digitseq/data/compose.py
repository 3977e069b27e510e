"""Compose 28x140 images of 5-digit numbers from MNIST digits, per layout.

``seed``: five 28x28 digits edge to edge (the original project's format), pure numpy.
``natural``: handwriting-on-a-form: each digit scaled, rotated, sheared, thickened or thinned,
jittered vertically and placed at uneven centres (gaps and slight overlaps); the per-digit
warp runs as one batched torch ``grid_sample`` over all digits, the paste as one scatter per
position. Randomness comes only from the ``np.random.Generator`` passed in.
"""

from __future__ import annotations

import functools
from dataclasses import asdict, dataclass

import numpy as np

from digitseq.core.constants import DIGIT_SIZE, IMG_H, IMG_W, N_DIGITS

LAYOUT_IDS = {"seed": 0, "natural": 1}


@dataclass(frozen=True)
class NaturalParams:
    """Ranges of the ``natural`` layout (each drawn uniformly per digit unless noted)."""

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


# --- which digits ------------------------------------------------------------------------------


def class_index(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(order, starts, counts): pool indices sorted by label, where each class starts, its size."""
    order = np.argsort(labels, kind="stable")
    counts = np.bincount(labels, minlength=10)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    return order, starts, counts


def sample_numbers(
    labels: np.ndarray,
    n: int,
    rng: np.random.Generator,
    leading_zero: bool = True,
    index: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Draw n numbers uniformly and, per digit, a random pool image of that class.

    Returns (digits (n, 5) uint8, pool indices (n, 5) int64).
    """
    order, starts, counts = index if index is not None else class_index(labels)
    digits = rng.integers(0, 10, size=(n, N_DIGITS), dtype=np.int64)
    if not leading_zero:
        digits[:, 0] = rng.integers(1, 10, size=n)
    offsets = (rng.random((n, N_DIGITS)) * counts[digits]).astype(np.int64)
    idx = order[starts[digits] + offsets]
    return digits.astype(np.uint8), idx


# --- layouts -----------------------------------------------------------------------------------


def compose_seed(digit_images: np.ndarray) -> np.ndarray:
    """(n, 5, 28, 28) uint8 -> (n, 28, 140): digits side by side, no gaps."""
    n = digit_images.shape[0]
    return np.ascontiguousarray(digit_images.transpose(0, 2, 1, 3)).reshape(n, IMG_H, IMG_W)


def stitch_seed(pool: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """``compose_seed(pool[idx])`` in one gather: (N, 28, 28) pool, (n, 5) idx -> (n, 28, 140).

    Each output row r of digit k is row r of pool image idx[n, k]; viewing a 28-pixel row as
    one opaque 28-byte item makes that a single ``np.take`` (~2x faster than gather + transpose).
    """
    n = idx.shape[0]
    rows = np.ascontiguousarray(pool, dtype=np.uint8).reshape(-1, DIGIT_SIZE).view(f"V{DIGIT_SIZE}")
    which = idx[:, None, :] * DIGIT_SIZE + np.arange(DIGIT_SIZE)[None, :, None]  # (n, 28, 5)
    return np.take(rows[:, 0], which).view(np.uint8).reshape(n, IMG_H, IMG_W)


def natural_draws(n: int, rng: np.random.Generator, p: NaturalParams) -> dict[str, np.ndarray]:
    """All random numbers the natural layout needs for n images, drawn in a fixed order."""
    shape = (n, N_DIGITS)
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


def digit_centres(slots: np.ndarray, margin: np.ndarray) -> np.ndarray:
    """Uneven slot widths scaled to fill the canvas after the margin -> centre x of each digit."""
    half = DIGIT_SIZE / 2
    usable = IMG_W - 2 * margin  # (n, 1): margins on both sides
    widths = slots / slots.sum(axis=1, keepdims=True) * usable
    centres = margin + np.cumsum(widths, axis=1) - widths / 2
    return np.clip(centres, half - 2, IMG_W - half + 2)  # never push ink off the canvas


def compose_natural(
    digit_images: np.ndarray, rng: np.random.Generator, params: NaturalParams | None = None
) -> np.ndarray:
    """(n, 5, 28, 28) uint8 -> (n, 28, 140) uint8 in the natural layout."""
    p = params or NaturalParams()
    n = digit_images.shape[0]
    d = natural_draws(n, rng, p)  # all draws first: output is independent of the block size
    out = np.empty((n, IMG_H, IMG_W), np.uint8)
    for start in range(0, n, BLOCK):  # blocks keep the float work inside the CPU caches
        sl = slice(start, start + BLOCK)
        out[sl] = render_natural(digit_images[sl], {k: v[sl] for k, v in d.items()}, p)
    return out


BLOCK = 512  # numbers per block


def render_natural(digit_images: np.ndarray, d: dict[str, np.ndarray], p: NaturalParams):
    """(n, 5, 28, 28) uint8 + the draws (from ``natural_draws``) -> (n, 28, 140) uint8."""
    patches, x0, y0 = natural_patches(digit_images, d, p)
    return paste(patches, x0, y0)


def natural_patches(
    digit_images: np.ndarray, d: dict[str, np.ndarray], p: NaturalParams
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Warp each digit and choose where it goes, keeping all its ink inside the canvas.

    Returns (patches (n, 5, 28, 28) uint8, x0 (n, 5), y0 (n, 5)): the canvas column and row of
    each patch's top-left corner (the patch is mostly blank margin, so x0/y0 may be negative).
    """
    import torch
    import torch.nn.functional as F

    n = digit_images.shape[0]
    m = n * N_DIGITS
    centres = digit_centres(d["slots"], d["margin"])  # (n, 5) float
    left = np.floor(centres - DIGIT_SIZE / 2)
    frac_x = centres - DIGIT_SIZE / 2 - left  # sub-pixel part, done by the warp
    top = np.round(d["dy"])
    frac_y = d["dy"] - top

    # Stroke thickness on the source digits (uint8, cheap): blend with a 3x3 dilation
    # (pen or marker) or erosion (fine pen).
    x = digit_images.reshape(m, DIGIT_SIZE, DIGIT_SIZE)
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
    patches = xt.round_().to(torch.uint8).reshape(n, N_DIGITS, DIGIT_SIZE, DIGIT_SIZE)

    # Jitter and uneven spacing may push a tall or edge digit past the canvas: shift it back
    # just enough that its ink (rows/cols with any pixel > 0) stays inside. A warped digit is at
    # most ~27 px tall (scale <= 1.1 of MNIST's 20-px box, rotated), so it always fits.
    rows = (patches.amax(dim=3) > 0).numpy()  # (n, 5, 28)
    cols = (patches.amax(dim=2) > 0).numpy()
    last = DIGIT_SIZE - 1
    y0 = np.clip(top, -rows.argmax(2), last - (last - rows[..., ::-1].argmax(2)))
    x0 = np.clip(left, -cols.argmax(2), IMG_W - 1 - (last - cols[..., ::-1].argmax(2)))
    return patches.numpy(), x0.astype(np.int64), y0.astype(np.int64)


def paste(patches: np.ndarray, x0: np.ndarray, y0: np.ndarray) -> np.ndarray:
    """Paste (n, 5, 28, 28) patches at columns x0, rows y0 (n, 5) -> (n, 28, 140) uint8.

    Overlapping strokes merge with max. The canvas is padded to take the blank margins of
    patches that hang over the edge (natural_patches keeps all ink inside the canvas).
    """
    n = patches.shape[0]
    pad = int(max(0, -x0.min(), x0.max() + DIGIT_SIZE - IMG_W, -y0.min(), y0.max()))
    ph, pw = IMG_H + 2 * pad, IMG_W + 2 * pad
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
    for i in range(N_DIGITS):  # one gather/max/scatter per position, not per sample
        at = (rows, y0[:, i] + pad, x0[:, i] + pad)
        windows[at] = np.maximum(windows[at], patches[:, i])
    return canvas[:, pad : pad + IMG_H, pad : pad + IMG_W]


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


def compose(
    pool: np.ndarray,
    idx: np.ndarray,
    layouts: np.ndarray,
    rng: np.random.Generator,
    params: NaturalParams | None = None,
) -> np.ndarray:
    """Compose numbers from pool digits ``idx`` (n, 5), each in its layout (``LAYOUT_IDS``)."""
    out = stitch_seed(pool, idx)
    nat = np.flatnonzero(layouts == LAYOUT_IDS["natural"])
    if nat.size:
        out[nat] = compose_natural(pool[idx[nat]], rng, params)
    return out


def draw_layouts(layout: str, n: int, rng: np.random.Generator) -> np.ndarray:
    """(n,) uint8 layout ids for a layout name: 'seed', 'natural' or 'mixed' (half and half)."""
    if layout == "mixed":
        return rng.integers(0, 2, size=n).astype(np.uint8)
    return np.full(n, LAYOUT_IDS[layout], np.uint8)


def generate(
    images: np.ndarray,
    labels: np.ndarray,
    n: int,
    rng: np.random.Generator,
    layout: str = "mixed",
    leading_zero: bool = True,
    params: NaturalParams | None = None,
    index: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """n numbers from a digit pool -> (images (n,28,140), digits (n,5), pool idx (n,5), layouts)."""
    digits, idx = sample_numbers(labels, n, rng, leading_zero, index)
    lay = draw_layouts(layout, n, rng)
    return compose(images, idx, lay, rng, params), digits, idx, lay
