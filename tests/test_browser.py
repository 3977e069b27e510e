"""End to end: `streamlit run` on 127.0.0.1 driven by a real headless Chromium (Playwright's
Python API with the Debian browser). The app runs $DIGITSEQ_MODEL when set, else the bundled
model when it is a CTC line reader, else a ctc-tiny run trained here (~1 min)."""

from __future__ import annotations

import io
import os
import re
import shutil
import subprocess
from pathlib import Path

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
def reader(request) -> Path:
    """The model the app runs: a CTC line reader unless DIGITSEQ_MODEL says otherwise."""
    if os.environ.get("DIGITSEQ_MODEL"):
        return Path(os.environ["DIGITSEQ_MODEL"])
    return request.getfixturevalue("ctc_reader")


@pytest.fixture(scope="module")
def app_url(tmp_path_factory, reader):
    """The app on the reader, run in an empty folder."""
    cwd = tmp_path_factory.mktemp("cwd")
    env = dict(os.environ, DIGITSEQ_RUNS_DIR=str(tmp_path_factory.mktemp("runs")))
    env["DIGITSEQ_MODEL"] = str(reader)
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
    page.get_by_text("digitseq: read a handwritten number").wait_for()
    page.get_by_role("tab", name="Upload").wait_for()
    yield page
    context.close()


def upload(page, name: str, data: bytes, mime: str = "image/png") -> None:
    page.locator('input[type="file"]').set_input_files(
        files=[{"name": name, "mimeType": mime, "buffer": data}]
    )


def test_upload_a_known_number(page, mnist_data):
    upload(page, "number.png", png_of_number(mnist_data, NUMBER))
    number = page.locator(".digitseq-number").first
    sync_api.expect(number).to_have_text(NUMBER, timeout=TIMEOUT_MS)
    sync_api.expect(page.get_by_text("whole-number confidence").first).to_be_visible()
    sync_api.expect(page.get_by_text("each digit's columns boxed").first).to_be_visible()


def stroke(page, points) -> None:
    """One pen stroke through points (x, y) with the mouse, in small steps."""
    page.mouse.move(*points[0])
    page.mouse.down()
    for (x0, y0), (x1, y1) in zip(points, points[1:], strict=False):
        for t in np.linspace(0, 1, 10)[1:]:
            page.mouse.move(x0 + t * (x1 - x0), y0 + t * (y1 - y0))
    page.mouse.up()


def test_draw_a_three_digit_number_with_the_mouse(page):
    """ "171" drawn with the mouse on the canvas (a stroke, a bar and a slant, a stroke) is read
    as 171, digit by digit, with its confidence; none of it is a 5-digit guess."""
    page.get_by_role("tab", name="Draw").click()
    canvas = page.locator("canvas.upper-canvas")
    canvas.wait_for()
    box = canvas.bounding_box()
    top, bottom = box["y"] + 25, box["y"] + 115
    for i, digit in enumerate("171"):
        cx = box["x"] + 200 + 90 * i
        if digit == "1":
            stroke(page, [(cx, top), (cx, bottom)])
        else:  # a 7: the bar, then the slant down to the left
            stroke(page, [(cx - 20, top), (cx + 20, top), (cx - 4, bottom)])
    number = page.locator(".digitseq-number").first
    sync_api.expect(number).to_have_text("171", timeout=TIMEOUT_MS)
    sync_api.expect(page.get_by_text("your drawing")).to_be_visible()
    confidence = page.locator('[data-testid="stMetricValue"]').first
    sync_api.expect(confidence).to_have_text(re.compile(r"^\d+\.\d%$"))
    assert float(confidence.inner_text().rstrip("%")) >= 50
    sync_api.expect(page.get_by_text("each digit's columns boxed").first).to_be_visible()


# centre lines of each digit (x, y) in a 40x90 box, y downward: as a person draws them quickly
CLOSE_DIGITS = {
    "1": [[(0, 0), (0, 90)]],
    "2": [[(2, 15), (18, 0), (36, 8), (38, 28), (2, 90), (42, 90)]],
    "3": [[(0, 10), (15, 0), (35, 8), (38, 25), (18, 45), (40, 60), (38, 80), (18, 90), (0, 82)]],
    "4": [[(28, 0), (0, 60), (42, 60)], [(30, 25), (30, 90)]],
    "5": [[(38, 0), (5, 0), (3, 40), (25, 35), (40, 60), (35, 82), (15, 90), (0, 80)]],
    "6": [[(35, 0), (12, 30), (2, 62), (12, 90), (32, 88), (40, 68), (28, 50), (8, 56)]],
    "9": [
        [(38, 20), (20, 0), (2, 15), (5, 38), (25, 45), (40, 25), (40, 10)],
        [(40, 20), (36, 90)],
    ],
}


def draw_text(page, text: str, shapes: dict, left: float, gap: float) -> None:
    """``text`` drawn on the app's canvas with the mouse, one character after the other from
    ``left`` px: each character's centre lines from ``shapes`` (a 40x90 box), the next one
    ``gap`` px past its ink (the pen is 14 px wide)."""
    page.get_by_role("tab", name="Draw").click()
    canvas = page.locator("canvas.upper-canvas")
    canvas.wait_for()
    box = canvas.bounding_box()
    x, top = box["x"] + left, box["y"] + 25
    for ch in text:
        lines = shapes[ch]
        for line in lines:
            stroke(page, [(x + px, top + py) for px, py in line])
        x += max(px for line in lines for px, _ in line) + 14 + gap


@pytest.mark.xfail(
    strict=True,
    reason="known defect (issue 20, open): the bundled reader drops the bare 1s of this "
    "close-written number and shows '345926' at 97.8%, above the 'not sure' line",
)
def test_draw_a_close_written_number_with_the_mouse(page):
    """ "31415926" drawn with the mouse as people write it, each digit's ink a few pixels from
    the next one's (a 1 is a bare stroke beside its neighbours): read right, or flagged "not
    sure" — never a wrong number shown as sure. Strict: when a reader fixes it, this fails until
    the mark is removed."""
    draw_text(page, "31415926", CLOSE_DIGITS, left=120, gap=5)
    number = page.locator(".digitseq-number").first
    sync_api.expect(number).to_have_text(re.compile(r"^\d+$"), timeout=TIMEOUT_MS)
    if number.inner_text() != "31415926":
        sync_api.expect(page.get_by_text("not sure").first).to_be_visible()


# the amount's shapes in a 40x90 box: a 0 drawn as one loop; the dot a short tap on the baseline
AMOUNT_SHAPES = {
    **CLOSE_DIGITS,
    "0": [[(20, 0), (4, 15), (0, 45), (6, 78), (20, 90), (34, 78), (40, 45), (36, 12), (20, 0)]],
    ".": [[(0, 86), (3, 90)]],
}


@pytest.mark.xfail(
    strict=True,
    reason="known defect (issue 22, open): the bundled reader reads digits only (no point); "
    "a reader of text (session 9's candidate) reads 12.50 but did not keep the MNIST figures",
)
def test_draw_an_amount_with_its_decimal_point(page):
    """ "12.50" drawn with the mouse (digits at a person's spacing, the point a short tap on the
    baseline) is read with its separator: the app shows 12.50, not 1250."""
    draw_text(page, "12.50", AMOUNT_SHAPES, left=160, gap=22)
    number = page.locator(".digitseq-number").first
    sync_api.expect(number).to_have_text("12.50", timeout=TIMEOUT_MS)


def test_corrupt_upload_shows_the_error(page):
    upload(page, "broken.png", b"\x89PNG\r\n\x1a\n this is not an image")
    error = page.get_by_text(re.compile(r"^Could not read broken\.png: "))
    sync_api.expect(error).to_be_visible(timeout=TIMEOUT_MS)
    assert page.get_by_text("Traceback").count() == 0
