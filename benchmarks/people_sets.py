"""Held-out sets of people's writing, for benchmarks only (never trained on; a reader is chosen
on the val halves alone). Each set gives ``(PNG bytes, label)`` pairs:

``close``   close-written numbers of 1-12 MNIST digits: ink gaps from slight overlap to a quarter
            of the digit height, half drawn as the app's canvas exports strokes (round pen 8-20
            px on a transparent RGBA PNG), half as ink on paper (``data.realistic``).
``pen``     numbers of 1-10 digits drawn on an 840x140 RGBA canvas from pen trajectories built
            here from line and elliptical-arc primitives (shapes of their own: a 1 bare, flagged
            or with a base, open and closed 4s, 7s with and without a bar, looped 2s...), with
            slant, size, tremor, baseline wobble and spacing from cramped to wide. The training
            strokes (``digitseq.data.strokes``) are splines through other control points.
``fonts``   numbers of 1-12 digits in handwriting fonts from Debian's ``fonts-*`` packages,
            which no training run ever sees (training fonts are npm's @fontsource families):
            ``apt-get install -y fonts-dkg-handwriting fonts-breip fonts-bwht fonts-dancingscript
            fonts-femkeklaver fonts-humor-sans fonts-comic-neue``.
``small``   numbers of 1-12 MNIST digits written small (digits 8-14 px tall) on paper, half of
            them scanned coarsely and scaled back up 2-4x.

MNIST sets read MNIST *test* digits for ``split="test"`` and val digits (50,000-59,999 of the
train file) for ``split="val"``; the other sets draw other random numbers per split.
"""

from __future__ import annotations

import io
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from digitseq.data import compose, drawn, mnist, realistic

SETS = ("close", "pen", "fonts", "small")
CANVAS_W, CANVAS_H = 840, 140
HELD_OUT_FONTS = (
    "/usr/share/fonts/truetype/fifthhorseman/dkg.ttf",
    "/usr/share/fonts/truetype/breip/Breip.ttf",
    "/usr/share/fonts/opentype/bwht/BecauseWeBuild-Regular.otf",
    "/usr/share/fonts/opentype/bwht/BecauseWeConnect-Regular.otf",
    "/usr/share/fonts/opentype/bwht/BecauseWeCreate-Regular.otf",
    "/usr/share/fonts/opentype/bwht/BecauseWeLearn-Regular.otf",
    "/usr/share/fonts/opentype/bwht/BecauseWeMentor-Regular.otf",
    "/usr/share/fonts/opentype/bwht/BecauseWeOrganize-Regular.otf",
    "/usr/share/fonts/opentype/dancingscript/DancingScript-Regular.otf",
    "/usr/share/fonts/truetype/femkeklaver/femkeklaver.ttf",
    "/usr/share/fonts/truetype/humor-sans/Humor-Sans.ttf",
    "/usr/share/fonts/opentype/comic-neue/ComicNeue-Regular.otf",
)


def digits_of(split: str) -> tuple[np.ndarray, np.ndarray]:
    """(images, labels) of MNIST test digits (``test``) or val digits (``val``)."""
    data = mnist.load()
    if split == "test":
        return data.test_images, data.test_labels
    pool, labels, _ = mnist.split_pool(data, "val")
    return pool, labels


def png(img: np.ndarray | Image.Image) -> bytes:
    buf = io.BytesIO()
    (img if isinstance(img, Image.Image) else Image.fromarray(img)).save(buf, "PNG")
    return buf.getvalue()


def canvas_png(alpha: np.ndarray) -> bytes:
    """An alpha mask -> the app canvas's export: opaque black strokes on transparent RGBA."""
    rgba = np.zeros((*alpha.shape, 4), np.uint8)
    rgba[..., 3] = alpha
    return png(Image.fromarray(rgba, "RGBA"))


def on_paper(alpha: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Ink alpha in [0, 1] -> a grey scan: paper shade, dark ink, a little noise."""
    paper, ink = rng.uniform(0.8, 0.98), rng.uniform(0.0, 0.3)
    img = (
        paper * (1 - alpha) + ink * alpha + rng.uniform(0, 0.03) * rng.standard_normal(alpha.shape)
    )
    return (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)


def place(masks: list[np.ndarray], gaps: np.ndarray, dy: np.ndarray, pad: int) -> np.ndarray:
    """Boolean/float digit masks side by side, each ink box ``gaps[i]`` px after the previous
    one's (negative: overlap), shifted ``dy`` px -> one float alpha line with ``pad`` around."""
    tallest = max(m.shape[0] for m in masks)
    xs = [pad]
    for m, g in zip(masks[:-1], gaps, strict=True):
        xs.append(xs[-1] + m.shape[1] + int(round(g)))
    span = int(np.abs(dy).max()) + 1
    h = tallest + 2 * span + 2 * pad
    w = max(xs[i] + m.shape[1] for i, m in enumerate(masks)) + pad
    out = np.zeros((h, w), np.float32)
    for m, x, y in zip(masks, xs, dy, strict=True):
        top = pad + span + int(y) + (tallest - m.shape[0]) // 2
        region = out[top : top + m.shape[0], x : x + m.shape[1]]
        np.maximum(region, m[: region.shape[0], : region.shape[1]].astype(np.float32), out=region)
    return out


def fit_canvas(alpha: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A drawn line (uint8 alpha) put on the 840x140 canvas, shrunk first if it is too large."""
    h, w = alpha.shape
    s = min(1.0, (CANVAS_W - 20) / w, (CANVAS_H - 4) / h)
    if s < 1:
        alpha = cv2.resize(alpha, (max(1, int(w * s)), max(1, int(h * s))), cv2.INTER_AREA)
        alpha = np.where(alpha > 127, 255, 0).astype(np.uint8)
        h, w = alpha.shape
    out = np.zeros((CANVAS_H, CANVAS_W), np.uint8)
    x = int(rng.integers(10, max(11, CANVAS_W - 10 - w)))
    y = (CANVAS_H - h) // 2
    out[y : y + h, x : x + w] = alpha
    return out


# --- close-written MNIST numbers -----------------------------------------------------------------


def close_canvas(digits: np.ndarray, rng: np.random.Generator) -> bytes:
    pen = int(rng.integers(8, 21))
    height = int(rng.integers(60, 101))
    masks = [drawn.draw_digit(d, height, pen) for d in digits]
    masks = [m[np.ix_(m.any(1), m.any(0))] for m in masks]
    gaps = rng.uniform(-0.05, 0.25, size=len(digits) - 1) * height
    dy = rng.uniform(-0.06, 0.06, size=len(digits)) * height
    alpha = place(masks, gaps, dy, 2)
    return canvas_png(fit_canvas(np.where(alpha > 0.5, 255, 0).astype(np.uint8), rng))


CLOSE_PAPER = realistic.RealisticParams(gap=(-0.06, 0.25), p_jpeg=0.0)


def close_set(split: str, n: int, seed: int) -> list[tuple[bytes, str]]:
    images, labels = digits_of(split)
    rng = np.random.default_rng([seed, 101, split == "test"])
    digits, lens, idx = compose.sample_numbers(labels, n, rng, (1, 12))
    out = []
    for i, text in enumerate(compose.labels_to_strings(digits, lens)):
        cells = images[idx[i, : lens[i]]]
        if i % 2:
            out.append((png(realistic.render_number(cells, rng, CLOSE_PAPER)), text))
        else:
            out.append((close_canvas(cells, rng), text))
    return out


# --- pen drawings from primitives -----------------------------------------------------------------

# digit -> shapes; a shape is a list of primitives: ("L", x0, y0, x1, y1) a line, ("A", cx, cy,
# rx, ry, from_deg, to_deg) an elliptical arc (y downward: 270 deg is the top, 90 the bottom).
PRIMITIVES = {
    0: [[("A", 0.3, 0.5, 0.28, 0.5, 250, 620)], [("A", 0.3, 0.5, 0.24, 0.5, -90, 275)]],
    1: [
        [("L", 0.3, 0.0, 0.3, 1.0)],
        [("L", 0.08, 0.25, 0.32, 0.0), ("L", 0.32, 0.0, 0.32, 1.0)],
        [("L", 0.1, 0.22, 0.32, 0.0), ("L", 0.32, 0.0, 0.32, 1.0), ("L", 0.08, 1.0, 0.56, 1.0)],
    ],
    2: [
        [("A", 0.3, 0.28, 0.27, 0.27, 195, 375), ("L", 0.57, 0.33, 0.02, 1.0),
         ("L", 0.02, 1.0, 0.6, 1.0)],
        [("A", 0.3, 0.28, 0.27, 0.27, 195, 390), ("A", 0.6, 1.0, 0.5, 0.65, 295, 180),
         ("A", 0.16, 0.92, 0.08, 0.08, 0, -300), ("L", 0.16, 1.0, 0.6, 0.98)],
    ],
    3: [
        [("A", 0.28, 0.26, 0.25, 0.25, 200, 450), ("A", 0.28, 0.74, 0.28, 0.26, 270, 520)],
        [("L", 0.04, 0.0, 0.56, 0.0), ("L", 0.56, 0.0, 0.22, 0.42),
         ("A", 0.28, 0.7, 0.29, 0.29, 250, 520)],
    ],
    4: [
        [("L", 0.42, 0.0, 0.02, 0.66), ("L", 0.02, 0.66, 0.6, 0.66), ("L", 0.45, 0.28, 0.45, 1.0)],
        [("L", 0.45, 1.0, 0.45, 0.0), ("L", 0.45, 0.0, 0.02, 0.66), ("L", 0.02, 0.66, 0.6, 0.66)],
        [("L", 0.08, 0.0, 0.04, 0.6), ("L", 0.04, 0.6, 0.6, 0.6), ("L", 0.46, 0.05, 0.46, 1.0)],
    ],
    5: [
        [("L", 0.56, 0.0, 0.1, 0.0), ("L", 0.1, 0.0, 0.07, 0.45),
         ("A", 0.3, 0.7, 0.27, 0.29, 225, 520)],
        [("L", 0.1, 0.0, 0.07, 0.45), ("A", 0.3, 0.7, 0.27, 0.29, 225, 520),
         ("L", 0.1, 0.0, 0.58, 0.02)],
    ],
    6: [
        [("A", 0.58, 0.7, 0.52, 0.7, 265, 180), ("A", 0.3, 0.73, 0.24, 0.27, 180, 540)],
        [("L", 0.48, 0.0, 0.12, 0.55), ("A", 0.3, 0.74, 0.24, 0.26, 200, 560)],
    ],
    7: [
        [("L", 0.02, 0.0, 0.58, 0.0), ("L", 0.58, 0.0, 0.2, 1.0)],
        [("L", 0.02, 0.0, 0.58, 0.0), ("L", 0.58, 0.0, 0.2, 1.0), ("L", 0.14, 0.52, 0.52, 0.52)],
        [("L", 0.02, 0.14, 0.02, 0.0), ("L", 0.02, 0.0, 0.58, 0.0), ("L", 0.58, 0.0, 0.3, 1.0)],
    ],
    8: [
        [("A", 0.3, 0.25, 0.22, 0.25, 90, 450), ("A", 0.3, 0.74, 0.27, 0.26, 270, 630)],
        [("A", 0.3, 0.26, 0.24, 0.26, 45, 405), ("A", 0.3, 0.74, 0.27, 0.26, 225, 585)],
    ],
    9: [
        [("A", 0.3, 0.28, 0.26, 0.27, 0, 360), ("L", 0.56, 0.28, 0.52, 1.0)],
        [("A", 0.3, 0.28, 0.26, 0.27, 10, 370), ("A", 0.0, 0.28, 0.56, 0.72, 0, 100)],
    ],
}  # fmt: skip


def primitive_path(prim: tuple, steps: int = 40) -> np.ndarray:
    if prim[0] == "L":
        t = np.linspace(0, 1, steps)[:, None]
        return np.array(prim[1:3]) * (1 - t) + np.array(prim[3:5]) * t
    _, cx, cy, rx, ry, a0, a1 = prim
    a = np.deg2rad(np.linspace(a0, a1, steps))
    return np.stack([cx + rx * np.cos(a), cy + ry * np.sin(a)], 1)


def pen_digit(digit: int, height: int, pen: int, rng: np.random.Generator) -> np.ndarray:
    """One digit drawn ``height`` px tall with a round ``pen``: a cropped uint8 mask."""
    shapes = PRIMITIVES[digit]
    shape = shapes[int(rng.integers(len(shapes)))]
    slant = rng.uniform(-0.3, 0.25)
    wide = rng.uniform(0.75, 1.3)
    body = height - pen
    img = np.zeros((height + 2 * pen + 8, int(body * 1.2) + 2 * pen + 8), np.uint8)
    for prim in shape:
        p = primitive_path(prim)
        p = p + rng.normal(0, 0.02, size=2)  # each stroke placed a little off
        p = p + rng.normal(0, 0.006, size=p.shape)  # tremor
        x = (p[:, 0] * wide + slant * (1 - p[:, 1]) + 0.3) * body * 0.75 + pen + 4
        y = p[:, 1] * body + pen / 2 + 4
        xy = np.round(np.stack([x, y], 1) * 4).astype(np.int32)
        cv2.polylines(img, [xy], False, 255, pen, cv2.LINE_AA, shift=2)
    mask = img > 127
    return mask[np.ix_(mask.any(1), mask.any(0))]


def pen_set(split: str, n: int, seed: int) -> list[tuple[bytes, str]]:
    rng = np.random.default_rng([seed, 102, split == "test"])
    out = []
    for _ in range(n):
        length = int(rng.integers(1, 11))
        digits = rng.integers(0, 10, size=length)
        pen, height = int(rng.integers(8, 21)), int(rng.integers(55, 101))
        spacing = rng.uniform(-0.05, 0.9)  # cramped .. wide, per writer
        masks = [pen_digit(int(d), height + int(rng.integers(-6, 7)), pen, rng) for d in digits]
        gaps = (spacing + rng.uniform(-0.05, 0.05, size=length - 1)) * height
        wobble = 0.05 * height * np.sin(rng.uniform(0, 6.3) + np.arange(length) * 0.7)
        alpha = place(masks, gaps, wobble + rng.uniform(-3, 3, size=length), 2)
        alpha = np.where(alpha > 0.5, 255, 0).astype(np.uint8)
        out.append((canvas_png(fit_canvas(alpha, rng)), "".join(map(str, digits))))
    return out


# --- held-out handwriting fonts -------------------------------------------------------------------


def font_set(split: str, n: int, seed: int) -> list[tuple[bytes, str]]:
    paths = [p for p in HELD_OUT_FONTS if Path(p).is_file()]
    if not paths:
        raise SystemExit("no held-out fonts: apt-get install -y " + " ".join(FONT_PACKAGES))
    rng = np.random.default_rng([seed, 103, split == "test"])
    out = []
    for _ in range(n):
        length = int(rng.integers(1, 13))
        text = "".join(map(str, rng.integers(0, 10, size=length)))
        size = int(rng.integers(28, 81))
        font = ImageFont.truetype(paths[int(rng.integers(len(paths)))], size)
        masks = []
        for ch in text:
            left, top, right, bottom = font.getbbox(ch)
            im = Image.new("L", (right - left + 4, bottom - top + 4), 0)
            ImageDraw.Draw(im).text((2 - left, 2 - top), ch, font=font, fill=255)
            a = np.asarray(im, np.float32) / 255
            masks.append(a[np.ix_(a.max(1) > 0.1, a.max(0) > 0.1)])
        tracking = rng.uniform(-0.02, 0.35) * size  # tight .. loose letter spacing
        gaps = tracking + rng.uniform(-0.03, 0.03, size=length - 1) * size
        alpha = place(masks, gaps, rng.uniform(-0.03, 0.03, size=length) * size, int(size * 0.4))
        im = Image.fromarray(alpha, "F").rotate(
            rng.uniform(-3, 3), Image.Resampling.BICUBIC, expand=True
        )
        out.append((png(on_paper(np.clip(np.asarray(im), 0, 1), rng)), text))
    return out


FONT_PACKAGES = ("fonts-dkg-handwriting", "fonts-breip", "fonts-bwht", "fonts-dancingscript",
                 "fonts-femkeklaver", "fonts-humor-sans", "fonts-comic-neue")  # fmt: skip


# --- small writing --------------------------------------------------------------------------------


def small_set(split: str, n: int, seed: int) -> list[tuple[bytes, str]]:
    images, labels = digits_of(split)
    rng = np.random.default_rng([seed, 104, split == "test"])
    digits, lens, idx = compose.sample_numbers(labels, n, rng, (1, 12))
    layouts = rng.choice([compose.LAYOUT_IDS["natural"], compose.LAYOUT_IDS["spaced"]], size=n)
    lines, widths = compose.compose_lines(images, idx, lens, layouts, rng)
    out = []
    for i, text in enumerate(compose.labels_to_strings(digits, lens)):
        line = lines[i, :, : widths[i]].astype(np.float32) / 255
        s = rng.uniform(8, 14) / 20  # MNIST digits are ~20 of the line's 28 px
        small = cv2.resize(line, (max(1, round(line.shape[1] * s)), max(1, round(28 * s))),
                           interpolation=cv2.INTER_AREA)  # fmt: skip
        small = np.pad(small, 6)
        if i % 2:  # scanned coarsely, scaled back up
            up = rng.uniform(2, 4)
            small = cv2.resize(small, None, fx=up, fy=up, interpolation=cv2.INTER_LINEAR)
        out.append((png(on_paper(np.clip(small, 0, 1), rng)), text))
    return out


BUILDERS = {"close": close_set, "pen": pen_set, "fonts": font_set, "small": small_set}


def build(name: str, split: str, n: int, seed: int = 0) -> list[tuple[bytes, str]]:
    """The held-out set ``name`` (``SETS``): ``n`` (PNG bytes, digit string) pairs."""
    return BUILDERS[name](split, n, seed)


def save(pairs: list[tuple[bytes, str]], folder: Path) -> None:
    """Write a set as NNNNNN.png files beside labels.csv (file,label), the labels file last (a
    folder without it is unfinished)."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = ["file,label"]
    for i, (data, label) in enumerate(pairs):
        (folder / f"{i:06d}.png").write_bytes(data)
        rows.append(f"{i:06d}.png,{label}")
    tmp = folder / "labels.csv.tmp"
    tmp.write_text("\n".join(rows) + "\n")
    tmp.replace(folder / "labels.csv")


def load(folder: Path) -> list[tuple[bytes, str]]:
    """A set written by ``save``."""
    rows = (folder / "labels.csv").read_text().splitlines()[1:]
    return [((folder / name).read_bytes(), label) for name, label in (r.split(",") for r in rows)]
