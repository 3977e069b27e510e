"""End to end: `streamlit run` on 127.0.0.1 driven by a real headless Chromium (Playwright's
Python API with the Debian browser). The known-number test needs the bundled model; set
DIGITSEQ_MODEL to run the others against another model."""

from __future__ import annotations

import io
import os
import re
import shutil
import subprocess

import numpy as np
import pytest
from PIL import Image

from digitseq.apps.webapp.view import start_streamlit

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CHROMIUM = shutil.which("chromium")
if CHROMIUM is None:
    pytest.skip(
        "chromium is not installed (make browser, or apt-get install chromium)",
        allow_module_level=True,
    )
sync_api = pytest.importorskip("playwright.sync_api")

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TIMEOUT_MS = 30_000
NUMBER = "40719"


def png_of_number(mnist_data, number: str) -> bytes:
    """A 28x140 PNG, white on black: the first MNIST test digit of each class, side by side."""
    images, labels = mnist_data.test_images, mnist_data.test_labels
    strip = np.hstack([images[np.flatnonzero(labels == int(d))[0]] for d in number])
    buf = io.BytesIO()
    Image.fromarray(strip).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def app_url(tmp_path_factory):
    """The app on the bundled model (or $DIGITSEQ_MODEL), run in an empty folder."""
    cwd = tmp_path_factory.mktemp("cwd")
    env = dict(os.environ, DIGITSEQ_RUNS_DIR=str(tmp_path_factory.mktemp("runs")))
    env["DIGITSEQ_HOME"] = str(tmp_path_factory.mktemp("home"))
    env.setdefault("OMP_NUM_THREADS", "1")
    proc, url = start_streamlit(env, cwd)
    yield url
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
    assert sorted(p.name for p in cwd.iterdir()) == []  # no temporary files in the cwd


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser, app_url):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(app_url)
    page.get_by_text("digitseq: read a handwritten 5-digit number").wait_for()
    page.get_by_role("tab", name="Upload").wait_for()
    yield page
    context.close()


def upload(page, name: str, data: bytes, mime: str = "image/png") -> None:
    page.locator('input[type="file"]').set_input_files(
        files=[{"name": name, "mimeType": mime, "buffer": data}]
    )


def test_upload_a_known_number(page, mnist_data, request):
    if os.environ.get("DIGITSEQ_MODEL"):
        pytest.skip("DIGITSEQ_MODEL is set: the app does not run the bundled model")
    request.getfixturevalue("bundled_model_dir")  # fails clearly when the model is missing
    upload(page, "number.png", png_of_number(mnist_data, NUMBER))
    number = page.locator(".digitseq-number").first
    sync_api.expect(number).to_have_text(NUMBER, timeout=TIMEOUT_MS)
    sync_api.expect(page.get_by_text("sequence confidence").first).to_be_visible()


def test_draw_a_number_with_the_mouse(page):
    page.get_by_role("tab", name="Draw").click()
    canvas = page.locator("canvas.upper-canvas")
    canvas.wait_for()
    box = canvas.bounding_box()
    x0, y0, h = box["x"], box["y"], box["height"]
    for i in range(5):  # five upright strokes, one per digit slot ("11111")
        cx = x0 + box["width"] * (i + 0.5) / 5
        page.mouse.move(cx, y0 + 0.15 * h)
        page.mouse.down()
        for t in np.linspace(0.15, 0.85, 12):
            page.mouse.move(cx + 4 * (t - 0.5), y0 + t * h)
        page.mouse.up()
    number = page.locator(".digitseq-number").first
    sync_api.expect(number).to_have_text(re.compile(r"^\d{5}$"), timeout=TIMEOUT_MS)
    sync_api.expect(page.get_by_text("your drawing")).to_be_visible()


def test_corrupt_upload_shows_the_error(page):
    upload(page, "broken.png", b"\x89PNG\r\n\x1a\n this is not an image")
    error = page.get_by_text(re.compile(r"^Could not read broken\.png: "))
    sync_api.expect(error).to_be_visible(timeout=TIMEOUT_MS)
    assert page.get_by_text("Traceback").count() == 0
