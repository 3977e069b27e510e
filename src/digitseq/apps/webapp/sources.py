"""Where the app's ready-made images come from: test numbers (the stored test split, or numbers
composed from MNIST test digits) and the original project's example uploads."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import streamlit as st

from digitseq.core import paths
from digitseq.core.errors import DigitseqError

SAMPLES_DIR = Path(__file__).resolve().parents[4] / "examples" / "seed-samples"
TEST_POOL_SIZE = 300  # numbers composed on the fly when there is no stored dataset
TEST_LENGTHS = (1, 8)  # lengths of the test numbers offered to a reader of any length


@st.cache_resource(show_spinner="Preparing test numbers…", max_entries=2)
def test_pool(only: tuple[int, int] | None) -> tuple[list[np.ndarray], list[str], str]:
    """(images (28, W) uint8, their numbers, where they come from): numbers of TEST_LENGTHS
    digits, or of the ``only`` lengths a model reads (the stored test split, when there is one)."""
    from digitseq.data import compose, mnist, storage

    if only is not None:
        dataset = paths.default_dataset_dir()
        if (dataset / "manifest.json").is_file():
            try:
                split = storage.load_split(dataset, "test")
                labels = ["".join(map(str, row)) for row in split.labels]
                return list(split.images), labels, f"the test split of {dataset}"
            except DigitseqError:
                pass  # unusable dataset: compose numbers instead
    images, labels, _ = mnist.split_pool(mnist.load(), "test")
    lengths = only or TEST_LENGTHS
    lines = compose.generate(images, labels, TEST_POOL_SIZE, np.random.default_rng(0),
                             lengths=lengths)  # fmt: skip
    pictures = [img[:, :w] for img, w in zip(lines.images, lines.widths, strict=True)]
    lo, hi = lengths
    what = f"{lo}-{hi}-digit" if lo != hi else f"{lo}-digit"
    return pictures, lines.strings, f"{TEST_POOL_SIZE} {what} numbers from MNIST test digits"


@st.cache_data
def sample_labels() -> dict[str, str]:
    """The example images' file names -> their true numbers."""
    path = SAMPLES_DIR / "labels.csv"
    if not path.is_file():
        return {}
    with path.open(newline="") as f:
        rows = {r["file"]: r["label"].zfill(5) for r in csv.DictReader(f)}
    return dict(sorted(rows.items(), key=lambda kv: (len(kv[0]), kv[0])))
