"""A realistic test set: numbers (5 digits by default, or of any length) from MNIST *test*
digits, rendered the way people hand
them in: larger, dark ink on light textured paper, uneven gaps (slight overlaps), margins,
slight rotation, thick or thin pens, blur, noise, colour casts and JPEG compression.

``write_realistic_set(out, n, seed, lengths=(1, 12))`` writes ``NNNNNN.jpg|png`` files and
``labels.csv`` (``file,label,mnist_test_indices``: the label is the digit string, leading zeros
kept) so the same numbers can also be composed cleanly. The default ``lengths=(5, 5)`` draws
exactly the 5-digit numbers (and bytes) it always did.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

from digitseq.core.constants import N_DIGITS
from digitseq.core.errors import DigitseqError
from digitseq.data import mnist, numbers


@dataclass(frozen=True)
class RealisticParams:
    """Ranges, each drawn uniformly per image (or per digit where it says so)."""

    scale: tuple[float, float] = (3.0, 6.0)  # output pixels per MNIST pixel
    digit_size_jitter: float = 0.12  # per digit, relative
    digit_rotation_deg: float = 6.0  # per digit
    line_rotation_deg: float = 4.0  # the whole number
    gap: tuple[float, float] = (-0.06, 0.6)  # between ink boxes, in digit heights (<0: overlap)
    vertical_jitter: float = 0.08  # per digit, in digit heights
    margin: tuple[float, float] = (0.3, 1.5)  # in digit heights
    paper: tuple[float, float] = (0.72, 0.98)
    ink: tuple[float, float] = (0.0, 0.35)
    texture: tuple[float, float] = (0.0, 0.06)  # low-frequency paper shading
    noise: tuple[float, float] = (0.0, 0.04)  # per-pixel gaussian sigma
    blur: tuple[float, float] = (0.0, 0.35)  # gaussian radius, in MNIST pixels
    p_thick: float = 0.25  # marker
    p_thin: float = 0.20  # fine pen
    p_color: float = 0.4  # blue/black ink on tinted paper, saved as RGB
    p_jpeg: float = 0.7
    jpeg_quality: tuple[int, int] = (40, 95)


def render_digit(digit: np.ndarray, s: float, angle: float, stroke: float) -> np.ndarray:
    """One 28x28 uint8 MNIST digit -> float alpha patch at scale s, rotated, pen applied."""
    rows, cols = np.flatnonzero(digit.any(axis=1)), np.flatnonzero(digit.any(axis=0))
    crop = digit[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1].astype(np.float32) / 255.0
    im = Image.fromarray(np.pad(crop, 2), "F")
    size = (max(1, round(im.width * s)), max(1, round(im.height * s)))
    im = im.resize(size, Image.Resampling.BICUBIC).rotate(
        angle, Image.Resampling.BICUBIC, expand=True
    )
    k = 2 * max(1, round(s * 0.35)) + 1
    if stroke > 0:
        im = im.filter(ImageFilter.MaxFilter(k))
    elif stroke < 0 and s >= 3.5:
        thin = im.filter(ImageFilter.MinFilter(3))
        im = thin if np.asarray(thin).max() > 0.6 else im
    a = np.clip(np.asarray(im), 0.0, 1.0)
    r, c = np.flatnonzero(a.max(axis=1) > 0.05), np.flatnonzero(a.max(axis=0) > 0.05)
    return a[r[0] : r[-1] + 1, c[0] : c[-1] + 1]


def render_number(digits: np.ndarray, rng: np.random.Generator, p: RealisticParams) -> Image.Image:
    """(L, 28, 28) uint8 MNIST digits -> a PIL image of the number on paper."""
    s = rng.uniform(*p.scale)
    height = 20 * s  # MNIST digits are about 20 px tall
    patches = []
    for d in digits:
        u = rng.random()
        stroke = 1 if u < p.p_thick else (-1 if u < p.p_thick + p.p_thin else 0)
        size = s * (1 + rng.uniform(-p.digit_size_jitter, p.digit_size_jitter))
        angle = rng.uniform(-p.digit_rotation_deg, p.digit_rotation_deg)
        patches.append(render_digit(d, size, angle, stroke))
    gaps = rng.uniform(*p.gap, size=len(digits) - 1) * height
    dy = rng.uniform(-p.vertical_jitter, p.vertical_jitter, size=len(digits)) * height
    margin = rng.uniform(*p.margin, size=4) * height

    xs = [margin[0]]
    for patch, gap in zip(patches[:-1], gaps, strict=True):
        xs.append(xs[-1] + patch.shape[1] + gap)
    tallest = max(patch.shape[0] for patch in patches)
    w = int(xs[-1] + patches[-1].shape[1] + margin[1]) + 1
    h = int(tallest + 2 * abs(dy).max() + margin[2] + margin[3]) + 1
    alpha = np.zeros((h, w), np.float32)
    for patch, x, y in zip(patches, xs, dy, strict=True):
        top = int(margin[2] + abs(dy).max() + y + (tallest - patch.shape[0]) / 2)
        left = int(x)
        region = alpha[top : top + patch.shape[0], left : left + patch.shape[1]]
        np.maximum(region, patch[: region.shape[0], : region.shape[1]], out=region)

    tilt = rng.uniform(-p.line_rotation_deg, p.line_rotation_deg)
    alpha = np.asarray(
        Image.fromarray(alpha, "F").rotate(tilt, Image.Resampling.BICUBIC, expand=True)
    )
    alpha = np.clip(alpha, 0.0, 1.0)
    blur = rng.uniform(*p.blur) * s
    if blur > 0.3:
        a8 = Image.fromarray((alpha * 255 + 0.5).astype(np.uint8))  # GaussianBlur wants 8 bits
        alpha = np.asarray(a8.filter(ImageFilter.GaussianBlur(blur)), np.float32) / 255.0
    h, w = alpha.shape

    # Paper: a base shade, low-frequency shading, then per-pixel noise.
    coarse = rng.standard_normal((h // 24 + 2, w // 24 + 2)).astype(np.float32)
    shade = np.asarray(Image.fromarray(coarse, "F").resize((w, h), Image.Resampling.BICUBIC))
    paper = rng.uniform(*p.paper) + rng.uniform(*p.texture) * shade
    ink = rng.uniform(*p.ink)
    color = rng.random() < p.p_color
    tint_paper = np.array([1.0, 0.98, 0.93]) if color else np.ones(3)
    tint_ink = np.array(rng.choice([[0.25, 0.3, 1.0], [1.0, 1.0, 1.0]])) if color else np.ones(3)
    channels = []
    for c in range(3 if color else 1):
        pc = np.clip(paper * tint_paper[c], 0, 1)
        ic = np.clip(ink * tint_ink[c] + (0.3 * (1 - tint_ink[c]) if color else 0), 0, 1)
        channels.append(pc * (1 - alpha) + ic * alpha)
    img = np.stack(channels, axis=-1)
    img = img + rng.uniform(*p.noise) * rng.standard_normal(img.shape)
    img = (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)
    return Image.fromarray(img[..., 0] if img.shape[-1] == 1 else img)


def write_realistic_set(
    out_dir: Path,
    n: int = 2000,
    seed: int = 0,
    data: mnist.Mnist | None = None,
    params: RealisticParams | None = None,
    overwrite: bool = False,
    lengths: tuple[int, int] = (N_DIGITS, N_DIGITS),
) -> Path:
    """Write n realistic images plus labels.csv into ``out_dir`` (atomically, as one folder);
    each number's length uniform in ``lengths`` (lo, hi)."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not overwrite:
        raise DigitseqError(f"{out_dir} already exists")
    p = params or RealisticParams()
    data = data or mnist.load()
    rng = np.random.default_rng([seed, 4])
    lo, hi = numbers.length_range(lengths)
    if (lo, hi) == (N_DIGITS, N_DIGITS):  # the 5-digit set, draws as before
        digits, idx = numbers.sample_fixed(data.test_labels, n, rng)
        lens = np.full(n, N_DIGITS)
    else:
        digits, lens, idx = numbers.sample_numbers(data.test_labels, n, rng, (lo, hi))
    labels = numbers.labels_to_strings(digits, lens)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".tmp", dir=out_dir.parent))
    try:
        rows = ["file,label,mnist_test_indices"]
        for i in range(n):
            im = render_number(data.test_images[idx[i, : lens[i]]], rng, p)
            if rng.random() < p.p_jpeg:
                name = f"{i:06d}.jpg"
                quality = int(rng.integers(p.jpeg_quality[0], p.jpeg_quality[1] + 1))
                im.save(tmp / name, quality=quality)
            else:
                name = f"{i:06d}.png"
                im.save(tmp / name)
            rows.append(f"{name},{labels[i]},{' '.join(map(str, idx[i, : lens[i]]))}")
        (tmp / "labels.csv").write_text("\n".join(rows) + "\n")
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


def read_labels(folder: Path) -> list[tuple[str, str, list[int]]]:
    """(file, label, MNIST test indices) rows of a realistic set's labels.csv."""
    rows = []
    for line in (Path(folder) / "labels.csv").read_text().splitlines()[1:]:
        name, label, sources = line.split(",")
        rows.append((name, label, [int(v) for v in sources.split()]))
    return rows
