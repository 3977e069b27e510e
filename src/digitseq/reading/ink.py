"""Finding the ink in a gray image: paper level and polarity, contrast stretch, Otsu's
threshold, connected components (specks and paper edges dropped), crop, deskew, stroke width
and the cut into digits. Plain numpy (PIL only to rotate); ``preprocess`` chains these steps.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

MIN_CONTRAST = 0.12  # ink must differ from the paper by this much (of the full range)


def background(x: np.ndarray) -> tuple[float, float]:
    """(paper level, noise tolerance): ink is a minority of pixels, so the median is paper."""
    step = int(np.ceil(np.sqrt(x.size / 65536)))  # a regular subsample is plenty for a median
    sample = x[::step, ::step] if step > 1 else x
    bg = float(np.median(sample))
    noise = 1.4826 * float(np.median(np.abs(sample - bg)))
    return bg, max(3.0 * noise, 0.04)


def to_white_on_black(gray: np.ndarray) -> tuple[np.ndarray, bool]:
    """Invert when the ink is darker than the paper: the side of the paper level that holds
    more mass beyond the noise is the ink (robust to the paper's shade and to noise)."""
    bg, tol = background(gray)
    dark = np.clip(bg - tol - gray, 0, None).sum()
    light = np.clip(gray - bg - tol, 0, None).sum()
    if dark > light:
        return (1.0 - gray).astype(np.float32), True
    return gray, False


def stretch(x: np.ndarray) -> np.ndarray | None:
    """Paper -> 0, ink -> 1 (clipped); None when nothing stands out from the paper."""
    bg, tol = background(x)
    candidates = x[x > bg + tol]
    if candidates.size < 4:
        return None
    hi = float(np.percentile(candidates, 90))
    if hi - bg < MIN_CONTRAST:
        return None
    return np.clip((x - bg) / (hi - bg), 0.0, 1.0).astype(np.float32)


def otsu(x: np.ndarray) -> float:
    """Otsu's threshold of a [0, 1] image, kept within [0.2, 0.8]."""
    hist = np.bincount((x * 255).astype(np.uint8).ravel(), minlength=256).astype(np.float64)
    p = hist / hist.sum()
    omega = np.cumsum(p)
    mu = np.cumsum(p * np.arange(256))
    with np.errstate(divide="ignore", invalid="ignore"):
        between = (mu[-1] * omega - mu) ** 2 / (omega * (1 - omega))
    t = int(np.nanargmax(between)) if np.isfinite(between).any() else 127
    return float(np.clip((t + 0.5) / 255, 0.2, 0.8))


def runs(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Horizontal runs of True: (row, start, end exclusive), in row-major order."""
    h, w = mask.shape
    padded = np.zeros((h, w + 2), np.int8)
    padded[:, 1:-1] = mask
    d = np.diff(padded, axis=1)
    row, start = np.nonzero(d == 1)
    _, end = np.nonzero(d == -1)
    return row, start, end


def label_runs(row, start, end, width: int) -> np.ndarray:
    """8-connected components of runs (no scipy): union runs of adjacent rows that touch."""
    n = row.size
    k = width + 2
    start_key, end_key = row * k + start, row * k + end
    # runs b in row r+1 touch run a in row r when max(starts) <= min(ends): a contiguous range
    lo = np.searchsorted(end_key, (row + 1) * k + start, side="left")
    hi = np.searchsorted(start_key, (row + 1) * k + end, side="right")
    counts = np.maximum(hi - lo, 0)
    a = np.repeat(np.arange(n), counts)
    b = (
        np.arange(counts.sum())
        - np.repeat(np.cumsum(counts) - counts, counts)
        + np.repeat(lo, counts)
    )
    lab = np.arange(n)
    while a.size:
        m = np.minimum(lab[a], lab[b])
        before = lab.copy()
        np.minimum.at(lab, a, m)
        np.minimum.at(lab, b, m)
        while True:  # pointer jumping: every run points at its root
            nxt = lab[lab]
            if np.array_equal(nxt, lab):
                break
            lab = nxt
        if np.array_equal(lab, before):
            break
    return np.unique(lab, return_inverse=True)[1]


def paint(shape, row, start, end) -> np.ndarray:
    acc = np.zeros((shape[0], shape[1] + 1), np.int32)
    np.add.at(acc, (row, start), 1)
    np.add.at(acc, (row, end), -1)
    return np.cumsum(acc, axis=1)[:, :-1] > 0


def clean_mask(mask: np.ndarray) -> np.ndarray:
    """Drop specks (tiny components) and paper edges (components along half a border side)."""
    h, w = mask.shape
    row, start, end = runs(mask)
    comp = label_runs(row, start, end, w)
    length = end - start
    area = np.bincount(comp, weights=length)
    keep = area >= max(2.0, 0.02 * area.max())
    contact = [
        np.bincount(comp, weights=length * (row == 0), minlength=area.size) / w,
        np.bincount(comp, weights=length * (row == h - 1), minlength=area.size) / w,
        np.bincount(comp, weights=start == 0, minlength=area.size) / h,
        np.bincount(comp, weights=end == w, minlength=area.size) / h,
    ]
    edge = np.max(contact, axis=0) >= 0.5
    if (keep & ~edge).any():  # never remove everything: a tight crop may touch the border
        keep &= ~edge
    sel = keep[comp]
    return paint(mask.shape, row[sel], start[sel], end[sel])


def grow(low: np.ndarray, seeds: np.ndarray) -> np.ndarray:
    """Hysteresis: the components of ``low`` that hold at least one ``seeds`` pixel, whole."""
    h, w = low.shape
    row, start, end = runs(low)
    if row.size == 0:
        return seeds
    comp = label_runs(row, start, end, w)
    ahead = np.zeros((h, w + 1), np.int32)
    ahead[:, 1:] = np.cumsum(seeds, axis=1)
    hit = ahead[row, end] - ahead[row, start] > 0  # the run holds a seed pixel
    sel = (np.bincount(comp, weights=hit) > 0)[comp]
    return paint(low.shape, row[sel], start[sel], end[sel]) | seeds


def dilate(mask: np.ndarray) -> np.ndarray:
    """3x3 binary dilation (keeps the anti-aliased rim of the strokes)."""
    p = np.pad(mask, 1)
    rows = p[:, :-2] | p[:, 1:-1] | p[:, 2:]
    return rows[:-2] | rows[1:-1] | rows[2:]


def crop(x: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    sl = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
    return x[sl], mask[sl]


def deskew(x: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Undo a small rotation of the whole line (1-15 degrees), from the ink's second moments."""
    ys, xs = np.nonzero(mask)
    wts = x[ys, xs].astype(np.float64)
    cx, cy = np.average(xs, weights=wts), np.average(ys, weights=wts)
    mu20 = np.average((xs - cx) ** 2, weights=wts)
    mu02 = np.average((ys - cy) ** 2, weights=wts)
    mu11 = np.average((xs - cx) * (ys - cy), weights=wts)
    if mu20 < 2 * mu02:  # not clearly a horizontal line: the angle would be meaningless
        return x, mask
    deg = float(np.degrees(0.5 * np.arctan2(2 * mu11, mu20 - mu02)))
    if not 1.0 <= abs(deg) <= 15.0:
        return x, mask
    rot = Image.fromarray(x, "F").rotate(deg, Image.Resampling.BICUBIC, expand=True)
    mrot = Image.fromarray(mask.astype(np.float32), "F").rotate(
        deg, Image.Resampling.BILINEAR, expand=True
    )
    x2 = np.clip(np.asarray(rot), 0.0, 1.0).astype(np.float32)
    m2 = np.asarray(mrot) > 0.5
    if not m2.any():
        return x, mask
    return crop(x2, m2)


def stroke_width(mask: np.ndarray) -> float:
    """Mean stroke width in pixels: area / half the boundary length (2A / E)."""
    p = np.pad(mask, 1)
    edges = np.count_nonzero(p[:, 1:] != p[:, :-1]) + np.count_nonzero(p[1:] != p[:-1])
    return 2.0 * np.count_nonzero(mask) / max(edges, 1)


def split_digits(mask: np.ndarray, n: int) -> list[tuple[int, int]]:
    """Column ranges of the n digits: ink groups between empty columns, specks dropped, the
    closest groups merged, the widest split at its thinnest column until there are n."""
    proj = mask.sum(axis=0).astype(np.float64)
    on = np.concatenate([[0], (proj > 0).astype(np.int8), [0]])
    starts, ends = np.flatnonzero(np.diff(on) == 1), np.flatnonzero(np.diff(on) == -1)
    groups = [[int(s), int(e)] for s, e in zip(starts, ends, strict=True)]
    while len(groups) > n:
        mass = np.array([proj[s:e].sum() for s, e in groups])
        if mass.min() < 0.05 * mass.max():
            groups.pop(int(mass.argmin()))
            continue
        gaps = [groups[i + 1][0] - groups[i][1] for i in range(len(groups) - 1)]
        i = int(np.argmin(gaps))
        groups[i : i + 2] = [[groups[i][0], groups[i + 1][1]]]
    while len(groups) < n:
        widths = [e - s for s, e in groups]
        j = int(np.argmax(widths))
        s, e = groups[j]
        if e - s < 2:
            break
        lo, hi = s + max(1, (e - s) // 4), e - max(1, (e - s) // 4)
        if hi <= lo:
            lo, hi = s + 1, e
        middle = (s + e) / 2
        cost = proj[lo:hi] + 1e-3 * np.abs(np.arange(lo, hi) - middle)  # ties: nearest the middle
        cut = lo + int(np.argmin(cost))
        groups[j : j + 1] = [[s, cut], [cut, e]]
    groups += [[0, 0]] * (n - len(groups))  # a line too small to split: empty cells
    return [(s, e) for s, e in groups]
