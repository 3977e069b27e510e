"""Finding the ink in a gray image: paper level and polarity, contrast stretch, Otsu's
threshold, connected components (specks and paper edges dropped), crop, deskew, stroke width
and the cut into digits. OpenCV does the image operations (threshold, components, moments,
warps in C++: the ink search of a photo takes half the time of the numpy it replaced);
``preprocess`` chains these steps.
"""

from __future__ import annotations

import cv2
import numpy as np

MIN_CONTRAST = 0.12  # ink must differ from the paper by this much (of the full range)
SQUARE3 = np.ones((3, 3), np.uint8)


def background(x: np.ndarray) -> tuple[float, float]:
    """(paper level, noise tolerance): ink is a minority of pixels, so the median is paper.
    Medians of 8-bit levels from a histogram (a regular subsample is plenty)."""
    step = int(np.ceil(np.sqrt(x.size / 65536)))
    sample = x[::step, ::step] if step > 1 else x
    q = (sample * 255 + 0.5).astype(np.uint8).ravel()
    bg = median_level(np.bincount(q, minlength=256))
    mad = median_level(np.bincount(np.abs(q.astype(np.int16) - bg), minlength=256))
    return bg / 255, max(3.0 * 1.4826 * mad / 255, 0.04)


def median_level(hist: np.ndarray) -> int:
    return int(np.searchsorted(np.cumsum(hist), (hist.sum() + 1) / 2))


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
    t, _ = cv2.threshold((x * 255).astype(np.uint8), 0, 255, cv2.THRESH_BINARY | cv2.THRESH_OTSU)
    return float(np.clip((t + 0.5) / 255, 0.2, 0.8))


def clean_mask(mask: np.ndarray) -> np.ndarray:
    """Drop specks (tiny components) and paper edges (components along half a border side)."""
    h, w = mask.shape
    n, lab = cv2.connectedComponents(mask.view(np.uint8), connectivity=8)  # (WithStats: 10x slower)
    if n < 2:
        return np.zeros_like(mask)
    area = np.bincount(lab.ravel(), minlength=n)[1:]
    keep = area >= max(2.0, 0.02 * area.max())
    contact = [
        np.bincount(lab[0], minlength=n)[1:] / w,
        np.bincount(lab[-1], minlength=n)[1:] / w,
        np.bincount(lab[:, 0], minlength=n)[1:] / h,
        np.bincount(lab[:, -1], minlength=n)[1:] / h,
    ]
    edge = np.max(contact, axis=0) >= 0.5
    if (keep & ~edge).any():  # never remove everything: a tight crop may touch the border
        keep &= ~edge
    return np.concatenate([[False], keep])[lab]


def grow(low: np.ndarray, seeds: np.ndarray) -> np.ndarray:
    """Hysteresis: the components of ``low`` that hold at least one ``seeds`` pixel, whole."""
    n, lab = cv2.connectedComponents(low.view(np.uint8), connectivity=8)
    hit = np.zeros(n, bool)
    hit[lab[seeds]] = True
    hit[0] = False
    return hit[lab] | seeds


def dilate(mask: np.ndarray) -> np.ndarray:
    """3x3 binary dilation (keeps the anti-aliased rim of the strokes)."""
    return cv2.dilate(mask.view(np.uint8), SQUARE3).view(bool)


def crop(x: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(x, mask) cut to the mask's bounding box, and the 3x3 map from the cut's (column, row)
    back to the input's (a translation)."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    sl = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
    return x[sl], mask[sl], shift(cols[0], rows[0])


def shift(dx: float, dy: float) -> np.ndarray:
    """3x3 affine: (column, row) -> (column + dx, row + dy)."""
    return np.array([[1.0, 0.0, dx], [0.0, 1.0, dy], [0.0, 0.0, 1.0]])


def deskew(x: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Undo a small rotation of the whole line (1-15 degrees), from the ink's second moments.
    Returns (x, mask, the 3x3 map from the result's (column, row) back to the input's)."""
    same = (x, mask, np.eye(3))
    m = cv2.moments(np.where(mask, x, 0).astype(np.float32))
    if m["m00"] <= 0:
        return same
    mu20, mu02, mu11 = m["mu20"], m["mu02"], m["mu11"]
    if mu20 < 2 * mu02:  # not clearly a horizontal line: the angle would be meaningless
        return same
    deg = float(np.degrees(0.5 * np.arctan2(2 * mu11, mu20 - mu02)))
    if not 1.0 <= abs(deg) <= 15.0:
        return same
    h, w = x.shape
    rot = cv2.getRotationMatrix2D((w / 2, h / 2), deg, 1.0)  # counter-clockwise, canvas grows
    c, s = abs(rot[0, 0]), abs(rot[0, 1])
    nw, nh = int(np.ceil(w * c + h * s)), int(np.ceil(w * s + h * c))
    rot[:, 2] += ((nw - w) / 2, (nh - h) / 2)
    x2 = cv2.warpAffine(x, rot, (nw, nh), flags=cv2.INTER_CUBIC, borderValue=0.0)
    m2 = cv2.warpAffine(mask.astype(np.float32), rot, (nw, nh), flags=cv2.INTER_LINEAR) > 0.5
    if not m2.any():
        return same
    x3, m3, back = crop(np.clip(x2, 0.0, 1.0), m2)
    return x3, m3, np.linalg.inv(np.vstack([rot, [0.0, 0.0, 1.0]])) @ back


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
