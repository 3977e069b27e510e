"""The pixel work every layout shares: the seed stitch, the warp of digits, the paste of patches.

Nothing here draws a random number or knows a layout's rules: each function turns the draws and
positions that ``layouts`` chose into pixels, so the same draws always give the same bytes.
The warp (stroke thickness, scale, rotation, shear, the sub-pixel shift) is one batched
``grid_sample`` per block of ~``BLOCK_DIGITS`` digits; the paste is one scatter per digit
position. Torch is imported only when a digit is warped (the seed stitch is pure numpy).
"""

from __future__ import annotations

import functools

import numpy as np

from digitseq.core.constants import DIGIT_SIZE, IMG_H

BLOCK_DIGITS = 2560  # digits per warp block (512 five-digit numbers): float work stays in cache
WARP_DRAWS = ("scale", "angle", "shear", "dy", "stroke")  # the per-digit draws warp_digits uses


# --- seed: digits edge to edge -------------------------------------------------------------------


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


# --- the warp ------------------------------------------------------------------------------------


def warp_digits(digit_images: np.ndarray, d: dict[str, np.ndarray], p, centres):
    """Thicken/thin, scale, rotate and shear each digit, and move it by the sub-pixel part of
    its position (one batched ``grid_sample`` over all digits).

    digit_images (n, L, 28, 28) uint8; d the draws (scale, angle, shear, dy, stroke: (n, L));
    p the ``layouts.NaturalParams`` (p_thick, p_thin); centres (n, L): the canvas column of each
    digit's centre. Returns (patches (n, L, 28, 28) uint8, left (n, L), top (n, L): the canvas
    column and row of each patch's top-left corner before any clipping (whole numbers, float),
    ink: (first row, last row, first column, last column) of each patch's ink (pixels > 0), each
    (n, L) int64).
    """
    import torch
    import torch.nn.functional as F

    n, length = digit_images.shape[:2]
    m = n * length
    left = np.floor(centres - DIGIT_SIZE / 2)
    frac_x = centres - DIGIT_SIZE / 2 - left  # sub-pixel part, done by the warp
    top = np.round(d["dy"])
    frac_y = d["dy"] - top
    x = stroke_width(np.ascontiguousarray(digit_images).reshape(m, DIGIT_SIZE, DIGIT_SIZE),
                     d["stroke"].reshape(m), p.p_thick, p.p_thin)  # fmt: skip

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


def stroke_width(x: np.ndarray, stroke: np.ndarray, p_thick: float, p_thin: float) -> np.ndarray:
    """Thicken the (m, 28, 28) uint8 digits whose stroke draw is < p_thick (a pen or marker)
    and thin the next p_thin of them (a fine pen): a blend with a 3x3 dilation or erosion."""
    thick = np.flatnonzero(stroke < p_thick)
    thin = np.flatnonzero((stroke >= p_thick) & (stroke < p_thick + p_thin))
    if thick.size or thin.size:
        x = x.copy()
        x[thick] = (x[thick] >> 1) + (neighbourhood(x[thick], np.maximum) >> 1)
        x[thin] = (x[thin] >> 1) + (neighbourhood(x[thin], np.minimum) >> 1)
    return x


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


# --- warping in blocks ---------------------------------------------------------------------------


def block_slices(n: int, length: int) -> list[slice]:
    """Row slices of n numbers of ``length`` digits, about BLOCK_DIGITS digits each."""
    step = max(1, BLOCK_DIGITS // length)
    return [slice(s, min(s + step, n)) for s in range(0, n, step)]


def warp_blocks(pool, idx, groups, draws, centres, p, which: list[int]):
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


# --- the paste -----------------------------------------------------------------------------------


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
