"""What the web app shows, without Streamlit: model choices, model-card figures, the compact
copies a session keeps of each image, pictures scaled for the screen, the chart specs, the spans
drawn over the model input, and which digits to double-check.

``page`` draws these with ``st.*``; everything here is plain data in, plain data out.
"""

from __future__ import annotations

import io
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from digitseq.core import paths
from digitseq.reading import preprocess

# A whole number below this is flagged "not sure": the threshold at which the bundled reader is
# right 99.5% of the time on val numbers (models/digitseq-ctc/README.md, bench_accuracy.py).
LOW_CONFIDENCE = 0.954
SHOW_W = 420  # display width of pictures, pixels
KEEP_SIDE = preprocess.WORK_SIDE  # longest side of the gray copy a session keeps of an image
MAX_DIGITS = 24  # the longest line the reader takes (preprocess.MAX_LINE_W / 28)
SPAN_COLOURS = ((31, 111, 180), (230, 120, 20), (44, 160, 44), (200, 40, 40), (148, 103, 189),
                (23, 190, 207))  # fmt: skip


@dataclass
class Entry:
    """One image the user asked to read. The session keeps no upload bytes: only a lossless
    gray copy of at most KEEP_SIDE px (what re-reading and the preprocessing steps need), a
    thumbnail to show, and the model inputs already computed (per preprocessing kind)."""

    id: int
    name: str
    image: bytes | None  # PNG, 8-bit gray (None: refused unread)
    thumb: bytes | None = None  # PNG to show as "original"
    truth: str | None = None  # the true number, when known (test split, examples)
    error: str | None = None  # why it was refused before reading
    inputs: dict = field(default_factory=dict)  # "line" | "cells" -> (28, W) float32 or error

    @property
    def nbytes(self) -> int:
        held = sum(x.nbytes for x in self.inputs.values() if isinstance(x, np.ndarray))
        return len(self.image or b"") + len(self.thumb or b"") + held


def png(picture: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(picture).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def keep_copy(source) -> tuple[bytes, bytes]:
    """(gray copy, thumbnail), both PNG, of an upload's bytes or an image array. The gray copy
    is what ``preprocess.to_gray`` makes of it (transparency composited, 8 bits: lossless for
    8-bit images) reduced to KEEP_SIDE, the size the ink is searched at. Raises ImageError."""
    gray = preprocess.to_gray(source)  # the size and bomb guards run here
    im = Image.fromarray((gray * 255 + 0.5).astype(np.uint8))
    del gray
    if max(im.size) > KEEP_SIDE:
        im.thumbnail((KEEP_SIDE, KEEP_SIDE), Image.Resampling.BOX)
    small = np.asarray(im)
    thumb = enlarge(small) if max(small.shape) < SHOW_W // 2 else small
    if max(thumb.shape) > SHOW_W:
        t = Image.fromarray(thumb)
        t.thumbnail((SHOW_W, SHOW_W), Image.Resampling.BOX)
        thumb = np.asarray(t)
    return png(small), png(thumb)


# --- models -----------------------------------------------------------------------------------


def runs_root() -> Path:
    env = os.environ.get("DIGITSEQ_RUNS_DIR")
    return Path(env).expanduser() if env else paths.runs_dir()


def list_runs(root: Path) -> list[Path]:
    """Run folders directly under root that hold config.json and weights, newest first. A
    folder that cannot be read is left out: one bad folder must not take the page down."""
    runs = [
        p
        for p in subfolders(root)
        if is_file(p / "config.json") and (is_file(p / "best.pth") or is_file(p / "weights.pth"))
    ]
    return sorted(runs, key=mtime, reverse=True)


def subfolders(root: Path) -> list[Path]:
    try:
        return sorted(p for p in root.iterdir() if p.is_dir())
    except OSError:  # missing, not a folder, or not readable
        return []


def is_file(path: Path) -> bool:
    try:
        return path.is_file()
    except OSError:  # Path.is_file raises PermissionError inside an unreadable folder
        return False


def mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def model_choices() -> dict[str, str]:
    """Picker label -> model path; the first one is the default."""
    choices = {}
    env = os.environ.get("DIGITSEQ_MODEL")
    if env:
        choices[f"DIGITSEQ_MODEL: {Path(env).name}"] = str(Path(env).expanduser())
    bundled = paths.bundled_model_dir()  # the default reader first, then the other bundled ones
    for folder in [bundled, *subfolders(bundled.parent)]:
        if is_file(folder / "config.json"):
            choices.setdefault(f"bundled: {folder.name}", str(folder))
    for run in list_runs(runs_root()):
        choices.setdefault(f"run: {run.name}", str(run))
    return choices


# --- model card -------------------------------------------------------------------------------


def flatten(d: dict, prefix: str = "", depth: int = 2) -> dict[str, float]:
    """Numeric leaves of a nested metrics dict, keyed "group / name"."""
    out = {}
    for k, v in d.items():
        if isinstance(v, dict) and depth > 1:
            out.update(flatten(v, f"{prefix}{k} / ", depth - 1))
        elif isinstance(v, int | float) and not isinstance(v, bool):
            out[f"{prefix}{k}".replace("_", " ")] = v
    return out


def card_figures(info: dict, folder: Path) -> dict[str, str]:
    """The model card's figures: from the checkpoint's sidecar, else from its eval/metrics.json."""
    metrics = info.get("metrics") or info.get("test_metrics")
    if not isinstance(metrics, dict) and (folder / "eval" / "metrics.json").is_file():
        try:
            metrics = json.loads((folder / "eval" / "metrics.json").read_text())
        except (OSError, ValueError):
            metrics = None
    figures = flatten(metrics) if isinstance(metrics, dict) else {}
    return {
        k: f"{v:.2%}" if isinstance(v, float) and 0 <= v <= 1 else f"{v:,}"
        for k, v in figures.items()
    }


# --- pictures ---------------------------------------------------------------------------------


def enlarge(picture: np.ndarray, width: int = SHOW_W) -> np.ndarray:
    """Nearest-neighbour upscale of a small picture so its pixels stay crisp on screen."""
    if picture.dtype != np.uint8:
        picture = (np.clip(picture, 0, 1) * 255).round().astype(np.uint8)
    k = max(1, width // picture.shape[1])
    return np.repeat(np.repeat(picture, k, axis=0), k, axis=1)


def spans_picture(x: np.ndarray, digits: str, spans, width: int = 2 * SHOW_W) -> np.ndarray:
    """The (28, W) model input enlarged, each digit's span (its [first, last] input columns)
    tinted and boxed in its own colour, with the digit written above it. (H, W', 3) uint8."""
    k = max(1, min(8, width // x.shape[1]))
    gray = enlarge(x, k * x.shape[1])
    label_h = 10 + 2 * k
    out = np.full((label_h + gray.shape[0], gray.shape[1], 3), 255, np.uint8)
    out[label_h:] = gray[..., None]
    im = Image.fromarray(out)
    draw = ImageDraw.Draw(im, "RGBA")
    try:
        font = ImageFont.load_default(size=label_h - 2)
    except (OSError, TypeError):  # no FreeType: the small bitmap font
        font = ImageFont.load_default()
    for i, (digit, (c0, c1)) in enumerate(zip(digits, spans or [], strict=False)):
        colour = SPAN_COLOURS[i % len(SPAN_COLOURS)]
        box = (c0 * k, label_h, (c1 + 1) * k - 1, out.shape[0] - 1)
        draw.rectangle(box, fill=(*colour, 90), outline=(*colour, 255), width=max(1, k // 2))
        draw.text(((c0 + c1 + 1) * k / 2, label_h / 2), digit, fill=colour, font=font, anchor="mm")
    return np.asarray(im)


PROBABILITY_AXIS = {  # the y axis of both charts: a probability, 0-100%
    "field": "p",
    "type": "quantitative",
    "title": "probability",
    "scale": {"domain": [0, 1]},
    "axis": {"format": "%", "tickCount": 3},
}


def probability_chart(probabilities) -> dict:
    """A Vega-Lite spec: one bar chart per position of the 10 class probabilities, the chosen
    digit highlighted (drawn by the browser: no server-side plotting per reading). For the
    5-digit 'fixed' models, whose readings carry (5, 10) probabilities."""
    p = np.asarray(probabilities, dtype=float)  # (5, 10)
    rows = []
    for i, row in enumerate(p):
        best = int(row.argmax())
        title = f"digit {i + 1}: {best} ({row[best]:.0%})"
        rows += [
            {"position": title, "digit": d, "p": float(row[d]), "chosen": d == best}
            for d in range(10)
        ]
    return {
        "data": {"values": rows},
        "mark": {"type": "bar", "tooltip": True},
        "width": 100,
        "height": 110,
        "encoding": {
            "column": {"field": "position", "type": "nominal", "title": None, "sort": None},
            "x": {"field": "digit", "type": "ordinal", "title": None, "axis": {"labelAngle": 0}},
            "y": PROBABILITY_AXIS,
            "color": {
                "field": "chosen",
                "type": "nominal",
                "scale": {"domain": [False, True], "range": ["#c8c8c8", "#1f6fb4"]},
                "legend": None,
            },
        },
    }


def digit_chart(digits: str, digit_confidences) -> dict:
    """A Vega-Lite spec: one bar per digit of a reading of any length, its probability; digits
    below LOW_CONFIDENCE in orange."""
    rows = [
        {"digit": f"{i + 1}: {d}", "p": float(c), "sure": bool(c >= LOW_CONFIDENCE)}
        for i, (d, c) in enumerate(zip(digits, digit_confidences, strict=True))
    ]
    return {
        "data": {"values": rows},
        "width": {"step": 56},  # a fixed width per digit: long numbers grow to the right
        "height": 140,
        "encoding": {
            "x": {
                "field": "digit",
                "type": "ordinal",
                "sort": None,
                "title": "digit",
                "axis": {"labelAngle": 0},
            },
            "y": PROBABILITY_AXIS,
        },  # fmt: skip
        "layer": [
            {
                "mark": {"type": "bar", "tooltip": True},
                "encoding": {
                    "color": {
                        "field": "sure",
                        "type": "nominal",
                        "scale": {"domain": [True, False], "range": ["#1f6fb4", "#e6781e"]},
                        "legend": None,
                    }
                },
            },
            {
                "mark": {"type": "text", "dy": -7, "fontSize": 11},
                "encoding": {"text": {"field": "p", "type": "quantitative", "format": ".0%"}},
            },
        ],
    }


def unsure_positions(reading) -> list[int]:
    """1-based positions to check when the whole number is below LOW_CONFIDENCE."""
    if reading.confidence is None or reading.confidence >= LOW_CONFIDENCE:
        return []
    conf = np.asarray(reading.digit_confidences or [])
    if conf.size == 0:
        return []
    weak = [int(i) + 1 for i in np.flatnonzero(conf < LOW_CONFIDENCE)]
    return weak or [int(conf.argmin()) + 1]


def unsure_message(reading) -> str | None:
    """The "not sure" flag of a reading below LOW_CONFIDENCE (None when sure)."""
    if reading.confidence is None or reading.confidence >= LOW_CONFIDENCE:
        return None
    unsure = unsure_positions(reading)
    if not unsure:
        return "not sure of this reading"
    s = "s" if len(unsure) > 1 else ""
    return f"not sure: check digit{s} {spoken_list(unsure)}"


def spoken_list(items: list[int]) -> str:
    words = [str(i) for i in items]
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


def length_text(digits: tuple[int, int] | str | None) -> str:
    """How a length constraint (or a format) reads: 'any length', '4 digits', '3-6 digits',
    'the format date'."""
    if not digits:
        return "any length"
    if isinstance(digits, str):
        return f"the format {digits}"
    lo, hi = digits
    return f"{lo} digit{'s' * (lo > 1)}" if lo == hi else f"{lo}-{hi} digits"


# --- launching the app (digitseq app, the browser tests, the screenshot script) ---------------

APP_SCRIPT = Path(__file__).with_name("page.py")
MAX_UPLOAD_MB = 10


def streamlit_command(port: int, host: str = "127.0.0.1", headless: bool = True) -> list[str]:
    """The `streamlit run` command line for the app."""
    import sys

    return [
        sys.executable, "-m", "streamlit", "run", str(APP_SCRIPT),
        "--server.address", host, "--server.port", str(port),
        "--server.headless", str(headless).lower(), "--server.maxUploadSize", str(MAX_UPLOAD_MB),
        "--browser.gatherUsageStats", "false", "--client.toolbarMode", "minimal",
        "--server.fileWatcherType", "none",
    ]  # fmt: skip


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_streamlit(env: dict, cwd: Path, timeout: float = 60.0):
    """Run the app headless on a free local port; returns (process, url) once /_stcore/health
    answers ok. Raises RuntimeError if it exits or does not become healthy in time."""
    import subprocess
    import time
    import urllib.request

    port = free_port()
    proc = subprocess.Popen(
        streamlit_command(port), env=env, cwd=cwd, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"streamlit exited: {proc.stdout.read()[-2000:]}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=1) as r:
                if r.read() == b"ok":
                    return proc, url
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError(f"streamlit did not become healthy within {timeout:.0f} s")
