"""Shared fixtures: the real MNIST (cached once per machine), a small generated dataset, and
small models. Torch runs on one thread: the tests share 2 cores with whatever else runs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from digitseq.core import files

# Keep the MNIST cache across test sessions (it is verified byte for byte on every load), but
# put everything else a test writes under pytest's tmp folders.
os.environ.setdefault(
    "DIGITSEQ_MNIST_DIR",
    str(Path(os.environ.get("DIGITSEQ_HOME", Path.home() / ".cache" / "digitseq")) / "mnist"),
)
os.environ.setdefault("OMP_NUM_THREADS", "1")

REPO = Path(__file__).resolve().parents[1]
SEED_SAMPLES = REPO / "examples" / "seed-samples"


@pytest.fixture(autouse=True, scope="session")
def _one_thread():
    try:
        import torch
    except ImportError:  # pragma: no cover
        return
    torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory, monkeypatch):
    """Each test gets its own DIGITSEQ_HOME so nothing leaks into ~/.cache."""
    monkeypatch.setenv("DIGITSEQ_HOME", str(tmp_path_factory.mktemp("home")))


@pytest.fixture(scope="session")
def mnist_data():
    from digitseq.data import mnist

    return mnist.load()


@pytest.fixture(scope="session")
def small_dataset(tmp_path_factory, mnist_data) -> Path:
    """A mixed-layout dataset: train 2,000, val 500, test 1,000 sequences."""
    from digitseq.data import storage

    out = tmp_path_factory.mktemp("datasets") / "small"
    cfg = storage.GenerateConfig(
        layout="mixed", counts={"train": 2000, "val": 500, "test": 1000}, seed=7
    )
    return storage.generate_dataset(out, cfg, progress=False)


@pytest.fixture(scope="session")
def random_model_dir(tmp_path_factory) -> Path:
    """An untrained multihead model saved in the run-folder format (for mechanics, not accuracy)."""
    import torch

    from digitseq.models import checkpoint, registry

    folder = tmp_path_factory.mktemp("runs") / "random"
    folder.mkdir()
    torch.manual_seed(0)
    model = registry.build_model("multihead")
    checkpoint.save_weights(model, folder / "weights.pth")
    files.write_json(folder / "config.json", {"model": checkpoint.model_config("multihead", {})})
    return folder


@pytest.fixture(scope="session")
def random_ctc_dir(tmp_path_factory) -> Path:
    """An untrained small CTC line reader in the run-folder format (mechanics, not accuracy)."""
    import torch

    from digitseq.models import checkpoint, registry

    folder = tmp_path_factory.mktemp("runs") / "random-ctc"
    folder.mkdir()
    torch.manual_seed(0)
    hp = {"channels": [8, 16, 32], "hidden": 32, "context": 1}
    checkpoint.save_weights(registry.build_model("ctc", **hp), folder / "weights.pth")
    files.write_json(folder / "config.json", {"model": checkpoint.model_config("ctc", hp)})
    return folder


@pytest.fixture(scope="session")
def bundled_model_dir() -> Path:
    """The trained model committed under models/."""
    from digitseq.core.paths import bundled_model_dir

    path = bundled_model_dir()
    if not (path / "config.json").is_file():
        pytest.fail(f"the bundled model is missing at {path}")
    return path


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, mnist_data) -> Path:
    """A really trained (if weak) model: `digitseq train --preset tiny`, ~30 s on one thread.
    It reads seed-layout numbers at roughly 50-60% per digit."""
    from digitseq.apps.cli import main

    out = tmp_path_factory.mktemp("runs") / "tiny"
    assert main.main(["-q", "train", "--preset", "tiny", "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="session")
def ctc_reader(tmp_path_factory) -> Path:
    """A real CTC line reader: the bundled model once it is one, else ctc-tiny (~1 min)."""
    from digitseq.apps.cli import main
    from digitseq.core.paths import bundled_model_dir
    from digitseq.reading.predictor import Predictor

    bundled = bundled_model_dir()
    if (bundled / "config.json").is_file() and Predictor.load(bundled).kind == "ctc":
        return bundled
    out = tmp_path_factory.mktemp("runs") / "ctc-tiny"
    args = ["-q", "train", "--preset", "ctc-tiny", "--epochs", "4", "--steps-per-epoch", "150"]
    assert main.main([*args, "--out", str(out)]) == 0
    return out
