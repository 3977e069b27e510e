"""Separators drawn as pen strokes at the line's scale: the marks people write between the
digits of an amount, a date, a time or a phone number, for the lines a separator-aware reader
trains on (MNIST has none).

A line is 28 px tall and its MNIST digits are ~20 px tall, from row ~4 (``TOP``) to the
baseline at row ~24 (``BASELINE``), so each mark is placed in the same rows: a dot on the
baseline, a comma's tail below it, a dash and a plus at mid-height (``MID``), a slash and
parentheses as tall as a digit or taller, a colon's dots at about a third of the height and near
the baseline. Each draw varies the size, the position against the baseline, the slant, the pen
(MNIST's ~2-3 px anti-aliased strokes, sometimes a thicker one) and the shape (a dot may be a
short stroke). The strokes are inked with one round pen at ``SS`` times the resolution and
averaged down, which gives MNIST's soft edges.

* ``TEXT_ALPHABET``: a line reader's classes after the CTC blank (class i + 1 is
  ``TEXT_ALPHABET[i]``), ``encode_texts`` turns strings into those classes.
* ``draw_separator(ch, rng) -> (28, w) uint8``: one drawn mark, white on black, its columns
  cropped to its ink (a space: ``w`` blank columns, 6-16 px); ``ink_box`` finds its ink.
"""

from __future__ import annotations

import cv2
import numpy as np

from digitseq.core.constants import IMG_H, TEXT_ALPHABET

SEPARATORS = TEXT_ALPHABET[10:]  # the marks this module draws (a space is blank columns)
TOP, MID, BASELINE = 4.0, 14.0, 24.0  # rows of an MNIST digit's top, middle and foot
SPACE_WIDTH = (6, 16)  # blank columns of a space between groups (inclusive)
SS = 4  # supersampling of the drawing: strokes are inked at 4x and averaged down
PEN = (1.8, 2.8)  # pen width in pixels at line scale (MNIST strokes are ~2-3 px wide)
THICK_PEN = (2.8, 3.8)  # a marker or a pressed pen
P_THICK = 0.2  # probability a mark is drawn with the thick pen
MIN_COLON_GAP = 3.0  # rows between the edges of a colon's two dots, at least
PAD_LABEL = 255  # classes beyond a text's length (as numbers.PAD_LABEL)

Stroke = tuple[np.ndarray, float]  # a path (k, 2) of (x, y) pixels at line scale, its pen width


# --- the alphabet --------------------------------------------------------------------------------


def encode_texts(texts) -> tuple[np.ndarray, np.ndarray]:
    """Strings over TEXT_ALPHABET -> (classes (n, Lmax) uint8 = index + 1, PAD_LABEL beyond each
    length; lengths (n,) int64). Raises ValueError on a character outside the alphabet."""
    lut = np.zeros(256, np.uint8)
    for i, ch in enumerate(TEXT_ALPHABET):
        lut[ord(ch)] = i + 1
    lengths = np.array([len(t) for t in texts], np.int64)
    out = np.full((len(texts), int(lengths.max(initial=0))), PAD_LABEL, np.uint8)
    for i, text in enumerate(texts):
        codes = np.frombuffer(text.encode("latin-1", "replace"), np.uint8)
        classes = lut[codes]
        if (classes == 0).any() or len(codes) != len(text):
            bad = sorted({c for c in text if c not in TEXT_ALPHABET})
            raise ValueError(f"{text!r} has characters outside {TEXT_ALPHABET!r}: {bad}")
        out[i, : len(text)] = classes
    return out, lengths


# --- drawing -------------------------------------------------------------------------------------


def ink_box(patch: np.ndarray) -> tuple[int, int, int, int] | None:
    """(first row, last row, first column, last column) of a patch's ink (> 0); None if blank."""
    rows, cols = np.flatnonzero(patch.any(axis=1)), np.flatnonzero(patch.any(axis=0))
    if rows.size == 0:
        return None
    return int(rows[0]), int(rows[-1]), int(cols[0]), int(cols[-1])


def render(strokes: list[Stroke]) -> np.ndarray:
    """Ink the strokes with round pens -> a (28, w) uint8 patch cropped to its ink columns.

    Drawn at SS x the resolution (anti-aliased), averaged down to line scale, then brightened
    so a stroke's core saturates as MNIST's do."""
    pts = np.vstack([p for p, _ in strokes])
    reach = max(pen for _, pen in strokes) / 2 + 2
    shift = reach - pts[:, 0].min()
    width = int(np.ceil(pts[:, 0].max() + shift + reach))
    big = np.zeros((IMG_H * SS, width * SS), np.uint8)
    for path, pen in strokes:
        # cv2 puts pixel (i, j) at integer coordinates; +0.5 maps pixel corners to corners.
        xy = (path + [shift + 0.5, 0.5]) * SS - 0.5
        fixed = np.round(xy * 16).astype(np.int32)  # 4 fractional bits
        cv2.polylines(big, [fixed], False, 255, max(1, round(pen * SS)), cv2.LINE_AA, shift=4)
    small = cv2.resize(big, (width, IMG_H), interpolation=cv2.INTER_AREA).astype(np.float32)
    patch = np.clip(np.round(small * 1.3), 0, 255).astype(np.uint8)
    box = ink_box(patch)
    return patch[:, box[2] : box[3] + 1] if box else patch[:, :1]


def pen_width(rng: np.random.Generator) -> float:
    """A pen: MNIST-like (PEN) most of the time, a thicker one with probability P_THICK."""
    lo, hi = THICK_PEN if rng.random() < P_THICK else PEN
    return float(rng.uniform(lo, hi))


def wobble(path: np.ndarray, rng: np.random.Generator, sigma: float = 0.25) -> np.ndarray:
    """A straight or curved path resampled to ~12 points with a slow hand tremor."""
    t = np.linspace(0, 1, 12)[:, None]
    seg = np.linspace(0, 1, len(path))
    out = np.stack([np.interp(t[:, 0], seg, path[:, k]) for k in (0, 1)], axis=1)
    bend = rng.normal(0, sigma, size=2)  # a bow perpendicular-ish to the stroke
    return out + np.sin(np.pi * t) * bend


def segment(cx: float, cy: float, length: float, angle: float) -> np.ndarray:
    """A 2-point path of ``length`` px centred at (cx, cy), ``angle`` radians from horizontal
    (y downward, so a positive angle goes down to the right)."""
    d = 0.5 * length * np.array([np.cos(angle), np.sin(angle)])
    return np.array([[cx - d[0], cy - d[1]], [cx + d[0], cy + d[1]]])


def dot_strokes(rng: np.random.Generator, cx: float, bottom: float) -> list[Stroke]:
    """A dot whose ink ends near row ``bottom``: a pressed blob, or (a third of the time) a
    short stroke, mostly a steep tick."""
    if rng.random() < 1 / 3:
        pen = min(pen_width(rng), 3.2)  # a tick stays a dot, not a stroke
        length, angle = rng.uniform(1.5, 2.8), np.deg2rad(rng.uniform(40, 140))
        half = 0.5 * length * abs(np.sin(angle)) + pen / 2
        return [(segment(cx, bottom - half, length, angle), pen)]
    pen = float(rng.uniform(2.4, 3.8))  # a dot is pressed: a little wider than the line
    length, angle = rng.uniform(0.3, 1.2), rng.uniform(0, np.pi)
    return [(segment(cx, bottom - pen / 2 - 0.3, length, angle), pen)]


def draw_dot(rng: np.random.Generator) -> list[Stroke]:
    """'.': a dot on the baseline, its foot up to 1.5 px above or 1 px below it."""
    return dot_strokes(rng, 5.0, BASELINE + rng.uniform(-1.5, 1.0))


def draw_comma(rng: np.random.Generator) -> list[Stroke]:
    """',': a head at the baseline and a tail slanting down to the left, 2-3.5 px below it."""
    pen = pen_width(rng)
    head_y = BASELINE + rng.uniform(-3.5, -1.0)
    foot_y = min(BASELINE + rng.uniform(2.0, 3.5) - pen / 2, IMG_H - 1 - pen / 2)
    x0, drift = 6.0, rng.uniform(1.0, 3.0)
    tail = np.array([[x0, head_y], [x0 + 0.3, (head_y + foot_y) / 2], [x0 - drift, foot_y]])
    strokes = [(wobble(tail, rng, 0.15), pen)]
    if rng.random() < 0.6:  # a pressed head; else the comma is a single tick
        strokes.append(
            (segment(x0, head_y, rng.uniform(0.3, 1.0), 0.5), pen + rng.uniform(0.4, 1.2))
        )
    return strokes


def draw_dash(rng: np.random.Generator) -> list[Stroke]:
    """'-': a short, nearly horizontal stroke at mid-height, 6-12 px long."""
    pen = pen_width(rng)
    length = rng.uniform(6.0, 12.0) - pen  # the round pen adds half its width at each end
    path = segment(8.0, MID + rng.uniform(-2.0, 2.5), length, np.deg2rad(rng.uniform(-8, 8)))
    return [(wobble(path, rng, 0.2), pen)]


def draw_slash(rng: np.random.Generator) -> list[Stroke]:
    """'/': a stroke from bottom left to top right, 19-25 px tall, 18-40 degrees off vertical."""
    pen = pen_width(rng)
    height = rng.uniform(19.0, 25.0) - pen
    foot = min(BASELINE + rng.uniform(-1.0, 2.0), IMG_H - 1 - pen / 2)
    head = max(foot - height, pen / 2 + 0.5)
    lean = np.tan(np.deg2rad(rng.uniform(18.0, 40.0))) * (foot - head)
    path = np.array([[4.0, foot], [4.0 + lean, head]])
    return [(wobble(path, rng, 0.3), pen)]


def draw_colon(rng: np.random.Generator) -> list[Stroke]:
    """':': one dot at about a third of the digit height, one near the baseline, one above the
    other up to a small slant."""
    upper = TOP + 20.0 * rng.uniform(0.3, 0.5)  # the upper dot's foot
    lower = BASELINE + rng.uniform(-2.5, 0.5)
    lean = rng.uniform(-0.5, 2.0)  # the upper dot a little right: a slanted hand
    high, low = dot_strokes(rng, 5.0 + lean, upper), dot_strokes(rng, 5.0, lower)
    gap = min(p[:, 1].min() - pen / 2 for p, pen in low) - max(
        p[:, 1].max() + pen / 2 for p, pen in high
    )
    lift = max(0.0, MIN_COLON_GAP - gap)  # two dots, never one blot
    return [(p - [0.0, lift], pen) for p, pen in high] + low


def draw_paren(rng: np.random.Generator, opening: bool) -> list[Stroke]:
    """'(' or ')': an arc 20-26 px tall around the digits' middle, its middle bowed 2.5-5 px
    away from its ends (left for '(', right for ')'), slanted and a little lopsided."""
    pen = pen_width(rng)
    height = rng.uniform(20.0, 26.0) - pen
    centre = np.clip(
        MID + rng.uniform(-1.0, 1.5), height / 2 + pen / 2, IMG_H - 1 - height / 2 - pen / 2
    )
    t = np.linspace(-1.0, 1.0, 15)
    skew = rng.uniform(-0.3, 0.3)  # where the arc bows most
    bow = rng.uniform(2.5, 5.0) * (1 - np.clip(t - skew, -1, 1) ** 2) ** rng.uniform(0.7, 1.2)
    y = centre + t * height / 2
    x = 8.0 + (-bow if opening else bow) + rng.uniform(-0.05, 0.25) * (centre - y)
    return [(wobble(np.stack([x, y], axis=1), rng, 0.15), pen)]


def draw_plus(rng: np.random.Generator) -> list[Stroke]:
    """'+': two strokes 8-13 px long crossing near their middles at mid-height."""
    pen = pen_width(rng)
    cx, cy = 8.0, MID + rng.uniform(-2.0, 2.0)
    across = segment(cx, cy, rng.uniform(8.0, 13.0) - pen, np.deg2rad(rng.uniform(-10, 10)))
    down = segment(cx + rng.uniform(-1.5, 1.5), cy + rng.uniform(-1.0, 1.0),
                   rng.uniform(8.0, 13.0) - pen, np.deg2rad(90 + rng.uniform(-12, 12)))  # fmt: skip
    return [(wobble(across, rng, 0.2), pen), (wobble(down, rng, 0.2), pen)]


DRAWERS = {
    ".": draw_dot,
    ",": draw_comma,
    "-": draw_dash,
    "/": draw_slash,
    ":": draw_colon,
    "(": lambda rng: draw_paren(rng, opening=True),
    ")": lambda rng: draw_paren(rng, opening=False),
    "+": draw_plus,
}


def draw_separator(ch: str, rng: np.random.Generator) -> np.ndarray:
    """One handwritten separator -> a (28, w) uint8 patch, white on black, cropped to its ink
    columns (a space: ``w`` blank columns, w in SPACE_WIDTH)."""
    if ch == " ":
        return np.zeros((IMG_H, int(rng.integers(SPACE_WIDTH[0], SPACE_WIDTH[1] + 1))), np.uint8)
    if ch not in DRAWERS:
        raise ValueError(f"no drawn separator {ch!r}: one of {SEPARATORS!r}")
    return render(DRAWERS[ch](rng))
