"""Numbers of any length through the bundled CTC reader, as a user reads them: PNG files of
1, 5 and 12 digits (and 20, beyond the trained range) through `digitseq predict`, a length
constraint, the Python API, ONNX vs torch, and the service's ?digits=."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from helpers import assert_one_line_error, run_cli
from PIL import Image

from digitseq.core.paths import bundled_models_dir
from digitseq.data import compose
from digitseq.reading.predictor import Predictor


def png_bytes(img: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def numbers(mnist_data, tmp_path_factory):
    """Clean seed-layout numbers of 1, 5, 12 and 20 digits from MNIST test digits, as
    dark-on-white PNG files (what a scan looks like), with their digit strings."""
    folder = tmp_path_factory.mktemp("numbers")
    out = {}
    for length in (1, 5, 12, 20):
        rng = np.random.default_rng(length)
        lines = compose.generate(mnist_data.test_images, mnist_data.test_labels, 4, rng, "seed",
                                 lengths=(length, length))  # fmt: skip
        truth = compose.labels_to_strings(lines.digits, lines.lengths)
        for i, t in enumerate(truth):
            img = 255 - lines.images[i, :, : lines.widths[i]]
            img = np.pad(img, 30, constant_values=255)  # paper around the number
            path = folder / f"n{length}-{i}.png"
            path.write_bytes(png_bytes(img))
            out[path] = t
    return out


@pytest.fixture(scope="module")
def bundled():
    p = Predictor.load()
    assert p.kind == "ctc", "the bundled reader must be the CTC line reader"
    return p


def test_predict_reads_1_5_and_12_digits_without_being_told(numbers, bundled, capsys):
    paths = [p for p, t in numbers.items() if len(t) <= 12]
    code, out, err = run_cli(capsys, "predict", "--format", "jsonl", *paths)
    assert code == 0, err
    rows = [json.loads(line) for line in out.splitlines()]
    right = sum(r["digits"] == numbers[type(paths[0])(r["file"])] for r in rows)
    assert right >= len(rows) - 1, [(r["digits"], numbers[type(paths[0])(r["file"])]) for r in rows]
    for r in rows:
        assert len(r["spans"]) == len(r["digits"]) == len(r["digit_confidences"])
        starts = [s[0] for s in r["spans"]]
        assert starts == sorted(starts)  # spans run left to right
        assert 0.0 <= r["confidence"] <= 1.0


def test_a_number_longer_than_trained_is_read_with_a_warning(numbers, bundled):
    paths = [p for p, t in numbers.items() if len(t) == 20]
    readings = bundled.predict(paths)
    for r in readings:
        assert r.error is None
        assert len(r.digits) >= 15
        if len(r.digits) > 12:
            assert "longer than the 12" in r.warning


def test_length_constraint_reads_the_best_number_of_that_length(numbers, bundled):
    five = [p for p, t in numbers.items() if len(t) == 5]
    free = bundled.predict(five)
    forced = bundled.predict(five, digits=(5, 5))
    for a, b in zip(free, forced, strict=True):
        assert len(b.digits) == 5
        if len(a.digits) == 5:  # the constraint agrees with a free reading of the right length
            assert a.digits == b.digits
    one = [p for p, t in numbers.items() if len(t) == 1]
    squeezed = bundled.predict(one, digits=(6, 6))  # a 1-digit image asked for 6 digits
    assert all(r.warning and r.warning.startswith("unsure") for r in squeezed)


def test_onnx_and_torch_agree_on_digits_and_confidences(numbers):
    paths = list(numbers)[:8]
    onnx = Predictor.load(backend="onnx").predict(paths)
    torch_ = Predictor.load(backend="torch").predict(paths)
    for a, b in zip(onnx, torch_, strict=True):
        assert a.digits == b.digits
        assert abs(a.confidence - b.confidence) < 1e-3


def test_bad_digits_option_is_a_clear_error(capsys, numbers):
    with pytest.raises(SystemExit) as e:  # argparse: usage line, then the error line
        run_cli(capsys, "predict", "--digits", "9-3", next(iter(numbers)))
    err = capsys.readouterr().err
    assert e.value.code == 2 and "Traceback" not in err
    assert (
        err.strip()
        .splitlines()[-1]
        .endswith("argument --digits: expected 1 <= A <= B <= 64, got '9-3'")
    )
    multihead = bundled_models_dir() / "digitseq-multihead"
    code, _, err = run_cli(
        capsys, "predict", "--model", multihead, "--digits", "3", next(iter(numbers))
    )
    assert_one_line_error(code, err, "exactly 5 digits")


def test_service_reads_any_length_and_honours_digits(numbers):
    from fastapi.testclient import TestClient

    from digitseq.apps.serve.app import create_app

    paths = [p for p, t in numbers.items() if len(t) in (1, 12)][:4]
    with TestClient(create_app()) as client:
        files = [("files", (p.name, p.read_bytes(), "image/png")) for p in paths]
        r = client.post("/v1/read", files=files)
        assert r.status_code == 200, r.text
        got = [x["digits"] for x in r.json()["results"]]
        assert sum(g == numbers[p] for g, p in zip(got, paths, strict=True)) >= len(paths) - 1
        r = client.post("/v1/read?digits=3", files=files[:1])
        assert r.status_code == 200 and len(r.json()["results"][0]["digits"]) == 3
        assert client.post("/v1/read?digits=0", files=files[:1]).status_code == 422


@pytest.mark.parametrize(
    "scale, angle, fmt",
    [(4, 0, "PNG"), (4, 6, "PNG"), (4, -8, "JPEG"), (18, 0, "JPEG")],  # 18: decoded reduced
)
def test_spans_are_columns_of_the_uploaded_image(mnist_data, bundled, scale, angle, fmt):
    """A scanned number, enlarged, placed on paper and turned: each digit's span lies where
    that digit is in the file's own pixels (through crop, deskew, scaling, JPEG draft mode)."""
    rng = np.random.default_rng(3)
    lines = compose.generate(mnist_data.test_images, mnist_data.test_labels, 1, rng, "seed",
                             lengths=(5, 5))  # fmt: skip
    img = 255 - lines.images[0, :, : lines.widths[0]]
    big = Image.fromarray(img).resize((img.shape[1] * scale, 28 * scale), Image.Resampling.BICUBIC)
    left, top = 150, 60
    paper = Image.new("L", (big.width + 2 * left, big.height + 2 * top), 255)
    paper.paste(big, (left, top))
    w, h = paper.size
    if angle:
        paper = paper.rotate(angle, Image.Resampling.BICUBIC, expand=True, fillcolor=255)
    buf = io.BytesIO()
    paper.save(buf, fmt)
    r = bundled.read(buf.getvalue())
    assert r.digits == compose.labels_to_strings(lines.digits, lines.lengths)[0]
    ink = np.flatnonzero(lines.images[0].max(0) > 60)
    a = np.radians(angle)
    for k, (c0, c1) in enumerate(r.spans):
        cols = ink[(ink >= 28 * k) & (ink < 28 * (k + 1))]  # digit k's ink, seed cell k
        cx = left + scale * (cols[0] + cols[-1] + 1) / 2
        cy = top + 14 * scale  # where it went when the paper turned (PIL: counter-clockwise)
        ex = (cx - w / 2) * np.cos(a) + (cy - h / 2) * np.sin(a) + paper.width / 2
        assert abs((c0 + c1) / 2 - ex) < 0.25 * 28 * scale, (k, (c0, c1), ex)
        assert 0 <= c0 <= c1 < paper.width
