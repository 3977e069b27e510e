"""How MNIST made its digits, for anything that must look like them: a digit scaled to fit a
20x20 box (anti-aliased) and centred by mass in a 28x28 cell, with strokes in MNIST's width
range. Used by preprocessing (people's images) and by the drawn-digit pool (training)."""

from __future__ import annotations

import cv2
import numpy as np

from digitseq.core.constants import DIGIT_SIZE

BOX = 20  # MNIST: each digit fits a 20x20 box inside its 28x28 cell
STROKE_MIN, STROKE_MAX = 1.8, 2.0  # stroke width (2A/E of the ink mask) at 28-px scale: MNIST
# ~1.6-3.3 px (5-95%); thicker strokes are eroded to 2.0 (chosen on val canvas drawings)
RESIZE = cv2.INTER_AREA


def stroke_width(mask: np.ndarray) -> float:
    """Mean stroke width in pixels: area / half the boundary length (2A / E)."""
    p = np.pad(mask, 1)
    edges = np.count_nonzero(p[:, 1:] != p[:, :-1]) + np.count_nonzero(p[1:] != p[:-1])
    return 2.0 * np.count_nonzero(mask) / max(edges, 1)


def mnist_stroke(x: np.ndarray, stroke: float, scale: float) -> np.ndarray:
    """Keep the stroke within MNIST's range once scaled by ``scale``: a thin pen on a big
    drawing would shrink to a faint hairline, a marker to a blob (dilate or erode first, with a
    round pen)."""
    final = stroke * scale
    if final < STROKE_MIN:
        r = int(np.ceil((STROKE_MIN / scale - stroke) / 2))
        return cv2.dilate(np.pad(x, r), disk(r))
    if final > STROKE_MAX:
        r = int((stroke - STROKE_MAX / scale) / 2)
        if r >= 1:
            thin = cv2.erode(x, disk(r))
            return thin if thin.max() > 0.5 else x
    return x


def disk(r: int) -> np.ndarray:
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))


def resized(x: np.ndarray, h: int, w: int) -> tuple[np.ndarray, float]:
    """(x resized to at least 1x1 with Lanczos, negatives clipped; its peak value)."""
    small = cv2.resize(x, (max(1, w), max(1, h)), interpolation=RESIZE)
    small = np.clip(small, 0.0, None)
    return small, float(small.max())


def digit_cell(x: np.ndarray, mask: np.ndarray, stroke: float) -> np.ndarray:
    """One digit's slice of the line -> a 28x28 MNIST-style cell (20x20 box, centred by mass)."""
    cell = np.zeros((DIGIT_SIZE, DIGIT_SIZE), np.float32)
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return cell
    patch = x[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    h, w = patch.shape
    scale = BOX / max(h, w)
    patch = mnist_stroke(patch, stroke, scale)
    h, w = patch.shape
    scale = BOX / max(h, w)
    small, peak = resized(patch, round(h * scale), round(w * scale))
    nh, nw = small.shape
    if peak <= 0:
        return cell
    small = np.clip(small / peak, 0.0, 1.0)
    ys, xs = np.indices(small.shape)
    total = small.sum()
    cy, cx = (ys * small).sum() / total, (xs * small).sum() / total
    top = int(np.clip(round(DIGIT_SIZE / 2 - cy), 0, DIGIT_SIZE - nh))
    left = int(np.clip(round(DIGIT_SIZE / 2 - cx), 0, DIGIT_SIZE - nw))
    cell[top : top + nh, left : left + nw] = small
    return cell
