"""Where data, runs and models live: ``DIGITSEQ_HOME`` (default ~/.cache/digitseq) and overrides."""

from __future__ import annotations

import os
from pathlib import Path

BUNDLED_MODEL_NAME = "digitseq-ctc"


def home() -> Path:
    """Root folder for caches, datasets and runs (``DIGITSEQ_HOME``, default ~/.cache/digitseq)."""
    return Path(os.environ.get("DIGITSEQ_HOME", Path.home() / ".cache" / "digitseq")).expanduser()


def mnist_dir() -> Path:
    """Where the four MNIST IDX files are cached (``DIGITSEQ_MNIST_DIR`` overrides)."""
    env = os.environ.get("DIGITSEQ_MNIST_DIR")
    return Path(env).expanduser() if env else home() / "mnist"


def default_dataset_dir() -> Path:
    return home() / "datasets" / "default"


def runs_dir() -> Path:
    return home() / "runs"


def bundled_models_dir() -> Path:
    """The repository's ``models/`` folder (``DIGITSEQ_MODELS_DIR`` overrides)."""
    env = os.environ.get("DIGITSEQ_MODELS_DIR")
    if env:
        return Path(env).expanduser()
    return Path(__file__).resolve().parents[3] / "models"


def bundled_model_dir() -> Path:
    return bundled_models_dir() / BUNDLED_MODEL_NAME
