"""``digitseq export --format onnx`` and the onnxruntime backend: the file, its sidecar, a
dynamic batch axis, and logits that agree with torch on real images."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import SEED_SAMPLES
from helpers import assert_one_line_error
from PIL import Image

from digitseq.apps.cli import main
from digitseq.data import storage
from digitseq.reading.predictor import Predictor

pytest.importorskip("onnxruntime")
SAMPLES = sorted(SEED_SAMPLES.glob("*.png"))


@pytest.fixture(scope="module")
def exported(random_model_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("onnx") / "sub" / "model.onnx"
    assert main.main(["export", str(random_model_dir), "-o", str(out)]) == 0
    return out


def real_inputs(small_dataset) -> np.ndarray:
    """64 stored test images (both layouts) and the 25 seed samples, as model inputs."""
    split = storage.load_split(small_dataset, "test")
    stored = np.asarray(split.images[:64], np.float32) / 255.0
    seeds = np.stack([np.asarray(Image.open(p), np.float32) / 255.0 for p in SAMPLES])
    return np.concatenate([stored, seeds])


def test_export_writes_model_and_sidecar(exported, random_model_dir):
    import onnx

    onnx.checker.check_model(str(exported))
    sidecar = json.loads(exported.with_name("model.onnx.json").read_text())
    config = json.loads((random_model_dir / "config.json").read_text())
    assert sidecar["model"] == config["model"]
    assert sidecar["input"]["shape"] == ["batch", 1, 28, 140]
    assert sidecar["check_max_abs_diff"] < 1e-4
    assert not list(exported.parent.glob(".*tmp"))  # no temp file left behind


def test_backends_agree_on_real_images(exported, random_model_dir, small_dataset):
    x = real_inputs(small_dataset)
    torch_logits = Predictor.load(random_model_dir).logits(x)
    onnx = Predictor.load(exported, backend="onnx")
    assert onnx.info["backend"] == "onnx" and onnx.info["arch"] == "multihead"
    for batch in (1, 7, 256):  # the batch axis is dynamic
        onnx_logits = onnx.logits(x, batch_size=batch)
        assert onnx_logits.shape == (len(x), 5, 10)
        assert np.abs(onnx_logits - torch_logits).max() < 1e-4


def test_cli_predict_with_onnx_backend_matches_torch(capsys, exported, random_model_dir):
    args = ["predict", "--format", "jsonl", *map(str, SAMPLES[:6])]
    torch_args = ["--model", str(random_model_dir), "--backend", "torch"]
    assert main.main([*args[:1], *torch_args, *args[1:]]) == 0
    torch_rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert main.main([*args[:1], "--model", str(exported), "--backend", "onnx", *args[1:]]) == 0
    onnx_rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["digits"] for r in onnx_rows] == [r["digits"] for r in torch_rows]
    for a, b in zip(onnx_rows, torch_rows, strict=True):
        np.testing.assert_allclose(a["digit_confidences"], b["digit_confidences"], atol=1e-5)


def test_onnx_file_with_torch_backend_is_a_clear_error(capsys, exported):
    code = main.main(["predict", "--backend", "torch", "--model", str(exported), str(SAMPLES[0])])
    assert_one_line_error(code, capsys.readouterr().err, "use --backend onnx")


def test_export_errors_are_one_line(capsys, tmp_path):
    code = main.main(["export", str(tmp_path / "nope"), "-o", str(tmp_path / "m.onnx")])
    assert_one_line_error(code, capsys.readouterr().err)
    code = main.main(["export", str(tmp_path / "nope"), "-o", str(tmp_path)])
    assert_one_line_error(code, capsys.readouterr().err, "is a folder")
    assert not (tmp_path / "m.onnx").exists()
