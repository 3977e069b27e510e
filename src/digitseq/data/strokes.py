"""Digits drawn from synthetic pen trajectories, for training: each digit has a few shapes (a 1
bare, flagged or with a base; an open or closed 4; a 7 with or without its bar; a plain or
looped 2; ...) given as control points of smooth strokes. A digit is drawn by jittering the
points, passing a Catmull-Rom spline through them, slanting, stretching and adding a slow
tremor, then inking the path with one round pen; ``digit_cell`` makes the MNIST-style cell.

The held-out pen drawings (``benchmarks/people_sets.py``) are built another way (line and
elliptical-arc primitives with their own shapes), so a reader that learns these strokes is
still tested on strokes it never saw.
"""

from __future__ import annotations

import cv2
import numpy as np

from digitseq.data.mnist_style import digit_cell, stroke_width

# digit -> shapes; a shape is a list of strokes; a stroke is control points (x, y) in a box
# about 0.6 wide and 1 tall, y downward.
SHAPES: dict[int, list[list[list[tuple[float, float]]]]] = {
    0: [
        [[(0.3, 0.0), (0.08, 0.2), (0.03, 0.55), (0.15, 0.92), (0.35, 1.0), (0.55, 0.8),
          (0.57, 0.4), (0.45, 0.08), (0.28, 0.02)]],
        [[(0.35, 0.02), (0.12, 0.12), (0.0, 0.5), (0.12, 0.9), (0.32, 1.0), (0.5, 0.88),
          (0.58, 0.5), (0.5, 0.12), (0.3, 0.0), (0.2, 0.08)]],
    ],
    1: [
        [[(0.32, 0.0), (0.3, 1.0)]],
        [[(0.1, 0.22), (0.34, 0.0), (0.32, 1.0)]],
        [[(0.12, 0.2), (0.34, 0.0), (0.33, 1.0)], [(0.1, 1.0), (0.55, 1.0)]],
        [[(0.42, 0.0), (0.3, 0.5), (0.2, 1.0)]],
    ],
    2: [
        [[(0.05, 0.22), (0.22, 0.02), (0.45, 0.04), (0.56, 0.25), (0.45, 0.5), (0.04, 1.0),
          (0.6, 0.98)]],
        [[(0.06, 0.2), (0.25, 0.0), (0.5, 0.08), (0.52, 0.35), (0.2, 0.78), (0.08, 0.95),
          (0.2, 0.86), (0.15, 0.98), (0.6, 0.97)]],
    ],
    3: [
        [[(0.05, 0.1), (0.3, 0.0), (0.54, 0.14), (0.5, 0.38), (0.25, 0.5), (0.55, 0.62),
          (0.58, 0.85), (0.32, 1.0), (0.02, 0.9)]],
        [[(0.05, 0.0), (0.55, 0.02), (0.25, 0.4), (0.55, 0.58), (0.56, 0.85), (0.3, 1.0),
          (0.02, 0.88)]],
    ],
    4: [
        [[(0.42, 0.0), (0.02, 0.66), (0.6, 0.66)], [(0.46, 0.3), (0.46, 1.0)]],
        [[(0.46, 1.0), (0.46, 0.0), (0.02, 0.66), (0.6, 0.66)]],
        [[(0.1, 0.0), (0.05, 0.6), (0.6, 0.6)], [(0.46, 0.0), (0.46, 1.0)]],
    ],
    5: [
        [[(0.56, 0.0), (0.1, 0.0), (0.06, 0.45), (0.35, 0.38), (0.56, 0.56), (0.55, 0.82),
          (0.3, 1.0), (0.02, 0.9)]],
        [[(0.12, 0.0), (0.06, 0.45), (0.35, 0.38), (0.56, 0.56), (0.55, 0.82), (0.3, 1.0),
          (0.02, 0.9)], [(0.12, 0.0), (0.58, 0.02)]],
    ],
    6: [
        [[(0.5, 0.02), (0.2, 0.3), (0.05, 0.7), (0.2, 0.98), (0.45, 0.95), (0.55, 0.72),
          (0.4, 0.55), (0.15, 0.6), (0.07, 0.75)]],
        [[(0.45, 0.0), (0.15, 0.4), (0.06, 0.75), (0.25, 1.0), (0.5, 0.85), (0.45, 0.6),
          (0.2, 0.6)]],
    ],
    7: [
        [[(0.02, 0.02), (0.58, 0.0), (0.22, 1.0)]],
        [[(0.02, 0.02), (0.58, 0.0), (0.22, 1.0)], [(0.15, 0.5), (0.52, 0.48)]],
        [[(0.0, 0.1), (0.1, 0.0), (0.58, 0.02), (0.35, 0.5), (0.28, 1.0)]],
    ],
    8: [
        [[(0.5, 0.1), (0.3, 0.0), (0.08, 0.15), (0.2, 0.4), (0.45, 0.6), (0.55, 0.82),
          (0.3, 1.0), (0.05, 0.82), (0.15, 0.6), (0.45, 0.4), (0.55, 0.15), (0.45, 0.05)]],
        [[(0.3, 0.48), (0.08, 0.25), (0.3, 0.0), (0.52, 0.25), (0.3, 0.48), (0.05, 0.75),
          (0.3, 1.0), (0.56, 0.75), (0.3, 0.48)]],
    ],
    9: [
        [[(0.55, 0.2), (0.35, 0.02), (0.1, 0.1), (0.08, 0.35), (0.3, 0.45), (0.55, 0.3),
          (0.55, 0.1), (0.5, 0.6), (0.4, 1.0)]],
        [[(0.55, 0.15), (0.3, 0.0), (0.06, 0.2), (0.2, 0.45), (0.55, 0.3)], [(0.55, 0.08),
          (0.55, 1.0)]],
    ],
}  # fmt: skip


def catmull_rom(points: np.ndarray, per_segment: int = 12) -> np.ndarray:
    """A smooth path through ``points`` (k, 2): a centripetal-free uniform Catmull-Rom spline."""
    if len(points) < 3:
        t = np.linspace(0, 1, per_segment * 2)[:, None]
        return points[0] * (1 - t) + points[-1] * t
    p = np.vstack([points[0], points, points[-1]])
    t = np.linspace(0, 1, per_segment, endpoint=False)[:, None]
    segs = []
    for i in range(1, len(p) - 2):
        p0, p1, p2, p3 = p[i - 1], p[i], p[i + 1], p[i + 2]
        segs.append(
            0.5 * ((2 * p1) + (-p0 + p2) * t + (2 * p0 - 5 * p1 + 4 * p2 - p3) * t**2
                   + (-p0 + 3 * p1 - 3 * p2 + p3) * t**3)
        )  # fmt: skip
    segs.append(points[-1][None])
    return np.vstack(segs)


def trajectory(digit: int, rng: np.random.Generator) -> list[np.ndarray]:
    """One random drawing of ``digit``: its strokes as paths in the unit box (y downward)."""
    shapes = SHAPES[digit]
    shape = shapes[int(rng.integers(len(shapes)))]
    slant = rng.uniform(-0.35, 0.2)  # x += slant * (1 - y): most people lean right
    stretch = rng.uniform(0.7, 1.35)
    strokes = []
    for stroke in shape:
        pts = np.asarray(stroke, np.float64) + rng.normal(0, 0.035, size=(len(stroke), 2))
        path = catmull_rom(pts)
        path[:, 0] = path[:, 0] * stretch + slant * (1 - path[:, 1])
        phase, freq = rng.uniform(0, 2 * np.pi, 2), rng.uniform(3, 9, 2)
        s = np.linspace(0, 1, len(path))
        path += 0.012 * np.stack([np.sin(freq[0] * 2 * np.pi * s + phase[0]),
                                  np.sin(freq[1] * 2 * np.pi * s + phase[1])], 1)  # fmt: skip
        strokes.append(path)
    return strokes


def draw(strokes: list[np.ndarray], height: int, pen: float) -> np.ndarray:
    """Paths in the unit box -> a float image of them inked ``height`` px tall with a round pen."""
    allp = np.vstack(strokes)
    lo = allp.min(0)
    scale = (height - pen) / max(1e-6, np.ptp(allp[:, 1]))
    pad = int(np.ceil(pen)) + 2
    w = int(np.ceil(np.ptp(allp[:, 0]) * scale)) + 2 * pad
    img = np.zeros((height + 2 * pad, max(w, 2 * pad + 1)), np.uint8)
    for path in strokes:
        xy = np.round(((path - lo) * scale + pad) * 4).astype(np.int32)  # 2 fractional bits
        cv2.polylines(img, [xy], False, 255, max(1, round(pen)), cv2.LINE_AA, shift=2)
    return img.astype(np.float32) / 255


def stroke_cells(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``n`` pen-trajectory digits as MNIST-style cells -> (cells (n, 28, 28) uint8, labels)."""
    labels = rng.integers(0, 10, size=n).astype(np.uint8)
    cells = np.zeros((n, 28, 28), np.uint8)
    for i, d in enumerate(labels):
        height = int(rng.integers(50, 101))
        img = draw(trajectory(int(d), rng), height, rng.uniform(0.06, 0.3) * height)
        mask = img > 0.5
        cells[i] = np.round(digit_cell(img, mask, stroke_width(mask)) * 255)
    return cells, labels
