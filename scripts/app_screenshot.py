#!/usr/bin/env python
"""Screenshot of the web app for the README: start `streamlit run` on 127.0.0.1, read a 7-digit
number composed from MNIST test digits in headless Chromium, and save the page as a PNG.

    .venv/bin/python scripts/app_screenshot.py [--model RUN] [-o docs/images/app.png]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

from digitseq.apps.webapp.view import start_streamlit

REPO = Path(__file__).resolve().parents[1]

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]  # fmt: skip


def number_png(folder: Path) -> Path:
    """A PNG of a 7-digit number in the natural layout, from MNIST test digits."""
    import numpy as np
    from PIL import Image

    from digitseq.data import compose, mnist

    images, labels, _ = mnist.split_pool(mnist.load(), "test")
    lines = compose.generate(images, labels, 1, np.random.default_rng(3), layout="natural",
                             lengths=(7, 7))  # fmt: skip
    path = folder / f"number-{lines.strings[0]}.png"
    Image.fromarray(255 - lines.images[0, :, : lines.widths[0]]).save(path)
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="default: the bundled model")
    parser.add_argument("-o", "--output", type=Path, default=REPO / "docs" / "images" / "app.png")
    args = parser.parse_args()
    from playwright.sync_api import expect, sync_playwright

    chromium = shutil.which("chromium")
    if chromium is None:
        sys.exit("chromium is not installed (apt-get install chromium)")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    if args.model:
        env["DIGITSEQ_MODEL"] = str(args.model.resolve())
    with tempfile.TemporaryDirectory() as cwd:
        proc, url = start_streamlit(env, Path(cwd))
        try:
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
                page = browser.new_page(viewport={"width": 1400, "height": 1300})
                page.set_default_timeout(60_000)
                page.goto(url)
                page.locator('input[type="file"]').set_input_files(str(number_png(Path(cwd))))
                expect(page.locator(".digitseq-number").first).to_be_visible()
                page.wait_for_timeout(1500)  # let the charts render
                args.output.parent.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(args.output), full_page=True)
                browser.close()
        finally:
            proc.terminate()
            proc.wait(timeout=10)
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
