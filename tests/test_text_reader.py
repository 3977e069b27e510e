"""A reader of text: the alphabet with separators from the training data to the reading. Its
training batches hold formatted numbers with their separators as labels; a text reader's
outputs (blank + 19 classes) decode to ``text`` (with separators) and ``digits`` (alone)
through the same predictor, torch and ONNX, and a digit reader cannot be asked to learn them."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from helpers import assert_one_line_error, run_cli

from digitseq.core.constants import TEXT_ALPHABET
from digitseq.data import formats, loaders, mnist
from digitseq.models.inference import true_strings
from digitseq.models.onnx_export import export_onnx
from digitseq.reading.predictor import Predictor
from digitseq.training.config import PRESETS
from digitseq.training.fit import fit


def test_formatted_lines_keep_their_separators_as_labels(mnist_data):
    pool, labels, _ = mnist.split_pool(mnist_data, "val")
    texts = ["12.50", "07/12/2026", "+44 20 7946", "9"]
    lines = formats.compose_text_lines(pool, labels, texts, np.random.default_rng(0))
    _, got, lengths, widths = loaders.text_batch(lines)
    assert true_strings(got, lengths) == texts
    assert widths.tolist() == lines.widths.tolist()


def test_a_share_of_training_batches_are_formatted_numbers(mnist_data):
    pool, labels, _ = mnist.split_pool(mnist_data, "train")
    batches = loaders.LineBatches(pool[:5000], labels[:5000], 16, 20, 0, "people", p_format=0.5)
    texts = [true_strings(*batches.batch(0, b)[1:3]) for b in range(20)]
    with_marks = [any(set(t) - set("0123456789") for t in batch) for batch in texts]
    assert 4 <= sum(with_marks) <= 16  # about half the batches
    plain = [batch for batch, marks in zip(texts, with_marks, strict=True) if not marks]
    assert all(t.isdigit() for batch in plain for t in batch)


@pytest.fixture(scope="module")
def text_run(tmp_path_factory, mnist_data):
    cfg = replace(PRESETS["text-tiny"], epochs=1, steps_per_epoch=20, val_size=100)
    return fit(cfg, tmp_path_factory.mktemp("text") / "run", device="cpu", progress=False)


def test_a_text_reader_reads_text_and_digits_through_torch_and_onnx(text_run, tmp_path):
    onnx_file = tmp_path / "reader.onnx"
    export_onnx(text_run, onnx_file)
    line = np.full((60, 200), 255, np.uint8)
    line[15:45, 30:34] = 0  # a bar: whatever an untrained reader makes of it
    line[15:45, 90:94] = 0
    readings = [Predictor.load(text_run, backend="torch").read(line),
                Predictor.load(onnx_file).read(line)]  # fmt: skip
    for r in readings:
        assert set(r.text) <= set(TEXT_ALPHABET)
        assert r.digits == "".join(c for c in r.text if c.isdigit())
        assert len(r.digit_confidences) == len(r.spans) == len(r.digits)
        assert {"digits", "text"} <= r.to_json().keys()
    assert readings[0].text == readings[1].text


def test_formatted_numbers_need_a_reader_of_text(capsys, tmp_path):
    code, _, err = run_cli(capsys, "train", "--preset", "ctc-tiny", "--p-format", "0.3",
                           "--out", tmp_path / "run")  # fmt: skip
    assert_one_line_error(code, err, "needs a reader of text")


def test_predict_holds_a_reading_to_a_pattern_and_refuses_a_bad_one(capsys):
    from conftest import SEED_SAMPLES

    sample = SEED_SAMPLES / "101.png"
    code, out, _ = run_cli(capsys, "predict", "--format", "jsonl", "--pattern", r"\d{5}", sample)
    row = __import__("json").loads(out)
    assert code == 0 and len(row["digits"]) == 5 and row["text"] == row["digits"]
    code, out, _ = run_cli(capsys, "predict", "--format", "jsonl", "--pattern", "date", sample)
    assert code == 0 and "unsure" in out  # a digit reader reads no '/': flagged, not forced
    code, _, err = run_cli(capsys, "predict", "--pattern", "([", sample)
    assert_one_line_error(code, err, "not a valid pattern")
    code, _, err = run_cli(capsys, "predict", "--digits", "5", "--pattern", "amount", sample)
    assert_one_line_error(code, err, "--pattern")


def test_a_digit_reader_starts_a_reader_of_text(bundled_model_dir):
    """--init across alphabets: every weight of the digit reader is kept, the classifier grows
    by the separators' rows; a reader of another shape is still refused."""
    import torch

    from digitseq.core.errors import DigitseqError
    from digitseq.models import checkpoint

    digits = checkpoint.load_state_dict(checkpoint.resolve(bundled_model_dir)[0])
    config = checkpoint.read_config(checkpoint.resolve(bundled_model_dir)[1])["model"]
    text = checkpoint.build("ctc", {**config["hparams"], "alphabet": "text"}, bundled_model_dir)
    own = text.state_dict()
    assert own["classifier.weight"].shape[0] == len(TEXT_ALPHABET) + 1
    for k, v in digits.items():
        kept = own[k][: len(v)] if v.ndim else own[k]
        assert torch.equal(kept.float(), v.float()), k
    with pytest.raises(DigitseqError, match="does not fit"):
        checkpoint.build("ctc", {**config["hparams"], "hidden": 8}, bundled_model_dir)
