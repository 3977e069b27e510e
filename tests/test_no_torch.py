"""Reading needs no torch: ``digitseq predict`` with the bundled model's ``model.onnx`` imports
neither torch nor any web or plotting framework, and where torch is needed but missing (train,
export, ``--backend torch``, a model without ``model.onnx``) the error is one line naming the
``train`` extra. (A real install without torch: ``benchmarks/bench_cold_start.py``.)"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import SEED_SAMPLES
from helpers import assert_one_line_error

from digitseq.core.paths import BUNDLED_MODEL_NAME, bundled_model_dir

IMAGE = SEED_SAMPLES / "101.png"
# what `digitseq predict` must not import: training and the other apps' frameworks
NOT_FOR_READING = ("torch", "matplotlib", "onnxscript", "fastapi", "uvicorn", "streamlit", "ray")
# `digitseq ...` in a fresh interpreter where `import torch` fails as if it were not installed
WITHOUT_TORCH = """
import sys

class NoTorch:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] == "torch":
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)

sys.meta_path.insert(0, NoTorch())
from digitseq.apps.cli.main import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory) -> Path:
    """A models/ folder whose bundled model has its model.onnx: the repository's when it ships
    one, else a copy exported here (needs torch, in this test process only)."""
    if (bundled_model_dir() / "model.onnx").is_file():
        return bundled_model_dir().parent
    from digitseq.models.onnx_export import export_onnx

    folder = tmp_path_factory.mktemp("models") / BUNDLED_MODEL_NAME
    shutil.copytree(bundled_model_dir(), folder, ignore=shutil.ignore_patterns("*.pth"))
    export_onnx(bundled_model_dir(), folder / "model.onnx")
    return folder.parent


def run(argv: list[str], models_dir: Path, *python_args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "DIGITSEQ_MODELS_DIR": str(models_dir), "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, *python_args, *argv], capture_output=True, text=True, env=env, timeout=120
    )


def imported(importtime_stderr: str) -> set[str]:
    """Top-level modules named in ``python -X importtime`` output."""
    names = set()
    for line in importtime_stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            names.add(line.rsplit("|", 1)[1].strip().partition(".")[0])
    return names


def test_predict_with_the_bundled_onnx_model_imports_no_torch(models_dir):
    done = run(["-m", "digitseq", "predict", str(IMAGE)], models_dir, "-X", "importtime")
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split("\t")[1] == "49512"  # examples/seed-samples/labels.csv
    modules = imported(done.stderr)
    assert {"digitseq", "onnxruntime", "numpy", "PIL"} <= modules  # the parser works
    assert not modules & set(NOT_FOR_READING), sorted(modules & set(NOT_FOR_READING))


def test_predict_reads_with_torch_not_installed(models_dir):
    done = run(["-c", WITHOUT_TORCH, "predict", "--format", "jsonl", str(IMAGE)], models_dir)
    assert done.returncode == 0, done.stderr
    assert '"digits": "49512"' in done.stdout


@pytest.mark.parametrize(
    "argv, what",
    [
        (["train", "--preset", "tiny"], "digitseq train needs torch"),
        (["export", "-o", "OUT"], "digitseq export needs torch"),
        (["predict", "--backend", "torch", str(IMAGE)], "--backend torch needs torch"),
        (["predict", "--model", "WEIGHTS_ONLY", str(IMAGE)], "(no model.onnx) needs torch"),
    ],
)
def test_what_needs_torch_says_which_extra_in_one_line(models_dir, tmp_path, argv, what):
    weights_only = tmp_path / "weights-only"
    shutil.copytree(bundled_model_dir(), weights_only, ignore=shutil.ignore_patterns("*.onnx*"))
    places = {"WEIGHTS_ONLY": str(weights_only), "OUT": str(tmp_path / "m.onnx")}
    argv = [places.get(a, a) for a in argv]
    done = run(["-c", WITHOUT_TORCH, *argv], models_dir)
    assert_one_line_error(done.returncode, done.stderr, what, "pip install 'digitseq[train]'")
    assert not (tmp_path / "m.onnx").exists()
