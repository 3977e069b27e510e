#!/usr/bin/env python
"""Memory of a real app server while people upload big photos: `streamlit run` on 127.0.0.1,
then SESSIONS browser sessions in a row (headless Chromium), each uploading FILES JPEGs of ~9 MB
and waiting until every one is read, then closing. Prints the server's RSS after each session,
after the disconnected sessions expire, and its peak; the last line is one JSON object.

    .venv/bin/python scripts/app_memory.py [--app PAGE.py] [--model PATH] [--files 30]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from digitseq.apps.webapp.view import APP_SCRIPT, free_port

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]  # fmt: skip


def photo(rng: np.random.Generator, number: str, target_mb: float = 9.0) -> bytes:
    """A ~target_mb JPEG, 4000x3000: grainy paper (noise keeps JPEG large) with a number."""
    paper = rng.normal(200, 40, (3000, 4000, 3)).clip(0, 255).astype(np.uint8)
    im = Image.fromarray(paper)
    draw = ImageDraw.Draw(im)
    for i, d in enumerate(number):  # crude pen digits: good enough to be read as something
        x = 1000 + 400 * i
        draw.text((x, 1200), d, fill=(20, 20, 30), font_size=500)
    for q in (92, 91, 90, 89, 88, 86, 84, 80, 70):
        buf = io.BytesIO()
        im.save(buf, format="JPEG", quality=q)
        if len(buf.getvalue()) <= target_mb * 2**20:
            return buf.getvalue()
    return buf.getvalue()


def rss_mb(pid: int, field: str = "VmRSS") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--app", type=Path, default=APP_SCRIPT)
    parser.add_argument("--model", type=Path, help="default: the bundled model")
    parser.add_argument("--files", type=int, default=30)
    parser.add_argument("--sessions", type=int, default=3)
    parser.add_argument(
        "--ttl", type=int, default=120, help="seconds a closed session is kept (Streamlit: 120)"
    )
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    rng = np.random.default_rng(0)
    work = Path(tempfile.mkdtemp(prefix="app-memory-"))
    paths = []
    for i in range(args.files):
        p = work / f"photo{i:02d}.jpg"
        p.write_bytes(photo(rng, str(rng.integers(10, 10**6))))
        paths.append(str(p))
    sizes = [os.path.getsize(p) / 2**20 for p in paths]
    print(f"{len(paths)} JPEGs, {min(sizes):.1f}-{max(sizes):.1f} MB", flush=True)

    env = dict(os.environ, OMP_NUM_THREADS="1", DIGITSEQ_RUNS_DIR=str(work / "runs"))
    if args.model:
        env["DIGITSEQ_MODEL"] = str(args.model.resolve())
    port = free_port()
    cmd = [sys.executable, "-m", "streamlit", "run", str(args.app), "--server.address",
           "127.0.0.1", "--server.port", str(port), "--server.headless", "true",
           "--server.maxUploadSize", "10", "--browser.gatherUsageStats", "false",
           "--server.fileWatcherType", "none",
           "--server.disconnectedSessionTTL", str(args.ttl)]  # fmt: skip
    proc = subprocess.Popen(cmd, env=env, cwd=work, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    out: dict = {"app": str(args.app), "files": len(paths), "mb_per_file": round(np.mean(sizes), 1)}
    try:
        import urllib.request

        for _ in range(300):
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=1) as r:
                    if r.read() == b"ok":
                        break
            except OSError:
                time.sleep(0.2)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=shutil.which("chromium"),
                                        args=CHROMIUM_ARGS)  # fmt: skip
            for s in range(args.sessions):
                context = browser.new_context(viewport={"width": 1400, "height": 1000})
                page = context.new_page()
                page.set_default_timeout(600_000)
                page.goto(url)
                page.get_by_role("tab", name="Upload").wait_for()
                if s == 0:
                    page.wait_for_timeout(2000)  # model loaded
                    out["rss_idle_mb"] = round(rss_mb(proc.pid), 1)
                t0 = time.time()
                page.locator('input[type="file"]').set_input_files(paths)
                page.wait_for_function(
                    "n => document.querySelectorAll('.digitseq-number').length"
                    " + [...document.querySelectorAll('[data-testid=stAlertContentError]')]"
                    ".filter(e => e.innerText.startsWith('Could not read')).length >= n",
                    arg=len(paths),
                    polling=500,
                )
                page.wait_for_timeout(1000)
                out[f"session{s + 1}_s"] = round(time.time() - t0, 1)
                out[f"rss_after_session{s + 1}_mb"] = round(rss_mb(proc.pid), 1)
                print(f"session {s + 1}: {out[f'rss_after_session{s + 1}_mb']} MB", flush=True)
                context.close()
            # Streamlit drops a closed session from its store after the TTL, lazily: the next
            # session that closes triggers it. So: wait, then one visit that uploads nothing.
            time.sleep(args.ttl + 5)
            context = browser.new_context()
            page = context.new_page()
            page.goto(url)
            page.get_by_role("tab", name="Upload").wait_for()
            context.close()
            browser.close()
        time.sleep(10)
        out["rss_after_sessions_end_mb"] = round(rss_mb(proc.pid), 1)
        out["rss_peak_mb"] = round(rss_mb(proc.pid, "VmHWM"), 1)
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
