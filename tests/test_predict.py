"""The Predictor API and ``digitseq predict``: readings, confidences, abstention, the exact
output formats, bad inputs among good ones, and (bundled model) real readings."""

from __future__ import annotations

import csv
import json
import re

import numpy as np
import pytest
from conftest import SEED_SAMPLES
from helpers import assert_one_line_error
from PIL import Image

from digitseq.apps.cli import main
from digitseq.data import storage
from digitseq.reading.predictor import JSON_KEYS, Predictor, Reading

SAMPLES = sorted(SEED_SAMPLES.glob("*.png"))


def seed_labels() -> dict[str, str]:
    with open(SEED_SAMPLES / "labels.csv") as f:
        return {row["file"]: row["label"] for row in csv.DictReader(f)}


@pytest.fixture(scope="module")
def random_predictor(random_model_dir):
    return Predictor.load(random_model_dir)


@pytest.fixture
def mixed_folder(tmp_path):
    """Three good images, a non-image file that a folder scan must skip, and bad inputs."""
    good = tmp_path / "good"
    good.mkdir()
    for name in ("b.png", "a.png", "c.PNG"):
        (good / name).write_bytes(SAMPLES[len(name) % 5].read_bytes())
    (good / "notes.txt").write_text("not an image")
    bad = tmp_path / "bad.png"
    bad.write_text("a text file named .png")
    empty = tmp_path / "empty"
    empty.mkdir()
    return good, bad, empty


def run_cli(capsys, *argv) -> tuple[int, list[str], str]:
    code = main.main(["predict", *map(str, argv)])
    out, err = capsys.readouterr()
    return code, out.splitlines(), err


def test_predict_accepts_every_kind_of_input(random_predictor):
    a = np.asarray(Image.open(SAMPLES[0]))
    sources = [SAMPLES[0], str(SAMPLES[0]), SAMPLES[0].read_bytes(), Image.fromarray(a), a, b"junk"]
    readings = random_predictor.predict(sources)
    assert len(readings) == len(sources)
    first = readings[0]
    for r in readings[:5]:
        assert r.error is None and re.fullmatch(r"\d{5}", r.digits)
        assert r.digits == first.digits
        np.testing.assert_allclose(r.probabilities, first.probabilities, atol=1e-5)
        assert r.input.shape == (28, 140)
    assert readings[0].file == str(SAMPLES[0]) and readings[2].file is None
    bad = readings[5]
    assert bad.digits is None and bad.confidence is None and "not an image" in bad.error


def test_confidence_is_the_product_of_digit_maxima(random_predictor):
    r = random_predictor.read(SAMPLES[3])
    probs = np.array(r.probabilities)
    assert probs.shape == (5, 10)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-4)
    np.testing.assert_allclose(r.digit_confidences, probs.max(axis=1), atol=1e-5)
    assert r.confidence == pytest.approx(np.prod(r.digit_confidences))
    assert r.digits == "".join(str(d) for d in probs.argmax(axis=1))


def test_abstention_and_json(random_predictor):
    r = random_predictor.read(SAMPLES[0], min_confidence=0.999)  # an untrained model is unsure
    assert r.abstained and r.digits is None and r.confidence < 0.999
    assert list(r.to_json()) == list(JSON_KEYS)
    assert r.to_json(include_abstained=True)["abstained"] is True
    assert not random_predictor.read(SAMPLES[0], min_confidence=0.0).abstained


def test_png_export_reads_exactly_like_the_stored_split(random_predictor, small_dataset, tmp_path):
    """`predict` on the PNGs of a split sees the very arrays `evaluate` sees: same readings."""
    split = storage.load_split(small_dataset, "test")
    n = 200
    paths = []
    for i in range(n):
        paths.append(tmp_path / f"{i:06d}.png")
        Image.fromarray(np.asarray(split.images[i])).save(paths[-1])
    from_files = random_predictor.predict(paths)
    logits = random_predictor.logits(np.asarray(split.images[:n], np.float32) / 255.0)
    direct = ["".join(map(str, row)) for row in logits.argmax(axis=-1)]
    assert [r.digits for r in from_files] == direct


def test_cli_text_format_and_errors(capsys, random_model_dir, mixed_folder, tmp_path):
    good, bad, empty = mixed_folder
    missing = tmp_path / "missing.jpg"
    code, lines, err = run_cli(capsys, "--model", random_model_dir, good, bad, missing, empty)
    assert code == 1
    assert len(lines) == 6
    names = [line.split("\t")[0] for line in lines[:3]]
    assert names == [str(good / n) for n in ("a.png", "b.png", "c.PNG")]  # sorted, .txt skipped
    for line in lines[:3]:
        assert re.fullmatch(r"[^\t]+\t\d{5}\t[01]\.\d{4}", line), line
    assert lines[3] == f"{bad}\t-\terror: not an image (unrecognized file format)"
    assert lines[4] == f"{missing}\t-\terror: no such file or folder"
    assert lines[5].startswith(f"{empty}\t-\terror: no image files in folder")
    assert "Traceback" not in err and "3 of 6" in err


def test_cli_jsonl_format_with_abstention(capsys, random_model_dir, mixed_folder):
    good, bad, _ = mixed_folder
    argv = ["--model", random_model_dir, "--format", "jsonl", "--min-confidence", "0.999"]
    code, lines, _ = run_cli(capsys, *argv, good, bad)
    assert code == 1
    rows = [json.loads(line) for line in lines]
    assert len(rows) == 4
    for row in rows:
        assert list(row) == [*JSON_KEYS, "abstained"]
    for row in rows[:3]:
        assert row["digits"] is None and row["abstained"] is True and row["error"] is None
        assert 0 <= row["confidence"] <= 1 and len(row["digit_confidences"]) == 5
    assert rows[3]["error"] and rows[3]["digits"] is None and rows[3]["abstained"] is False


def test_cli_all_good_exits_zero_without_abstained_key(capsys, random_model_dir):
    code, lines, _ = run_cli(
        capsys, "--model", random_model_dir, "--format", "jsonl", "--batch-size", "2", *SAMPLES[:5]
    )
    assert code == 0
    rows = [json.loads(line) for line in lines]
    assert [r["file"] for r in rows] == [str(p) for p in SAMPLES[:5]]
    assert all("abstained" not in r and re.fullmatch(r"\d{5}", r["digits"]) for r in rows)


def test_cli_bad_model_is_one_line(capsys, tmp_path):
    code, lines, err = run_cli(capsys, "--model", tmp_path / "nope", SAMPLES[0])
    assert lines == []
    assert_one_line_error(code, err)


def test_reading_to_json_of_an_error():
    r = Reading(file="x.png", error="empty file (0 bytes)")
    assert r.to_json(True) == {
        "file": "x.png",
        "digits": None,
        "text": None,
        "value": None,
        "confidence": None,
        "digit_confidences": None,
        "spans": None,
        "warning": None,
        "error": "empty file (0 bytes)",
        "abstained": False,
    }


# --- with the trained, bundled model ------------------------------------------------------


@pytest.fixture(scope="module")
def bundled(bundled_model_dir):
    return Predictor.load(bundled_model_dir)


def test_bundled_model_reads_all_25_seed_samples(bundled):
    labels = seed_labels()
    readings = bundled.predict(SAMPLES)
    wrong = {p.name: r.digits for p, r in zip(SAMPLES, readings, strict=True)}
    wrong = {k: v for k, v in wrong.items() if v != labels[k]}
    assert not wrong, f"misread: {wrong}"


def test_bundled_model_reads_other_formats_polarity_and_paper(bundled):
    from test_preprocess import encode, on_paper

    labels = seed_labels()
    for path in SAMPLES[:5]:
        a = np.asarray(Image.open(path))
        im = Image.fromarray(a)
        variants = {
            "jpeg": encode(im.convert("RGB"), "JPEG", quality=80),
            "webp": encode(im, "WEBP", quality=80),
            "rgba": encode(im.convert("RGBA"), "PNG"),
            "inverted": Image.fromarray(255 - a),
            "paper x4": encode(on_paper(a, 4), "JPEG", quality=85),
        }
        for name, source in variants.items():
            assert bundled.read(source).digits == labels[path.name], (path.name, name)


def test_padded_batches_give_the_same_logits(random_model_dir, small_dataset):
    """Batches are padded to a power of two (bounded kernel caches): padding must not change
    any image's logits."""
    import numpy as np

    from digitseq.data import storage
    from digitseq.reading.predictor import Predictor

    split = storage.load_split(small_dataset, "test")
    x = np.asarray(split.images[:5], dtype=np.float32) / 255
    reader = Predictor.load(random_model_dir)
    together = reader.logits(x)  # padded from 5 to 8
    alone = np.concatenate([reader.logits(x[i : i + 1]) for i in range(5)])
    assert together.shape == (5, 5, 10)
    np.testing.assert_allclose(together, alone, atol=1e-4)
