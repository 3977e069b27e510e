"""Metrics on hand-made probabilities with known answers, and ``digitseq evaluate`` end to end
on the small dataset, including the bad inputs a user can give it."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from helpers import assert_one_line_error

from digitseq.apps.cli import main
from digitseq.core import files
from digitseq.evaluation import metrics


def one_hot_probs(pred: np.ndarray, p: float = 1.0) -> np.ndarray:
    """(N, 5, 10) probabilities putting ``p`` on the predicted digits, the rest spread."""
    pred = np.asarray(pred)
    probs = np.full((*pred.shape, 10), (1.0 - p) / 9, np.float32)
    np.put_along_axis(probs, pred[..., None], p, axis=-1)
    return probs


def digits(*numbers: str) -> np.ndarray:
    return np.array([[int(c) for c in n] for n in numbers], np.uint8)


def test_one_wrong_digit_in_three_sequences():
    labels = digits("01234", "56789", "11111")
    pred = digits("01234", "56789", "11171")
    sources = np.arange(15).reshape(3, 5) + 9000  # MNIST index of each digit
    m = metrics.compute_metrics(one_hot_probs(pred), labels, np.array([0, 0, 1]), sources)
    o = m["overall"]
    assert o["seq_acc"] == pytest.approx(2 / 3)
    assert o["digit_acc"] == pytest.approx(14 / 15)
    assert o["cer"] == pytest.approx(1 / 15)
    assert o["position_acc"] == pytest.approx([1, 1, 1, 2 / 3, 1])
    cm = np.array(o["confusion"])
    assert cm.sum() == 15 and np.trace(cm) == 14 and cm[1, 7] == 1
    assert cm[1, 1] == 5  # six 1s in the labels, one read as 7
    assert np.array(o["confusion_per_position"][3])[1, 7] == 1
    assert o["class_acc"][1] == pytest.approx(5 / 6) and o["class_acc"][0] == 1.0
    assert o["class_count"][1] == 6
    assert o["worst_errors"] == [
        {"index": 2, "true": "11111", "pred": "11171", "confidence": 1.0, "wrong_positions": [3],
         "mnist": [9013]}  # the misread digit: MNIST index 9013
    ]  # fmt: skip
    assert metrics.mnist_ids(o["worst_errors"][0]) == "9013"
    # per layout: the two seed numbers are right, the natural one is wrong
    assert m["layouts"]["seed"]["seq_acc"] == 1.0 and m["layouts"]["seed"]["n"] == 2
    assert m["layouts"]["natural"]["seq_acc"] == 0.0
    assert m["layouts"]["natural"]["worst_errors"][0]["index"] == 2  # row in the whole split
    json.dumps(m, allow_nan=False)  # plain JSON, no NaN


def test_ece_is_zero_when_confidence_matches_accuracy():
    # 10 numbers, each with confidence 0.8 (one digit at 0.8, four certain); 8 of 10 right
    labels = np.tile(digits("12345"), (10, 1))
    pred = labels.copy()
    probs = one_hot_probs(pred)
    probs[:, 0] = 0.0
    probs[:, 0, 1], probs[:, 0, 9] = 0.8, 0.2  # reads 1 at 0.8
    labels[:2, 0] = 9  # two numbers truly start with 9: wrong
    o = metrics.compute_metrics(probs, labels)["overall"]
    assert o["mean_confidence"] == pytest.approx(0.8)
    assert o["seq_acc"] == pytest.approx(0.8)
    assert o["ece"] == pytest.approx(0.0, abs=1e-6)
    used = [b for b in o["reliability"] if b["count"]]
    assert (
        len(used) == 1
        and used[0]["count"] == 10
        and used[0]["lo"] < o["mean_confidence"] <= used[0]["hi"]
    )
    assert len(o["reliability"]) == metrics.ECE_BINS


def test_ece_of_an_overconfident_model():
    labels = digits(*["00000"] * 4)
    pred = digits("00000", "00000", "00001", "00001")
    o = metrics.compute_metrics(one_hot_probs(pred), labels)["overall"]
    assert o["ece"] == pytest.approx(0.5)  # says 100% sure, right half the time


def test_coverage_curve_rejects_the_least_confident_first():
    rng = np.random.default_rng(0)
    n = 200
    labels = rng.integers(0, 10, (n, 5)).astype(np.uint8)
    pred = labels.copy()
    wrong = rng.choice(n, 30, replace=False)
    pred[wrong, 2] = (pred[wrong, 2] + 1) % 10
    conf = rng.uniform(0.9, 1.0, n)
    conf[wrong] = rng.uniform(0.3, 0.8, 30)  # errors are the least confident
    probs = one_hot_probs(pred)
    probs[:, 0] = ((1 - conf) / 9)[:, None]  # position 0 carries the number's confidence
    np.put_along_axis(probs[:, 0], pred[:, :1], conf[:, None].astype(np.float32), axis=-1)
    o = metrics.compute_metrics(probs, labels)["overall"]
    cov, acc, thr = (np.array(o["coverage"][k]) for k in ("coverage", "accuracy", "threshold"))
    assert cov[0] == 1.0 and cov[-1] == 0.5 and np.all(np.diff(cov) < 0)
    assert acc[0] == pytest.approx(o["seq_acc"]) == pytest.approx(170 / 200)
    assert np.all(np.diff(acc) >= -1e-12)  # rejecting more never hurts here
    assert np.all(np.diff(thr) >= 0)  # a higher threshold for a lower coverage
    assert o["accuracy_at_coverage"]["0.95"] == pytest.approx(170 / 190)
    assert o["accuracy_at_coverage"]["0.9"] == pytest.approx(170 / 180)
    assert acc[COV_85] == 1.0
    # worst errors are the most confident wrong ones, in order
    confs = [e["confidence"] for e in o["worst_errors"]]
    assert confs == sorted(confs, reverse=True) and len(confs) == metrics.N_WORST


COV_85 = metrics.COVERAGES.index(0.85)


def test_metrics_reject_bad_shapes():
    with pytest.raises(ValueError):
        metrics.compute_metrics(np.zeros((3, 4, 10)), np.zeros((3, 5)))
    with pytest.raises(ValueError):
        metrics.compute_metrics(np.zeros((0, 5, 10)), np.zeros((0, 5)))


# --- digitseq evaluate -------------------------------------------------------------------------


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main.main(["-q", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_evaluate_writes_metrics_plots_and_report(
    capsys, tmp_path, small_dataset, random_model_dir
):
    run = tmp_path / "run"
    shutil.copytree(random_model_dir, run)
    code, out, err = run_cli(
        capsys, "evaluate", str(run), "--data", str(small_dataset), "--limit", "500"
    )
    assert code == 0, err
    assert "seq acc" in out and "seed" in out and "natural" in out and "500 sequences" in out
    folder = run / "eval"
    doc = json.loads((folder / "metrics.json").read_text())
    assert doc["n"] == 500 and doc["data"]["split"] == "test"
    assert doc["model"]["arch"] == "multihead" and doc["model"]["parameters"] > 0
    assert set(doc["layouts"]) == {"seed", "natural"}
    assert sum(doc["layouts"][k]["n"] for k in doc["layouts"]) == 500
    assert 0.0 <= doc["overall"]["digit_acc"] <= 0.3  # untrained: about chance
    for png in (
        "confusion.png",
        "position_accuracy.png",
        "reliability.png",
        "coverage.png",
        "worst_errors.png",
        "confidence.png",
        "confusion_positions.png",
    ):
        data = (folder / png).read_bytes()
        assert data.startswith(b"\x89PNG") and len(data) > 5000, png
        assert f"]({png})" in (folder / "report.md").read_text()


def test_evaluate_compare_two_models(capsys, tmp_path, small_dataset, random_model_dir):
    import torch

    from digitseq.models import checkpoint, registry

    slices = tmp_path / "slices"
    slices.mkdir()
    torch.manual_seed(0)
    checkpoint.save_weights(registry.build_model("seed-slices"), slices / "weights.pth")
    files.write_json(slices / "config.json", {"model": checkpoint.model_config("seed-slices", {})})
    out_dir = tmp_path / "cmp"
    code, out, err = run_cli(
        capsys,
        "evaluate",
        str(random_model_dir),
        str(slices),
        "--data",
        str(small_dataset),
        "--limit",
        "200",
        "--out",
        str(out_dir),
    )
    assert code == 0, err
    compare = (out_dir / "compare.md").read_text()
    assert "| random | multihead |" in compare and "| slices | seed-slices |" in compare
    assert "seq acc natural" in compare and "| slices | seed-slices |" in out
    for name in ("random", "slices"):
        assert json.loads((out_dir / name / "metrics.json").read_text())["n"] == 200
    assert not (random_model_dir / "eval").exists()  # --out given: nothing in the run folder


def test_bundled_model_is_evaluated_outside_the_repository(
    capsys, tmp_path, monkeypatch, small_dataset, random_model_dir
):
    models_dir = tmp_path / "models"
    from digitseq.core import paths

    shutil.copytree(random_model_dir, models_dir / paths.BUNDLED_MODEL_NAME)
    monkeypatch.setenv("DIGITSEQ_MODELS_DIR", str(models_dir))
    code, out, err = run_cli(capsys, "evaluate", "--data", str(small_dataset), "--limit", "100")
    assert code == 0, err
    assert (paths.home() / "eval" / paths.BUNDLED_MODEL_NAME / "metrics.json").is_file()
    assert not (models_dir / paths.BUNDLED_MODEL_NAME / "eval").exists()


def test_tiny_run_reads_numbers(capsys, tmp_path, small_dataset, tiny_run):
    run = tiny_run
    out_dir = tmp_path / "eval"
    code, out, err = run_cli(
        capsys, "evaluate", str(run), "--data", str(small_dataset), "--out", str(out_dir)
    )
    assert code == 0, err
    doc = json.loads((out_dir / "metrics.json").read_text())
    # tiny is trained for seconds on seed-layout numbers; this set mixes both layouts
    assert doc["overall"]["digit_acc"] > 0.3  # far above the 10% of chance
    # chance is 0.001% (0.01 of the 1,000 test numbers): two or more right is far above it, and
    # holds for the fp32 run of a CPU without bf16 too (0.4% there, ~1% with bf16)
    assert doc["overall"]["seq_acc"] > 0.001
    # confident readings are more often right than the rest
    cov = doc["overall"]["coverage"]
    assert cov["accuracy"][-1] >= cov["accuracy"][0]


# --- bad input ----------------------------------------------------------------------------------


def test_missing_run_folder(capsys, tmp_path, small_dataset):
    code, _, err = run_cli(capsys, "evaluate", str(tmp_path / "nope"), "--data", str(small_dataset))
    assert_one_line_error(code, err, "does not exist")


def test_corrupt_weights(capsys, tmp_path, small_dataset, random_model_dir):
    run = tmp_path / "run"
    shutil.copytree(random_model_dir, run)
    (run / "weights.pth").write_bytes(b"this is not a checkpoint" * 10)
    code, _, err = run_cli(capsys, "evaluate", str(run), "--data", str(small_dataset))
    assert_one_line_error(code, err, "weights.pth")
    assert not (run / "eval").exists()


class NotWeights:
    """Anything but a state_dict: torch.load(weights_only=True) must refuse to build it."""

    def __init__(self):
        self.payload = "unpickling me would run code"


def test_crafted_pickle_is_refused(capsys, tmp_path, small_dataset, random_model_dir):
    import torch

    run = tmp_path / "run"
    shutil.copytree(random_model_dir, run)
    torch.save(NotWeights(), run / "weights.pth")
    code, _, err = run_cli(capsys, "evaluate", str(run), "--data", str(small_dataset))
    assert_one_line_error(code, err, "not a plain weights file")


def test_weights_of_another_architecture(capsys, tmp_path, small_dataset, random_model_dir):
    from digitseq.models import checkpoint

    run = tmp_path / "run"
    shutil.copytree(random_model_dir, run)
    files.write_json(run / "config.json", {"model": checkpoint.model_config("seed-slices", {})})
    code, _, err = run_cli(capsys, "evaluate", str(run), "--data", str(small_dataset))
    assert_one_line_error(code, err, "seed-slices")


def test_missing_dataset(capsys, tmp_path, random_model_dir):
    code, _, err = run_cli(capsys, "evaluate", str(random_model_dir), "--data", str(tmp_path / "x"))
    assert_one_line_error(code, err, "no dataset", "digitseq generate")
    code, _, err = run_cli(capsys, "evaluate", str(random_model_dir))  # default dataset absent
    assert_one_line_error(code, err, "no dataset", "datasets/default")


def test_incompatible_datasets(capsys, tmp_path, small_dataset, random_model_dir):
    not_a_dataset = tmp_path / "plain"
    not_a_dataset.mkdir()
    code, _, err = run_cli(capsys, "evaluate", str(random_model_dir), "--data", str(not_a_dataset))
    assert_one_line_error(code, err, "not a digitseq dataset")

    other = tmp_path / "other"
    other.mkdir()
    manifest = json.loads((small_dataset / "manifest.json").read_text())
    (other / "manifest.json").write_text(json.dumps({**manifest, "image_shape": [28, 28]}))
    code, _, err = run_cli(capsys, "evaluate", str(random_model_dir), "--data", str(other))
    assert_one_line_error(code, err, "incompatible dataset", "28x140")

    code, _, err = run_cli(
        capsys, "evaluate", str(random_model_dir), "--data", str(small_dataset), "--split", "nosuch"
    )
    assert_one_line_error(code, err, "no 'nosuch' split", "train, val, test")
