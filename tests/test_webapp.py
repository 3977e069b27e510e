"""The web app driven in-process by Streamlit's AppTest: the real script, the real predictor.

Mechanics run on an untrained 5-digit model; what the user sees of a real reading runs on a CTC
line reader (the bundled model when it is one, else a ctc-tiny run trained here in ~1 min)."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

from digitseq.apps.webapp import view  # noqa: E402
from digitseq.reading.predictor import Reading  # noqa: E402

APP = Path(__file__).resolve().parents[1] / "src" / "digitseq" / "apps" / "webapp" / "page.py"
NUMBER = "40719"
CANVAS_W, CANVAS_H = 840, 140  # page.CANVAS_W, page.CANVAS_H


def number_strip(mnist_data, number: str) -> np.ndarray:
    """(28, 28 * len) uint8, white on black: the first MNIST test digit of each class."""
    images, labels = mnist_data.test_images, mnist_data.test_labels
    return np.hstack([images[np.flatnonzero(labels == int(d))[0]] for d in number])


def png_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def canvas_drawing(mnist_data, number: str) -> bytes:
    """What the canvas sends: a CANVAS_W x CANVAS_H RGBA PNG with opaque black strokes on white
    (MNIST test digits scaled to 110 px and thresholded, as a pen draws them)."""
    strip = 255 - number_strip(mnist_data, number)
    h = 110
    ink = np.asarray(Image.fromarray(strip).resize((strip.shape[1] * h // 28, h)))
    paper = np.full((CANVAS_H, CANVAS_W), 255, np.uint8)
    paper[15 : 15 + h, 40 : 40 + ink.shape[1]] = np.where(ink < 128, 0, 255)
    return png_bytes(np.dstack([paper, paper, paper, np.full_like(paper, 255)]))


def draw(at: AppTest, png: bytes) -> AppTest:
    data = base64.b64encode(png).decode()
    at.session_state["canvas"] = {
        "drawing": {"raw": {"objects": []}, "data": f"data:image/png;base64,{data}"}
    }
    return at.run()


def numbers_shown(at: AppTest) -> list[str]:
    """The big predicted numbers on the page."""
    found = []
    for md in at.markdown:
        if 'class="digitseq-number"' in md.value:
            found.append(md.value.split(">")[1].split("<")[0])
    return found


def texts(elements) -> list[str]:
    return [e.value for e in elements]


def charts(at: AppTest) -> list[list[dict]]:
    """The bars of each Vega-Lite chart on the page (Streamlit sends a spec's data as Arrow)."""
    from streamlit.dataframe_util import convert_arrow_bytes_to_pandas_df

    return [
        convert_arrow_bytes_to_pandas_df(c.proto.data.data).to_dict("records")
        for c in at.get("vega_lite_chart")
    ]


def start(monkeypatch, tmp_path, model: Path) -> AppTest:
    monkeypatch.setenv("DIGITSEQ_MODEL", str(model))
    monkeypatch.setenv("DIGITSEQ_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.chdir(tmp_path)
    at = AppTest.from_file(str(APP), default_timeout=120).run()
    assert not at.exception, at.exception
    return at


@pytest.fixture
def app(monkeypatch, tmp_path, random_model_dir):
    """The app with an untrained 5-digit model (mechanics), run in an empty tmp_path."""
    return start(monkeypatch, tmp_path, random_model_dir)


@pytest.fixture
def ctc_app(monkeypatch, tmp_path, ctc_reader):
    return start(monkeypatch, tmp_path, ctc_reader)


# --- mechanics (untrained 5-digit model) --------------------------------------------------------


def test_page_starts_with_the_chosen_model(app):
    assert app.title[0].value == "digitseq: read a handwritten number"
    assert app.sidebar.selectbox(key="model").value == "DIGITSEQ_MODEL: random"
    assert [t.label for t in app.tabs] == ["Upload", "Draw", "Test split", "Examples"]
    assert "This model reads exactly 5 digits." in texts(app.sidebar.caption)
    assert not app.sidebar.radio  # no length option for a 5-digit model
    assert not app.error
    assert not any("5-digit" in t or "five digits" in t for t in texts(app.caption))


def test_upload_shows_a_reading_and_writes_no_files(app, mnist_data, tmp_path):
    png = png_bytes(number_strip(mnist_data, NUMBER))
    app.file_uploader(key="uploads").set_value(("n.png", png, "image/png")).run()
    assert not app.exception and not app.error
    shown = numbers_shown(app)
    assert len(shown) == 1 and len(shown[0]) == 5 and shown[0].isdigit()
    conf = app.metric[0]
    assert conf.label == "whole-number confidence" and conf.value.endswith("%")
    assert len(app.get("image")) >= 2  # the original and the model input
    # a 5-digit model keeps its per-position chart: ten probabilities for each of five digits
    (bars,) = charts(app)
    assert len(bars) == 50
    # an untrained model is unsure of every position, and says so
    assert texts(app.warning) == ["not sure: check digits 1, 2, 3, 4 and 5"]
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # nothing written to the cwd


def test_several_uploads_and_results_survive_reruns(app, mnist_data):
    files = [
        (f"{n}.png", png_bytes(number_strip(mnist_data, n)), "image/png") for n in (NUMBER, "12345")
    ]
    app.file_uploader(key="uploads").set_value(files).run()
    assert len(numbers_shown(app)) == 2
    app.button(key="pick-test").click().run()  # another action: the two readings stay
    assert not app.exception
    assert len(numbers_shown(app)) == 3


def test_corrupt_upload_shows_one_error_and_no_traceback(app):
    app.file_uploader(key="uploads").set_value(("broken.png", b"\x89PNG not really", "image/png"))
    app.run()
    assert not app.exception
    errors = texts(app.error)
    assert len(errors) == 1 and errors[0].startswith("Could not read broken.png: ")
    assert "Traceback" not in errors[0] and "\n" not in errors[0]
    assert numbers_shown(app) == []


def test_oversized_upload_is_refused_politely(app):
    big = b"\0" * (11 * 2**20)
    app.file_uploader(key="uploads").set_value(("huge.png", big, "image/png")).run()
    assert not app.exception
    assert texts(app.error) == [
        "Could not read huge.png: 11.0 MB is over the 10 MB limit per image"
    ]


def test_a_session_keeps_no_upload_bytes(app, mnist_data):
    """A 9-MB photo-sized JPEG: the session keeps a gray copy of at most KEEP_SIDE px and a
    thumbnail, a fraction of the upload, and still reads and shows it."""
    rng = np.random.default_rng(0)
    photo = rng.integers(0, 256, (3000, 4000, 3), dtype=np.uint8)  # noise: JPEG stays large
    photo[1200:1800, 800:3200] = 255
    photo[1350:1650, 1000:1100] = 0  # one thick dark stroke on a white band
    buf = io.BytesIO()
    Image.fromarray(photo).save(buf, format="JPEG", quality=70)
    jpeg = buf.getvalue()
    assert 5 * 2**20 < len(jpeg) < 10 * 2**20
    app.file_uploader(key="uploads").set_value(("photo.jpg", jpeg, "image/jpeg")).run()
    assert not app.exception
    (entry,) = app.session_state["entries"]
    kept = Image.open(io.BytesIO(entry.image))
    assert kept.mode == "L" and max(kept.size) <= view.KEEP_SIDE
    assert max(Image.open(io.BytesIO(entry.thumb)).size) <= view.SHOW_W
    assert entry.nbytes < len(jpeg) / 4
    assert not any(isinstance(v, bytes) and len(v) > 2**20 for v in vars(entry).values())


def test_a_session_holds_at_most_max_readings_images(app):
    for _ in range(3):  # 75 readings asked for
        app.button(key="read-examples").click().run()
    assert not app.exception
    assert len(app.session_state["entries"]) == 50 == len(numbers_shown(app))
    assert len(app.session_state["readings"]) == 50


def test_empty_canvas_asks_for_a_drawing(app):
    assert any("Draw a number" in i for i in texts(app.info))
    assert numbers_shown(app) == []


def test_random_test_number_shows_its_true_label(app):
    app.button(key="pick-test").click().run()
    assert not app.exception
    assert len(numbers_shown(app)) == 1
    verdicts = texts(app.success) + texts(app.error)
    assert len(verdicts) == 1
    assert verdicts[0].startswith(("hit: the true number is ", "miss: the true number is "))


def test_examples_are_offered_and_read(app):
    assert len(next(s for s in app.selectbox if s.label == "Example").options) == 25
    app.button(key="read-examples").click().run()
    assert not app.exception
    assert len(numbers_shown(app)) == 25
    assert len(texts(app.success) + texts(app.error)) == 25  # a hit or miss mark each


def test_preprocessing_steps_on_request(app, mnist_data):
    png = png_bytes(number_strip(mnist_data, NUMBER))
    app.file_uploader(key="uploads").set_value(("n.png", png, "image/png")).run()
    before = len(app.get("image"))
    app.session_state["steps-0"] = True
    app.run()
    assert not app.exception
    assert len(app.get("image")) > before


# --- a real CTC reader: numbers of any length ---------------------------------------------------


def test_canvas_drawing_of_42_reads_42(ctc_app, mnist_data):
    """Opaque black strokes on the app's white canvas come back as the number drawn, with one
    probability bar per digit and each digit's span boxed on the model input."""
    at = draw(ctc_app, canvas_drawing(mnist_data, "42"))
    assert not at.exception and not at.error
    assert numbers_shown(at) == ["42"]
    assert float(at.metric[0].value.rstrip("%")) >= 90
    assert texts(at.warning) == []  # sure, and no length warning
    (bars,) = charts(at)
    assert [b["digit"] for b in bars] == ["1: 4", "2: 2"]
    assert all(b["p"] >= 0.9 and b["sure"] for b in bars)
    captions = [c for i in at.get("image") for c in i.captions]
    assert any("each digit's columns boxed" in c for c in captions)


def test_length_option_is_passed_to_the_reader(ctc_app, mnist_data):
    at = draw(ctc_app, canvas_drawing(mnist_data, NUMBER))
    assert numbers_shown(at) == [NUMBER]
    at.sidebar.radio(key="length-mode").set_value("exactly").run()
    at.sidebar.number_input(key="length-n").set_value(5).run()
    assert numbers_shown(at) == [NUMBER] and texts(at.warning) == []
    at.sidebar.number_input(key="length-n").set_value(3).run()
    (shown,) = numbers_shown(at)
    assert len(shown) == 3  # the most probable 3-digit number, flagged as unlikely
    assert "unsure: no reading with 3 digits is likely" in texts(at.warning)
    assert any(w.startswith("not sure") for w in texts(at.warning))
    at.sidebar.radio(key="length-mode").set_value("any number of digits").run()
    assert numbers_shown(at) == [NUMBER]


def test_a_format_option_is_passed_to_the_reader(ctc_app, mnist_data):
    """A named format or the user's pattern holds the reading to it; a format the reader
    cannot explain (a digit reader and a date) is flagged, never shown as a sure number."""
    at = draw(ctc_app, canvas_drawing(mnist_data, NUMBER))
    at.sidebar.radio(key="length-mode").set_value("a format").run()
    at.sidebar.selectbox(key="format").set_value("digits").run()
    assert numbers_shown(at) == [NUMBER] and texts(at.warning) == []
    at.sidebar.selectbox(key="format").set_value("my own pattern").run()
    at.sidebar.text_input(key="pattern").set_value(rf"\d{{{len(NUMBER)}}}").run()
    assert numbers_shown(at) == [NUMBER]
    at.sidebar.selectbox(key="format").set_value("date").run()
    assert any(w.startswith("unsure: no reading that the pattern") for w in texts(at.warning))
    at.sidebar.radio(key="length-mode").set_value("any number of digits").run()
    assert numbers_shown(at) == [NUMBER]


def test_uploads_of_any_length_are_read(ctc_app, mnist_data):
    numbers = ["7", "42", "3141592"]
    files = [(f"{n}.png", png_bytes(number_strip(mnist_data, n)), "image/png") for n in numbers]
    at = ctc_app.file_uploader(key="uploads").set_value(files).run()
    assert not at.exception and not at.error
    shown = numbers_shown(at)
    assert len(shown) == 3
    assert sum(s == n for s, n in zip(shown, reversed(numbers), strict=True)) >= 2
    assert [len(bars) for bars in charts(at)] == [len(s) for s in shown]
    assert any("any length" in c for c in texts(at.caption))


def test_random_test_numbers_have_various_lengths(ctc_app):
    for _ in range(6):
        ctc_app.button(key="pick-test").click().run()
    assert not ctc_app.exception
    truths = [t.split()[-1] for t in texts(ctc_app.success) + texts(ctc_app.error)]
    assert len(truths) == 6 and len({len(t) for t in truths}) > 1


# --- pure helpers -------------------------------------------------------------------------------


def test_unsure_positions_name_the_weak_digits():
    sure = Reading(confidence=0.97, digit_confidences=[0.99, 0.99, 0.99, 1.0, 0.99])
    assert view.unsure_positions(sure) == [] and view.unsure_message(sure) is None
    one = Reading(confidence=0.55, digit_confidences=[0.99, 0.99, 0.58, 0.99, 0.98])
    assert view.unsure_positions(one) == [3]
    assert view.unsure_message(one) == "not sure: check digit 3"
    two = Reading(confidence=0.4, digit_confidences=[0.7, 0.99, 0.99, 0.6, 0.98])
    assert view.unsure_positions(two) == [1, 4]
    spread = Reading(confidence=0.86, digit_confidences=[0.97, 0.96, 0.98, 0.97, 0.99])
    assert view.unsure_positions(spread) == [2]  # none weak alone: the least sure one
    long = Reading(confidence=0.5, digit_confidences=[0.99] * 11 + [0.5])
    assert view.unsure_message(long) == "not sure: check digit 12"
    empty = Reading(digits="", confidence=0.3, digit_confidences=[])
    assert view.unsure_message(empty) == "not sure of this reading"
    assert view.spoken_list([3]) == "3" and view.spoken_list([1, 4]) == "1 and 4"
    assert view.length_text(None) == "any length"
    assert view.length_text((1, 1)) == "1 digit" and view.length_text((3, 6)) == "3-6 digits"


def test_spans_are_boxed_in_colour_and_labelled():
    x = np.zeros((28, 40), np.float32)
    pic = view.spans_picture(x, "12", [[4, 7], [20, 27]], width=320)
    k = 8  # 320 // 40
    assert pic.shape[1] == 40 * k and pic.ndim == 3
    label_h = pic.shape[0] - 28 * k
    body = pic[label_h:]
    inside, between = body[14 * k, 5 * k], body[14 * k, 12 * k]
    assert tuple(between) == (0, 0, 0)  # untouched input: black
    assert inside[2] > inside[0] and inside.max() > 0  # tinted blue (the first colour)
    assert (pic[:label_h, 4 * k : 8 * k] != 255).any()  # the digit written above its span


def test_digit_chart_has_one_bar_per_digit():
    spec = view.digit_chart("1234567", [0.99, 0.98, 0.5, 1.0, 0.97, 0.99, 0.95])
    bars = spec["data"]["values"]
    assert [b["digit"] for b in bars][:3] == ["1: 1", "2: 2", "3: 3"] and len(bars) == 7
    sure = [c >= view.LOW_CONFIDENCE for c in (0.99, 0.98, 0.5, 1.0, 0.97, 0.99, 0.95)]
    assert [b["sure"] for b in bars] == sure == [True, True, False, True, True, True, False]


# --- models -------------------------------------------------------------------------------------


def test_run_folders_are_offered(monkeypatch, tmp_path, random_model_dir):
    runs = tmp_path / "runs"
    runs.mkdir()
    run = runs / "2024-01-01-demo"
    run.mkdir()
    for f in ("weights.pth", "config.json"):
        (run / f).write_bytes((random_model_dir / f).read_bytes())
    monkeypatch.setenv("DIGITSEQ_MODEL", str(random_model_dir))
    monkeypatch.setenv("DIGITSEQ_RUNS_DIR", str(runs))
    at = AppTest.from_file(str(APP), default_timeout=120).run()
    picker = at.sidebar.selectbox(key="model")
    assert "run: 2024-01-01-demo" in picker.options
    picker.set_value("run: 2024-01-01-demo").run()
    assert not at.exception and not at.error


def test_no_model_gives_a_clear_message(monkeypatch, tmp_path):
    monkeypatch.delenv("DIGITSEQ_MODEL", raising=False)
    monkeypatch.setenv("DIGITSEQ_MODELS_DIR", str(tmp_path / "none"))
    monkeypatch.setenv("DIGITSEQ_RUNS_DIR", str(tmp_path / "runs"))
    at = AppTest.from_file(str(APP), default_timeout=120).run()
    assert not at.exception
    assert len(at.error) == 1 and at.error[0].value.startswith("No model found")


def test_broken_model_gives_one_line(monkeypatch, tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "weights.pth").write_bytes(b"not a checkpoint")
    (bad / "config.json").write_text('{"model": {"arch": "multihead", "hparams": {}}}')
    monkeypatch.setenv("DIGITSEQ_MODEL", str(bad))
    monkeypatch.setenv("DIGITSEQ_RUNS_DIR", str(tmp_path / "runs"))
    at = AppTest.from_file(str(APP), default_timeout=120).run()
    assert not at.exception
    assert len(at.error) == 1 and at.error[0].value.startswith("Could not load the model")
    assert "\n" not in at.error[0].value


def test_bundled_model_reads_a_known_number(monkeypatch, tmp_path, mnist_data, bundled_model_dir):
    monkeypatch.delenv("DIGITSEQ_MODEL", raising=False)
    monkeypatch.setenv("DIGITSEQ_RUNS_DIR", str(tmp_path / "runs"))
    at = AppTest.from_file(str(APP), default_timeout=120).run()
    assert at.sidebar.selectbox(key="model").value.startswith("bundled: ")
    png = png_bytes(number_strip(mnist_data, NUMBER))
    at.file_uploader(key="uploads").set_value(("n.png", png, "image/png")).run()
    assert numbers_shown(at) == [NUMBER]
    at.button(key="read-examples").click().run()
    assert len(texts(at.success)) >= 24  # the original 25 samples, read (hits)
