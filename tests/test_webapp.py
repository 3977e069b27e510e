"""The web app driven in-process by Streamlit's AppTest: the real script, the real predictor."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

APP = Path(__file__).resolve().parents[1] / "src" / "digitseq" / "apps" / "webapp" / "page.py"
NUMBER = "40719"


def number_strip(mnist_data, number: str) -> np.ndarray:
    """(28, 140) uint8, white on black: the first MNIST test digit of each class, side by side."""
    images, labels = mnist_data.test_images, mnist_data.test_labels
    return np.hstack([images[np.flatnonzero(labels == int(d))[0]] for d in number])


def png_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def canvas_drawing(mnist_data, number: str) -> bytes:
    """What the canvas sends: a 700x140 RGBA PNG, black ink on white."""
    strip = Image.fromarray(255 - number_strip(mnist_data, number)).resize((700, 140))
    return png_bytes(np.asarray(strip.convert("RGBA")))


def numbers_shown(at: AppTest) -> list[str]:
    """The big predicted numbers on the page."""
    found = []
    for md in at.markdown:
        if 'class="digitseq-number"' in md.value:
            found.append(md.value.split(">")[1].split("<")[0])
    return found


def texts(elements) -> list[str]:
    return [e.value for e in elements]


@pytest.fixture
def app(monkeypatch, tmp_path, random_model_dir):
    """The app with an untrained model (mechanics) and an empty runs folder, run in tmp_path."""
    monkeypatch.setenv("DIGITSEQ_MODEL", str(random_model_dir))
    monkeypatch.setenv("DIGITSEQ_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.chdir(tmp_path)
    at = AppTest.from_file(str(APP), default_timeout=120)
    at.run()
    assert not at.exception, at.exception
    return at


def test_page_starts_with_the_chosen_model(app):
    assert app.title[0].value.startswith("digitseq")
    assert app.sidebar.selectbox(key="model").value == "DIGITSEQ_MODEL: random"
    assert [t.label for t in app.tabs] == ["Upload", "Draw", "Test split", "Examples"]
    assert not app.error


def test_upload_shows_a_reading_and_writes_no_files(app, mnist_data, tmp_path):
    png = png_bytes(number_strip(mnist_data, NUMBER))
    app.file_uploader(key="uploads").set_value(("n.png", png, "image/png")).run()
    assert not app.exception and not app.error
    shown = numbers_shown(app)
    assert len(shown) == 1 and len(shown[0]) == 5 and shown[0].isdigit()
    conf = app.metric[0]
    assert conf.label == "sequence confidence" and conf.value.endswith("%")
    assert len(app.get("image")) >= 2  # the original and the model input
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


def test_drawing_on_the_canvas_is_read(app, mnist_data):
    data = base64.b64encode(canvas_drawing(mnist_data, NUMBER)).decode()
    app.session_state["canvas"] = {
        "drawing": {"raw": {"objects": []}, "data": f"data:image/png;base64,{data}"}
    }
    app.run()
    assert not app.exception and not app.error
    assert len(numbers_shown(app)) == 1


def test_empty_canvas_asks_for_a_drawing(app):
    assert any("Draw a number" in i for i in texts(app.info))
    assert numbers_shown(app) == []


def test_random_test_number_shows_its_true_label(app, mnist_data):
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


def test_unsure_positions_name_the_weak_digits():
    from digitseq.apps.webapp.view import spoken_list, unsure_positions
    from digitseq.reading.predictor import Reading

    sure = Reading(confidence=0.97, digit_confidences=[0.99, 0.99, 0.99, 1.0, 0.99])
    assert unsure_positions(sure) == []
    one = Reading(confidence=0.55, digit_confidences=[0.99, 0.99, 0.58, 0.99, 0.98])
    assert unsure_positions(one) == [3]
    two = Reading(confidence=0.4, digit_confidences=[0.7, 0.99, 0.99, 0.6, 0.98])
    assert unsure_positions(two) == [1, 4]
    spread = Reading(confidence=0.86, digit_confidences=[0.97, 0.96, 0.98, 0.97, 0.99])
    assert unsure_positions(spread) == [2]  # none weak alone: the least sure one
    assert spoken_list([3]) == "3" and spoken_list([1, 4]) == "1 and 4"


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
    assert len(texts(at.success)) == 25  # all 25 original samples read correctly (hits)
