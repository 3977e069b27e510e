"""Digits as people draw them on a screen: an MNIST digit's centre line redrawn with one round
pen of uniform width (the app's canvas, a mouse, a marker). ``draw_digit`` gives the drawing at
canvas scale; ``drawn_cell`` brings it back to an MNIST-style 28x28 cell the way preprocessing
brings a drawing to the reader (strokes eroded into MNIST's range, loops the pen closed stay
closed), so a trainer can show the reader what it will see."""

from __future__ import annotations

import cv2
import numpy as np

from digitseq.data.mnist_style import digit_cell, stroke_width

INK = 40  # an MNIST pixel above this is ink (of 255)
PEN_RATIO = (0.08, 0.35)  # pen width / drawn digit height: canvas drawings, 8-20 px pens on
# digits 50-100 px tall (8 digits squeezed into a 700-px canvas reach ~0.35)


def thin(mask: np.ndarray) -> np.ndarray:
    """Zhang-Suen thinning of a boolean image -> its one-pixel centre lines."""
    img = np.pad(mask.astype(np.uint8), 1)
    while True:
        changed = False
        for step in (0, 1):
            p = np.pad(img, 1)
            n = [p[1:-1, 1:-1]]  # P1, then P2..P9 clockwise from north
            for dy, dx in ((-1, 0), (-1, 1), (0, 1), (1, 1), (1, 0), (1, -1), (0, -1), (-1, -1)):
                n.append(p[1 + dy : p.shape[0] - 1 + dy, 1 + dx : p.shape[1] - 1 + dx])
            p2, p3, p4, p5, p6, p7, p8, p9 = n[1:]
            b = sum(x.astype(np.int32) for x in n[1:])
            seq = [p2, p3, p4, p5, p6, p7, p8, p9, p2]
            a = sum(((seq[i] == 0) & (seq[i + 1] == 1)).astype(np.int32) for i in range(8))
            if step == 0:
                c = (p2 * p4 * p6 == 0) & (p4 * p6 * p8 == 0)
            else:
                c = (p2 * p4 * p8 == 0) & (p2 * p6 * p8 == 0)
            drop = (img == 1) & (b >= 2) & (b <= 6) & (a == 1) & c
            if drop.any():
                img[drop] = 0
                changed = True
        if not changed:
            return img[1:-1, 1:-1].astype(bool)


def pen(mask: np.ndarray, diameter: float) -> np.ndarray:
    """Draw a boolean centre-line image with a round pen of ``diameter`` pixels."""
    r = diameter / 2
    k = int(np.ceil(r))
    yy, xx = np.mgrid[-k : k + 1, -k : k + 1]
    disk = (yy * yy + xx * xx <= r * r).astype(np.uint8)
    return cv2.dilate(mask.astype(np.uint8), disk).astype(bool)


def digit_skeleton(digit: np.ndarray, height: int) -> np.ndarray:
    """A 28x28 MNIST digit -> the centre line of its ink at ``height`` px tall (boolean)."""
    rows, cols = np.flatnonzero(digit.max(1) > INK), np.flatnonzero(digit.max(0) > INK)
    crop = np.pad(digit[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1], 1)
    s = height / (crop.shape[0] - 2)
    size = (max(1, round(crop.shape[1] * s)), max(1, round(crop.shape[0] * s)))
    return thin(cv2.resize(crop, size, interpolation=cv2.INTER_LINEAR) > 110)


def draw_digit(digit: np.ndarray, height: int, pen_px: float) -> np.ndarray:
    """A 28x28 MNIST digit drawn ``height`` px tall (pen included) with a round pen: boolean."""
    skel = np.pad(digit_skeleton(digit, max(4, round(height - pen_px))), int(np.ceil(pen_px)))
    return pen(skel, pen_px)


def drawn_cell(digit: np.ndarray, pen_ratio: float, height: int = 80) -> np.ndarray:
    """A 28x28 MNIST digit -> the same digit drawn with a pen ``pen_ratio`` of its height wide,
    as a 28x28 uint8 MNIST-style cell (what preprocessing makes of such a drawing)."""
    ink = draw_digit(digit, height, pen_ratio * height)
    cell = digit_cell(ink.astype(np.float32), ink, stroke_width(ink))
    return np.round(cell * 255).astype(np.uint8)


def drawn_pool(images: np.ndarray, n: int, rng: np.random.Generator):
    """``n`` digits of ``images`` redrawn with pens across ``PEN_RATIO``: (cells (n, 28, 28)
    uint8, the indices they were drawn from). Drawn at random without repeats; when ``n``
    exceeds the images, each is drawn ``n // len`` times (each time with its own pen) first."""
    reps, rest = divmod(n, len(images))
    idx = np.concatenate(
        [np.tile(np.arange(len(images)), reps), rng.choice(len(images), rest, replace=False)]
    )
    ratios = rng.uniform(*PEN_RATIO, size=len(idx))
    heights = rng.integers(60, 101, size=len(idx))
    cells = np.stack(
        [drawn_cell(images[i], r, int(h)) for i, r, h in zip(idx, ratios, heights, strict=True)]
    )
    return cells, idx
