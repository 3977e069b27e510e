"""Any image a person may have -> the model's input (white ink on black, in [0, 1]).

Made the way MNIST itself was made (``data.mnist_style``): find the ink, crop and deskew it;
for the line reader scale the whole line so its digits have a 20-px body in 28 px, strokes in
MNIST's width range (``line=True``: a 28 x W line); for the 5-digit readers cut it into five
digits, each fitted to a 20x20 box and centred by mass in its 28x28 cell (28x140). Images
already in the generator's format (28 px tall; 28x140 for five cells) pass through untouched,
inverted first when the ink is dark. No torch here: the ONNX path and the app stay light.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from digitseq.core.constants import DIGIT_SIZE, IMG_H, IMG_W, N_DIGITS
from digitseq.core.errors import DigitseqError, one_line
from digitseq.data.mnist_style import digit_cell, mnist_stroke, resized, stroke_width
from digitseq.reading.ink import (
    MIN_CONTRAST,
    clean_mask,
    crop,
    deskew,
    dilate,
    grow,
    otsu,
    shift,
    split_digits,
    stretch,
    to_white_on_black,
)

MAX_PIXELS = 50_000_000  # header check before decoding: a 48-MP phone photo fits, a bomb does not
MAX_BYTES = 64 * 1024 * 1024
WORK_SIDE = 1200  # longest side the ink is searched at; bigger images are reduced first
MAX_INK = 0.45  # fraction of the image; more than that is not a number on paper
FAINT_INK = 0.7  # lines: faint pixels joined to ink, above this fraction of Otsu (chosen on val)
MAX_LINE_W = 28 * 24  # widest line handed to the CTC reader (24 digit widths)
BOMB = (
    f"image too large: its header claims over {2 * Image.MAX_IMAGE_PIXELS // 10**6} megapixels "
    f"(limit {MAX_PIXELS // 10**6}; a decompression bomb?)"
)
REDUCIBLE = ("L", "LA", "La", "RGB", "RGBA", "RGBa", "I", "F", "CMYK")  # Image.reduce takes
FULL_WIDTH = "digitseq_full_width"  # PIL info key: the width before draft mode or reduce
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")


class ImageError(DigitseqError):
    """An image that cannot be read as a number; the message says why, in one line."""


# --- decoding ---------------------------------------------------------------------------------


def open_image(source) -> Image.Image:
    """A decoded PIL image from a path, bytes or a PIL image, with the size guards applied."""
    if isinstance(source, Image.Image):
        check_size(source.size)
        return source
    if isinstance(source, bytes | bytearray | memoryview):
        data = bytes(source)
        if not data:
            raise ImageError("empty file (0 bytes)")
        if len(data) > MAX_BYTES:
            raise ImageError(f"file too large ({len(data) / 2**20:.0f} MiB, limit 64 MiB)")
        return decode(io.BytesIO(data))
    path = Path(source)
    if not path.exists():
        raise ImageError(f"no such file: {path}")
    if path.is_dir():
        raise ImageError(f"{path} is a folder, not an image")
    size = path.stat().st_size
    if size == 0:
        raise ImageError("empty file (0 bytes)")
    if size > MAX_BYTES:
        raise ImageError(f"file too large ({size / 2**20:.0f} MiB, limit 64 MiB)")
    try:
        data = path.read_bytes()
    except OSError as e:
        raise ImageError(f"cannot read {path}: {e.strerror}") from None
    return decode(io.BytesIO(data))


def decode(f: io.BytesIO) -> Image.Image:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # checked below
            im = Image.open(f)  # reads the header only
    except Image.DecompressionBombError:
        raise ImageError(BOMB) from None
    except UnidentifiedImageError:
        raise ImageError("not an image (unrecognized file format)") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise ImageError(f"corrupt image header ({one_line(e)})") from None
    check_size(im.size)
    full_w, full_h = im.size  # before any reduction: spans are given in the file's pixels
    fmt = im.format or "image"
    try:
        im.seek(0)  # GIF / TIFF / WebP: the first frame
        side = max(im.size)
        if im.format == "JPEG" and side > 2 * WORK_SIDE:
            # JPEG decodes at 1/2, 1/4 or 1/8 scale directly: the largest reduction that keeps
            # the longer side >= WORK_SIDE (a 48-MP photo: 1/4, 16x less memory and time).
            scale = WORK_SIDE / side
            im.draft("L", (max(1, round(im.width * scale)), max(1, round(im.height * scale))))
        im.load()
        turned = orientation(im) in (5, 6, 7, 8)  # a phone photo stored sideways: shown upright
        im.info[FULL_WIDTH] = full_h if turned else full_w  # the width of the picture as shown
        if max(im.size) > 2 * WORK_SIDE and im.mode in REDUCIBLE:
            # Other formats decode whole; reduce at once so only one full-size copy ever
            # exists, and the full one is freed before any conversion or float work.
            small = im.reduce(max(1, max(im.size) // WORK_SIDE))
            small.format, small.info = im.format, im.info
            im.close()
            im = small
        if orientation(im) not in (0, 1):
            upright = ImageOps.exif_transpose(im)
            upright.format, upright.info[FULL_WIDTH] = im.format, im.info[FULL_WIDTH]
            im = upright
    except Image.DecompressionBombError:
        raise ImageError(BOMB) from None
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        raise ImageError(f"corrupt or truncated {fmt} file ({one_line(e)})") from None
    return im


def orientation(im: Image.Image) -> int:
    """The EXIF Orientation tag (1: upright; 0: none or unreadable)."""
    try:
        return int(im.getexif().get(0x0112, 0) or 0)
    except Exception:  # noqa: BLE001 - a broken EXIF block: read the pixels as stored
        return 0


def check_size(size: tuple[int, int]) -> None:
    w, h = size
    if w * h > MAX_PIXELS:
        raise ImageError(
            f"image too large: {w}x{h} pixels (limit {MAX_PIXELS // 10**6} megapixels)"
        )
    if w < 1 or h < 1:
        raise ImageError(f"image has no pixels ({w}x{h})")


# --- to one gray channel ----------------------------------------------------------------------


def to_gray(source) -> np.ndarray:
    """(H, W) float32 in [0, 1] from any accepted source; transparency composited onto paper."""
    return load_gray(source)[0]


def load_gray(source) -> tuple[np.ndarray, float]:
    """``to_gray`` and the image's own pixels per gray pixel (decoding may reduce a big one)."""
    if isinstance(source, np.ndarray):
        return array_to_gray(source), 1.0
    im = open_image(source)
    width = im.info.get(FULL_WIDTH, im.width)
    if max(im.size) > 2 * WORK_SIDE:  # cheap integer reduction before any float work
        im = im.reduce(max(1, max(im.size) // WORK_SIDE))
    return gray_of(im), width / im.width


def gray_of(im: Image.Image) -> np.ndarray:
    mode = im.mode
    if mode in ("I;16", "I;16L", "I;16B", "I;16N"):
        return np.asarray(im, dtype=np.float32) / 65535.0
    if mode == "I":
        a = np.asarray(im, dtype=np.float32)
        return np.clip(a / (255.0 if a.max() <= 255 else 65535.0), 0, 1)
    if mode == "F":
        a = np.nan_to_num(np.asarray(im, dtype=np.float32))
        return np.clip(a / (1.0 if a.max() <= 1.0 else 255.0), 0, 1)
    has_alpha = mode in ("LA", "La", "RGBA", "RGBa", "PA") or (
        mode == "P" and "transparency" in im.info
    )
    if has_alpha:
        rgba = im.convert("RGBA")
        gray = np.asarray(rgba.convert("L"), dtype=np.float32) / 255.0
        alpha = np.asarray(rgba.getchannel("A"), dtype=np.float32) / 255.0
        return composite(gray, alpha)
    return np.asarray(im.convert("L"), dtype=np.float32) / 255.0


def array_to_gray(a: np.ndarray) -> np.ndarray:
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (2, 3, 4)):
        raise ImageError(f"array of shape {a.shape} is not an image (H,W), (H,W,3) or (H,W,4)")
    check_size((a.shape[1], a.shape[0]))
    if a.dtype == np.bool_:
        x = a.astype(np.float32)
    elif a.dtype == np.uint16:
        x = a.astype(np.float32) / 65535.0
    elif np.issubdtype(a.dtype, np.integer):
        x = a.astype(np.float32) / 255.0
    elif np.issubdtype(a.dtype, np.floating):
        x = np.nan_to_num(a.astype(np.float32))
        if x.max() > 1.0:
            x = x / 255.0
    else:
        raise ImageError(f"array of dtype {a.dtype} is not an image")
    x = np.clip(x, 0.0, 1.0)
    if x.ndim == 2:
        return x
    alpha = x[:, :, -1] if x.shape[2] in (2, 4) else None
    color = x[:, :, :3] if x.shape[2] >= 3 else x[:, :, :1]
    gray = (
        color @ np.array([0.299, 0.587, 0.114], np.float32)
        if color.shape[2] == 3
        else color[..., 0]
    )
    return composite(gray, alpha) if alpha is not None else gray


def composite(gray: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Flatten onto paper. Mostly transparent (a drawing on a transparent canvas): the strokes
    are the opaque pixels, so the paper takes the opposite shade. Mostly opaque: transparent
    holes take the colour of the opaque paper around them."""
    opaque = alpha > 0.5
    if not opaque.any():
        raise ImageError("blank image: every pixel is transparent")
    level = float(np.median(gray[opaque]))
    if opaque.mean() < 0.5:
        paper = 1.0 if level < 0.5 else 0.0
    else:
        paper = level
    return (gray * alpha + paper * (1.0 - alpha)).astype(np.float32)


# --- the pipeline -----------------------------------------------------------------------------


def preprocess(image, line: bool = False) -> np.ndarray:
    """The model's input, float32 in [0, 1], white ink on black: (28, 140) with five digit
    cells for the 5-digit models, or (28, W) the whole line for the CTC reader (``line``)."""
    return run(image, keep_steps=False, line=line)[0]


def preprocess_placed(image, line: bool = False) -> tuple[np.ndarray, np.ndarray, str | None]:
    """The model input, the 3x3 affine map from its (column, row) to the image's own pixels
    (through crop, deskew, stroke padding and scaling): where each digit lies in the image, and
    a warning when the image cannot hold a line read reliably (``shape_warning``)."""
    out, _, back, warning = run(image, keep_steps=False, line=line)
    return out, back, warning


def preprocess_steps(image, line: bool = False) -> tuple[np.ndarray, list[tuple[str, np.ndarray]]]:
    """The model input plus a uint8 picture of each step, for the app to show."""
    return run(image, keep_steps=True, line=line)[:2]


def run(image, keep_steps: bool, line: bool = False):
    """(model input, pictures of the steps, 3x3 map from input to image coordinates, warning)."""
    steps: list[tuple[str, np.ndarray]] = []
    gray, factor = load_gray(image)
    back = np.diag([factor, factor, 1.0])  # gray pixels -> the image's
    if keep_steps:
        steps.append(("image (gray)", picture(gray)))

    x, inverted = to_white_on_black(gray)
    generated = gray.shape[0] == IMG_H and (line or gray.shape[1] == IMG_W)
    if generated and gray.shape[1] <= MAX_LINE_W:  # the generator's format: used as is
        check_ink_amount(x > 0.5, x.max() - x.min())
        out = np.ascontiguousarray(x, dtype=np.float32)
        if keep_steps:
            steps.append(
                (
                    f"28x{out.shape[1]} input: used as is" + (" (inverted)" if inverted else ""),
                    picture(out),
                )
            )
        return out, steps, back, None

    x = stretch(x)
    if x is None:
        raise ImageError("blank image: no ink found (the picture has no contrast)")
    if keep_steps:
        steps.append(("ink white on black" + (" (inverted)" if inverted else ""), picture(x)))

    x, kept, cut = find_ink(x, line)
    if keep_steps:
        steps.append(("ink found, specks and paper edges removed", picture(x)))

    x, kept, turn = deskew(x, kept)
    back = back @ cut @ turn
    if keep_steps:
        steps.append(("cropped and deskewed", picture(x)))

    stroke = stroke_width(kept)
    if line:
        out, placed = line_input(x, kept, stroke)
        if keep_steps:
            steps.append(
                ("the line: a 20-px body in 28 px, MNIST strokes (model input)", picture(out))
            )
        return out, steps, back @ placed, shape_warning(gray.shape, kept)
    segments = split_digits(kept, N_DIGITS)
    out = np.zeros((IMG_H, IMG_W), np.float32)
    for i, (c0, c1) in enumerate(segments):
        cell = digit_cell(x[:, c0:c1], kept[:, c0:c1], stroke)
        out[:, i * DIGIT_SIZE : (i + 1) * DIGIT_SIZE] = cell
    if keep_steps:
        steps.append(("five digits, each 20x20 in a 28x28 cell (model input)", picture(out)))
    return out, steps, back, None  # five cells: no single map (each scaled on its own)


def find_ink(x: np.ndarray, line: bool):
    """The ink of a stretched image: Otsu's mask without specks and paper edges, cropped ->
    (ink, mask, 3x3 crop map); an image that is blank or mostly ink is refused."""
    threshold = otsu(x)
    mask = x > threshold
    check_ink_amount(mask, 1.0)
    kept = clean_mask(mask)
    if line and FAINT_INK < 1.0:
        # A stroke may fade below Otsu's threshold in places (a thin or light pen): lines keep
        # the faint pixels connected to ink that is above it (hysteresis), never faint specks.
        kept = grow(x > threshold * FAINT_INK, kept)
    if not kept.any():
        raise ImageError("blank image: no ink found (only specks or paper edges)")
    x = np.where(dilate(kept), x, 0.0).astype(np.float32)
    x, kept, cut = crop(x, kept)
    # One bold digit may fill 60% of its own box, and a lone "1" (a bar, far narrower than
    # tall) all of it; anything else that is mostly ink is not a number on paper.
    if kept.mean() > (0.75 if line else 0.6) and kept.shape[1] > 0.5 * kept.shape[0]:
        raise ImageError(f"far too much ink ({kept.mean():.0%} of the cropped number)")
    return x, kept, cut


MIN_IMAGE_PX = 8  # an image narrower or lower than this cannot hold a legible digit
SQUEEZE = 1.25  # a line squeezed to under 1/1.25 of its trained height loses digits
COLUMN_GROUPS = 3  # ink in this many row groups stacked in a tall column: a number on its side


def shape_warning(image_shape: tuple[int, ...], kept: np.ndarray) -> str | None:
    """Why a line may be read wrong although it reads at all: an image a few pixels wide or
    tall (any thin bar reads as a sure '1'), ink standing in a column of separate groups (a
    number turned 90 degrees reads as a '1'), a line so long that it is squeezed below the
    reader's digit height to fit its widest input."""
    h, w = image_shape[:2]
    if min(h, w) < MIN_IMAGE_PX:
        return f"too small to read reliably: the image is {w}x{h} px"
    kh, kw = kept.shape
    rows = kept.any(axis=1)
    starts = np.flatnonzero(rows[1:] & ~rows[:-1]).size + int(rows[0])
    if kh > 2 * kw and starts >= COLUMN_GROUPS:
        return (f"the ink stands in a column of {starts} parts: a number turned on its side? "
                "Rotate the image so that the digits run left to right")  # fmt: skip
    fit = (MAX_LINE_W - 8) / kw  # the scale that fits the line into the widest input
    share = fit / (line_height(kh, kw) / kh)
    if share * SQUEEZE < 1:
        return (f"a very long line: squeezed to {share:.0%} of the reader's digit height to fit "
                "its widest input, digits may be lost; read it in parts")  # fmt: skip
    return None


# The ink of a generated line is as tall as one MNIST digit (20 px) when it holds one digit, and
# taller the more digits it holds (their boxes sit at different heights): measured on training
# lines, by the number of digits. The line is scaled to the height its estimated length has.
LINE_HEIGHT = ((1, 3, 5, 8, 12), (19.7, 22.5, 23.6, 24.5, 25.2))


def line_height(h: int, w: int) -> float:
    """Target ink height for a cropped line of h x w pixels: its digit count estimated from the
    aspect ratio (a digit is ~0.83 of the line's height wide, pitch included)."""
    digits = max(1.0, (w / h + 0.35) / 1.2)
    return float(np.interp(digits, *LINE_HEIGHT))


def line_input(x: np.ndarray, mask: np.ndarray, stroke: float) -> tuple[np.ndarray, np.ndarray]:
    """A cropped, deskewed line -> (28, W) for the CTC reader: the ink's height scaled to the
    height of a generated line of as many digits (``line_height``), the width in proportion,
    the stroke brought into MNIST's range, a 4-px margin on each side and at least one digit
    cell (28 px) of width, the ink centred; W is capped at ``MAX_LINE_W``. Also returns the
    3x3 map from the result's (column, row) back to the line's."""
    h0, w0 = x.shape
    body = line_height(h0, w0)
    scale = body / h0
    if w0 * scale > MAX_LINE_W - 8:  # an extremely long line: fit its width instead
        scale = (MAX_LINE_W - 8) / w0
    x = mnist_stroke(x, stroke, scale)
    h, w = x.shape
    pad = (w - w0) / 2  # a thin pen is dilated on a padded copy
    scale = min(body / h, (MAX_LINE_W - 8) / w)
    small, peak = resized(x, round(h * scale), round(w * scale))
    nh, nw = small.shape
    out = np.zeros((IMG_H, max(nw + 8, DIGIT_SIZE)), np.float32)
    top, left = (IMG_H - nh) // 2, (out.shape[1] - nw) // 2
    if peak > 0:
        out[top : top + nh, left : left + nw] = np.clip(small / peak, 0.0, 1.0)
    sx, sy = w / nw, h / nh  # pixel centres: src = (dst + 0.5) * s - 0.5
    unscale = np.array([[sx, 0.0, 0.5 * sx - 0.5], [0.0, sy, 0.5 * sy - 0.5], [0.0, 0.0, 1.0]])
    return out, shift(-pad, -pad) @ unscale @ shift(-left, -top)


def check_ink_amount(mask: np.ndarray, contrast: float) -> None:
    if contrast < MIN_CONTRAST or not mask.any():
        raise ImageError("blank image: no ink found")
    if mask.mean() > MAX_INK:
        raise ImageError(
            f"far too much ink ({mask.mean():.0%} of the image): expected a number on plain paper"
        )


def picture(x: np.ndarray, max_side: int = 800) -> np.ndarray:
    """uint8 picture of a [0, 1] array, reduced for display when large."""
    img = (np.clip(x, 0, 1) * 255 + 0.5).astype(np.uint8)
    if max(img.shape) > max_side:
        f = max(img.shape) / max_side
        size = (max(1, round(img.shape[1] / f)), max(1, round(img.shape[0] / f)))
        img = np.asarray(Image.fromarray(img).resize(size, Image.Resampling.BOX))
    return img


def is_image_file(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES
