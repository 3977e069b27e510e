"""What the web app shows, without Streamlit: model choices, model-card figures, pictures
scaled for the screen, the probability chart spec and which digits to double-check.

``webapp`` draws these with ``st.*``; everything here is plain data in, plain data out.
"""

from __future__ import annotations

import io
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from digitseq.core import paths

LOW_CONFIDENCE = 0.90  # a whole number below this is flagged "not sure"
SHOW_W = 420  # display width of pictures, pixels


@dataclass
class Entry:
    """One image the user asked to read; its readings are cached per model in session_state."""

    id: int
    name: str
    payload: bytes | np.ndarray | None  # what the predictor reads (None: refused unread)
    truth: str | None = None  # the true number, when known (test split, examples)
    error: str | None = None  # why it was refused before reading


# --- models -----------------------------------------------------------------------------------


def runs_root() -> Path:
    env = os.environ.get("DIGITSEQ_RUNS_DIR")
    return Path(env).expanduser() if env else paths.runs_dir()


def list_runs(root: Path) -> list[Path]:
    """Run folders directly under root that hold config.json and weights, newest first."""
    if not root.is_dir():
        return []
    runs = [
        p
        for p in root.iterdir()
        if (p / "config.json").is_file()
        and ((p / "best.pth").is_file() or (p / "weights.pth").is_file())
    ]
    return sorted(runs, key=lambda p: p.stat().st_mtime, reverse=True)


def model_choices() -> dict[str, str]:
    """Picker label -> model path; the first one is the default."""
    choices = {}
    env = os.environ.get("DIGITSEQ_MODEL")
    if env:
        choices[f"DIGITSEQ_MODEL: {Path(env).name}"] = str(Path(env).expanduser())
    bundled = paths.bundled_model_dir()
    if (bundled / "config.json").is_file():
        choices[f"bundled: {bundled.name}"] = str(bundled)
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


def original_picture(payload) -> np.ndarray | None:
    if isinstance(payload, np.ndarray):
        return enlarge(payload)
    try:
        with Image.open(io.BytesIO(payload)) as im:
            im.thumbnail((2 * SHOW_W, 2 * SHOW_W))
            return enlarge(np.asarray(im.convert("RGB")))
    except Exception:  # noqa: BLE001 - the reading already says what is wrong with it
        return None


def probability_chart(probabilities) -> dict:
    """A Vega-Lite spec: one bar chart per position of the 10 class probabilities, the chosen
    digit highlighted (drawn by the browser: no server-side plotting per reading)."""
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
            "y": {
                "field": "p",
                "type": "quantitative",
                "title": "probability",
                "scale": {"domain": [0, 1]},
                "axis": {"format": "%", "tickCount": 3},
            },
            "color": {
                "field": "chosen",
                "type": "nominal",
                "scale": {"domain": [False, True], "range": ["#c8c8c8", "#1f6fb4"]},
                "legend": None,
            },
        },
    }


def unsure_positions(reading) -> list[int]:
    """1-based positions to check when the whole number is below LOW_CONFIDENCE."""
    if reading.confidence is None or reading.confidence >= LOW_CONFIDENCE:
        return []
    conf = np.asarray(reading.digit_confidences)
    weak = [int(i) + 1 for i in np.flatnonzero(conf < LOW_CONFIDENCE)]
    return weak or [int(conf.argmin()) + 1]


def spoken_list(items: list[int]) -> str:
    words = [str(i) for i in items]
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


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
