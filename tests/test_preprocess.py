"""Preprocessing: seed-format images pass through untouched, every format and mode reads the
same, both polarities, larger renderings on paper, and a clear error for every bad input."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from conftest import SEED_SAMPLES
from PIL import Image, ImageDraw

from digitseq.core.errors import DigitseqError
from digitseq.data.mnist_style import stroke_width
from digitseq.reading import preprocess as pp

SAMPLE = SEED_SAMPLES / "5.png"


def seed_array(name: str = "5.png") -> np.ndarray:
    return np.asarray(Image.open(SEED_SAMPLES / name))


def encode(im: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    return buf.getvalue()


def cell_corr(x: np.ndarray, ref: np.ndarray) -> float:
    """Worst per-digit correlation between two 28x140 inputs."""
    return min(
        np.corrcoef(x[:, i * 28 : (i + 1) * 28].ravel(), ref[:, i * 28 : (i + 1) * 28].ravel())[
            0, 1
        ]
        for i in range(5)
    )


def on_paper(a: np.ndarray, scale: int, margin: int = 60, angle: float = 0.0) -> Image.Image:
    """A seed image rendered larger as dark ink on light gray paper with noise."""
    big = Image.fromarray(a).resize((140 * scale, 28 * scale), Image.Resampling.BICUBIC)
    alpha = np.asarray(big, np.float32) / 255
    h, w = alpha.shape
    canvas = np.zeros((h + 2 * margin, w + 2 * margin), np.float32)
    canvas[margin : margin + h, margin : margin + w] = alpha
    if angle:
        canvas = np.asarray(Image.fromarray(canvas, "F").rotate(angle, Image.Resampling.BICUBIC))
    rng = np.random.default_rng(0)
    img = 0.85 - 0.7 * canvas + rng.normal(0, 0.02, canvas.shape)
    return Image.fromarray((np.clip(img, 0, 1) * 255).astype(np.uint8))


def test_all_seed_samples_pass_through_unchanged():
    for path in sorted(SEED_SAMPLES.glob("*.png")):
        x = pp.preprocess(path)
        assert x.shape == (28, 140) and x.dtype == np.float32
        np.testing.assert_allclose(x, np.asarray(Image.open(path)) / 255.0, atol=1e-6)


def test_inverted_seed_image_gives_the_same_input():
    a = seed_array()
    x = pp.preprocess(Image.fromarray(255 - a))
    np.testing.assert_allclose(x, a / 255.0, atol=1e-6)


@pytest.mark.parametrize(
    "make",
    [
        lambda im: encode(im, "PNG"),
        lambda im: encode(im, "BMP"),
        lambda im: encode(im, "TIFF"),
        lambda im: encode(im, "GIF"),
        lambda im: encode(im, "WEBP", lossless=True),
        lambda im: encode(im.convert("RGB"), "PNG"),
        lambda im: encode(im.convert("LA"), "PNG"),
        lambda im: encode(im.convert("RGBA"), "PNG"),
        lambda im: encode(im.convert("P"), "PNG"),
        lambda im: encode(Image.fromarray(np.asarray(im).astype(np.uint16) * 257), "PNG"),
        lambda im: np.asarray(im),
        lambda im: np.asarray(im).astype(np.float32) / 255,
        lambda im: np.stack([np.asarray(im)] * 3, axis=-1),
        lambda im: im,
    ],
    ids="png bmp tiff gif webp rgb la rgba p i16 array float rgb-array pil".split(),
)
def test_lossless_formats_and_modes_give_the_same_input(make):
    a = seed_array()
    x = pp.preprocess(make(Image.fromarray(a)))
    np.testing.assert_allclose(x, a / 255.0, atol=1e-4)


@pytest.mark.parametrize("fmt", ["JPEG", "WEBP"])
def test_lossy_formats_stay_close(fmt):
    a = seed_array()
    x = pp.preprocess(encode(Image.fromarray(a).convert("RGB"), fmt, quality=90))
    assert np.abs(x - a / 255.0).mean() < 0.03


def test_one_bit_image_reads():
    a = seed_array()
    x = pp.preprocess(encode(Image.fromarray(a).convert("1", dither=Image.Dither.NONE), "PNG"))
    assert np.abs(x - (a > 127)).max() < 1e-6


def test_transparent_drawing_with_black_strokes_reads_as_ink():
    # A canvas export: black strokes, transparent background (RGB is black everywhere).
    a = np.asarray(Image.fromarray(seed_array()).resize((560, 112)))
    rgba = np.zeros((*a.shape, 4), np.uint8)
    rgba[..., 3] = a
    x = pp.preprocess(encode(Image.fromarray(rgba, "RGBA"), "PNG"))
    ref = pp.preprocess(Image.fromarray(255 - a))  # the same drawing on white paper
    assert cell_corr(x, ref) > 0.98


@pytest.mark.parametrize("scale", [3, 6])
def test_dark_ink_on_paper_larger_becomes_the_seed_format(scale):
    a = seed_array()
    x = pp.preprocess(encode(on_paper(a, scale), "JPEG", quality=85))
    assert cell_corr(x, a / 255.0) > 0.8


def test_small_rotation_is_undone():
    a = seed_array()
    x = pp.preprocess(on_paper(a, 4, margin=120, angle=7))
    assert cell_corr(x, a / 255.0) > 0.75


def test_thin_pen_strokes_are_thickened_to_mnist_width():
    # A big mouse drawing with a 2-px pen: the input strokes must not become faint hairlines.
    im = Image.new("L", (1400, 300), 255)
    draw = ImageDraw.Draw(im)
    for i in range(5):  # five "1"s and a box-like 0
        x0 = 100 + i * 260
        draw.line([(x0, 40), (x0 + 30, 260)], fill=0, width=2)
    draw.ellipse([1230, 40, 1330, 260], outline=0, width=2)
    x = pp.preprocess(im)
    ink = x > 0.5
    assert stroke_width(ink) >= 1.5
    assert x.max() > 0.9


def test_preprocess_steps_give_pictures_and_the_input():
    x, steps = pp.preprocess_steps(on_paper(seed_array(), 3))
    assert len(steps) >= 4
    for name, pic in steps:
        assert isinstance(name, str) and pic.dtype == np.uint8 and pic.ndim == 2
    np.testing.assert_allclose(steps[-1][1] / 255.0, x, atol=1 / 255 + 1e-6)


def png_header_only(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims width x height (1-bit gray) and almost no data."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))


def corrupt_png() -> bytes:
    data = bytearray(encode(Image.fromarray(seed_array()), "PNG"))
    data[60:200] = bytes(140)  # zero out the middle of the compressed pixels
    return bytes(data)


def truncated_jpeg() -> bytes:
    data = encode(on_paper(seed_array(), 3), "JPEG", quality=90)
    return data[: len(data) // 2]


def blank_page() -> bytes:
    rng = np.random.default_rng(1)
    page = np.clip(0.93 + rng.normal(0, 0.01, (600, 900)), 0, 1)
    return encode(Image.fromarray((page * 255).astype(np.uint8)), "JPEG", quality=90)


def noise_image() -> bytes:
    rng = np.random.default_rng(2)
    return encode(Image.fromarray((rng.random((200, 600)) > 0.5).astype(np.uint8) * 255), "PNG")


BAD = {
    "empty": (lambda: b"", "empty file"),
    "text named png": (lambda: b"hello, this is not an image\n", "not an image"),
    "corrupt png": (corrupt_png, "corrupt or truncated PNG"),
    "truncated jpeg": (truncated_jpeg, "corrupt or truncated JPEG"),
    "20000x20000": (lambda: png_header_only(20000, 20000), "image too large"),
    "10000x6000": (lambda: png_header_only(10000, 6000), "image too large: 10000x6000"),
    "blank page": (blank_page, "blank image"),
    "all transparent": (
        lambda: encode(Image.new("RGBA", (300, 100), (0, 0, 0, 0)), "PNG"),
        "blank image",
    ),
    "far too much ink": (noise_image, "far too much ink"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_inputs_give_a_clear_error(case, tmp_path):
    make, expected = BAD[case]
    path = tmp_path / "input.png"
    path.write_bytes(make())
    for source in (path, path.read_bytes()):  # (how fast: benchmarks/bench_deadlines.py)
        with pytest.raises(pp.ImageError) as err:
            pp.preprocess(source)
        message = str(err.value)
        assert expected in message, message
        assert "\n" not in message
        assert isinstance(err.value, DigitseqError)


def test_missing_path_and_folder(tmp_path):
    with pytest.raises(pp.ImageError, match="no such file"):
        pp.preprocess(tmp_path / "nope.png")
    with pytest.raises(pp.ImageError, match="is a folder"):
        pp.preprocess(tmp_path)


def test_bad_arrays_are_refused():
    with pytest.raises(pp.ImageError, match="not an image"):
        pp.preprocess(np.zeros((4, 5, 6, 7)))
    with pytest.raises(pp.ImageError, match="blank"):
        pp.preprocess(np.zeros((28, 140), np.uint8))
