"""Dataset folders: no leakage between splits, labels, determinism, manifest checks, loading
refusals, atomic generation (also under SIGKILL), --overwrite and --png."""

from __future__ import annotations

import csv
import json
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from digitseq.core.errors import DigitseqError
from digitseq.data import compose, storage


def small_cfg(**kw) -> storage.GenerateConfig:
    kw.setdefault("counts", {"train": 300, "val": 100, "test": 100})
    return storage.GenerateConfig(**kw)


def stitch(images: np.ndarray, sources: np.ndarray) -> np.ndarray:
    return np.stack([np.hstack([images[j] for j in row]) for row in sources])


@pytest.fixture
def dataset_copy(small_dataset, tmp_path) -> Path:
    """A private copy of the session dataset, for tests that damage it."""
    return Path(shutil.copytree(small_dataset, tmp_path / "copy"))


# --- what is in a split ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("split", "which", "lo", "hi"),
    [("train", "train", 0, 50_000), ("val", "train", 50_000, 60_000), ("test", "test", 0, 10_000)],
)
def test_splits_draw_only_their_own_mnist_digits(small_dataset, mnist_data, split, which, lo, hi):
    s = storage.load_split(small_dataset, split)
    assert s.sources.min() >= lo and s.sources.max() < hi
    images = getattr(mnist_data, f"{which}_images")
    labels = getattr(mnist_data, f"{which}_labels")
    np.testing.assert_array_equal(s.labels, labels[s.sources])  # labels = the real MNIST labels
    # The seed-layout samples are exactly those MNIST digits, so `sources` tells the truth.
    seed = np.flatnonzero(s.layouts == compose.LAYOUT_IDS["seed"])
    assert len(seed) > 0.4 * len(s)
    np.testing.assert_array_equal(s.images[seed], stitch(images, s.sources[seed]))


def test_test_split_never_uses_training_digits(small_dataset, mnist_data):
    """The same indices in the MNIST training file would give other images and labels."""
    s = storage.load_split(small_dataset, "test")
    seed = np.flatnonzero(s.layouts == 0)
    wrong = stitch(mnist_data.train_images, s.sources[seed])
    assert (wrong != s.images[seed]).any(axis=(1, 2)).all()


def test_a_split_holds_what_the_manifest_says(small_dataset):
    manifest = storage.read_manifest(small_dataset)
    assert manifest["counts"] == {"train": 2000, "val": 500, "test": 1000}
    assert manifest["config"]["seed"] == 7 and manifest["config"]["layout"] == "mixed"
    assert manifest["mnist_md5"]["t10k-images-idx3-ubyte"] == "2646ac647ad5339dbf082846283269ea"
    assert "natural" in manifest["config"]  # the parameter ranges, for reproduction
    for split, n in manifest["counts"].items():
        s = storage.load_split(small_dataset, split)
        assert len(s) == n and s.images.shape == (n, 28, 140) and s.images.dtype == np.uint8
        assert isinstance(s.images, np.memmap)  # not read into memory
        assert s.labels.shape == (n, 5) and s.labels.dtype == np.uint8 and s.labels.max() <= 9
        assert 0.45 < s.layouts.mean() < 0.55  # mixed: about half natural
        assert (s.labels[:, 0] == 0).any()  # leading zeros allowed by default
        loaded = np.load(small_dataset / split / "images.npy", mmap_mode="r")
        np.testing.assert_array_equal(loaded[:5], s.images[:5])


def test_no_leading_zero_and_a_zero_count_skips_the_split(tmp_path):
    out = storage.generate_dataset(
        tmp_path / "d",
        small_cfg(layout="seed", leading_zero=False, counts={"train": 500, "val": 0, "test": 50}),
        progress=False,
    )
    s = storage.load_split(out, "train")
    assert s.labels[:, 0].min() >= 1 and (s.labels[:, 1:] == 0).any()
    assert not (out / "val").exists()
    with pytest.raises(DigitseqError, match="no 'val' split"):
        storage.load_split(out, "val")


# --- determinism and the manifest --------------------------------------------------------------


def test_same_options_and_seed_give_byte_identical_datasets(tmp_path):
    a = storage.generate_dataset(tmp_path / "a", small_cfg(), progress=False)
    b = storage.generate_dataset(tmp_path / "b", small_cfg(), progress=False)
    c = storage.generate_dataset(tmp_path / "c", small_cfg(seed=1), progress=False)
    fa, fb, fc = (storage.read_manifest(x)["files"] for x in (a, b, c))
    assert fa == fb
    assert (a / "manifest.json").read_bytes() == (b / "manifest.json").read_bytes()
    for rel in fa:
        assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel
    assert fa["train/images.npy"] != fc["train/images.npy"]


def test_chunked_writes_put_every_sample_in_its_place(tmp_path, monkeypatch, mnist_data):
    """Many small chunks (the last one partial): each row still matches its own sources."""
    monkeypatch.setattr(storage, "CHUNK", 64)
    cfg = small_cfg(layout="seed", counts={"train": 0, "val": 0, "test": 300})
    s = storage.load_split(storage.generate_dataset(tmp_path / "d", cfg, progress=False), "test")
    np.testing.assert_array_equal(s.images, stitch(mnist_data.test_images, s.sources))
    np.testing.assert_array_equal(s.labels, mnist_data.test_labels[s.sources])
    assert len(np.unique(s.sources[:, 0])) > 250  # not one chunk repeated


def test_verify_detects_a_corrupted_file(dataset_copy):
    storage.verify(dataset_copy)
    path = dataset_copy / "val" / "images.npy"
    data = bytearray(path.read_bytes())
    data[-1000] ^= 0x01  # one bit in one pixel
    path.write_bytes(bytes(data))
    with pytest.raises(DigitseqError, match="val/images.npy fails its checksum"):
        storage.verify(dataset_copy)
    with pytest.raises(DigitseqError, match="fails its checksum"):
        storage.load_split(dataset_copy, "train", verify_checksums=True)
    storage.load_split(dataset_copy, "val")  # shape and dtype still fine: no check requested


def test_verify_detects_a_missing_file(dataset_copy):
    (dataset_copy / "test" / "sources.npy").unlink()
    with pytest.raises(DigitseqError, match="missing"):
        storage.verify(dataset_copy)
    with pytest.raises(DigitseqError, match="missing"):
        storage.load_split(dataset_copy, "test")


@pytest.mark.parametrize(
    ("name", "array", "message"),
    [
        ("labels", np.zeros((2000, 5), np.int64), "manifest expects"),  # wrong dtype
        ("images", np.zeros((1999, 28, 140), np.uint8), "manifest expects"),  # wrong count
        ("images", np.zeros((2000, 28, 28), np.uint8), "manifest expects"),  # wrong shape
        ("layouts", np.array([{"a": 1}] * 2000, dtype=object), "not a valid .npy"),  # pickle
    ],
)
def test_load_split_refuses_mismatched_arrays(dataset_copy, name, array, message):
    np.save(dataset_copy / "train" / f"{name}.npy", array, allow_pickle=True)
    with pytest.raises(DigitseqError, match=message):
        storage.load_split(dataset_copy, "train")


def test_load_split_refuses_what_is_not_a_dataset(tmp_path, dataset_copy):
    with pytest.raises(DigitseqError, match="no manifest.json"):
        storage.load_split(tmp_path, "train")
    (dataset_copy / "manifest.json").write_text("{not json")
    with pytest.raises(DigitseqError, match="not valid JSON"):
        storage.load_split(dataset_copy, "train")
    (dataset_copy / "manifest.json").write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(DigitseqError, match="not a digitseq dataset"):
        storage.load_split(dataset_copy, "train")


# --- atomic generation -------------------------------------------------------------------------


@pytest.mark.parametrize("error", [KeyboardInterrupt, RuntimeError, OSError])
def test_an_interrupted_generation_leaves_nothing(tmp_path, monkeypatch, error):
    real = compose.generate_fixed
    calls = []

    def fails_on_third_chunk(*args, **kw):
        calls.append(1)
        if len(calls) == 3:
            raise error(28, "No space left on device") if error is OSError else error()
        return real(*args, **kw)

    monkeypatch.setattr(storage, "CHUNK", 100)
    monkeypatch.setattr(compose, "generate_fixed", fails_on_third_chunk)
    parent = tmp_path / "datasets"
    expected = DigitseqError if error is OSError else error
    with pytest.raises(expected):
        storage.generate_dataset(parent / "d", small_cfg(), progress=False)
    assert len(calls) == 3
    assert list(parent.iterdir()) == []


KILLED = textwrap.dedent(
    """
    import sys
    from digitseq.data import storage
    cfg = storage.GenerateConfig(layout="seed", counts={"train": 1_000_000, "val": 0, "test": 0})
    storage.generate_dataset(sys.argv[1], cfg, progress=False)
    """
)


def test_a_killed_generation_leaves_no_dataset_that_looks_complete(tmp_path):
    parent = tmp_path / "datasets"
    parent.mkdir()
    out = parent / "big"
    proc = subprocess.Popen([sys.executable, "-c", KILLED, str(out)])
    try:
        deadline = time.monotonic() + 30
        while not list(parent.glob(".big.*/train/images.npy")):  # wait until it is writing
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        time.sleep(0.3)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert not out.exists()
    for leftover in parent.iterdir():  # only a hidden temp folder, which no loader accepts
        assert leftover.name.startswith(".big.") and leftover.name.endswith(".tmp")
        assert not (leftover / "manifest.json").exists()
        with pytest.raises(DigitseqError):
            storage.load_split(leftover, "train")


# --- overwrite, bad config, png ----------------------------------------------------------------


def test_existing_folder_needs_overwrite(tmp_path):
    out = storage.generate_dataset(tmp_path / "d", small_cfg(seed=1), progress=False)
    before = (out / "manifest.json").read_bytes()
    with pytest.raises(DigitseqError, match="--overwrite"):
        storage.generate_dataset(out, small_cfg(seed=2), progress=False)
    assert (out / "manifest.json").read_bytes() == before
    storage.generate_dataset(out, small_cfg(seed=2), overwrite=True, progress=False)
    assert storage.read_manifest(out)["config"]["seed"] == 2
    storage.verify(out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d"]  # no .old or temp leftovers


def test_overwrite_never_replaces_a_folder_that_is_not_a_dataset(tmp_path):
    precious = tmp_path / "thesis"
    precious.mkdir()
    (precious / "chapter1.tex").write_text("years of work")
    with pytest.raises(DigitseqError, match="not a digitseq dataset"):
        storage.generate_dataset(precious, small_cfg(), overwrite=True, progress=False)
    assert (precious / "chapter1.tex").read_text() == "years of work"
    empty = tmp_path / "empty"
    empty.mkdir()
    storage.generate_dataset(empty, small_cfg(), overwrite=True, progress=False)
    storage.verify(empty)


@pytest.mark.parametrize(
    ("cfg", "message"),
    [
        (small_cfg(layout="cursive"), "unknown layout"),
        (small_cfg(counts={"train": -5}), "must be a whole number >= 0"),
        (small_cfg(counts={"train": 0, "val": 0, "test": 0}), "nothing to generate"),
        (small_cfg(counts={"trian": 10}), "unknown split"),
    ],
)
def test_bad_config_is_refused_before_any_work(tmp_path, cfg, message):
    with pytest.raises(DigitseqError, match=message):
        storage.generate_dataset(tmp_path / "d", cfg, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_png_export_matches_the_arrays(tmp_path):
    out = storage.generate_dataset(
        tmp_path / "d", small_cfg(png=True, counts={"train": 0, "val": 40, "test": 30}),
        progress=False,
    )  # fmt: skip
    for split, n in (("val", 40), ("test", 30)):
        s = storage.load_split(out, split, verify_checksums=True)  # PNGs are in the manifest too
        folder = out / split / "png"
        assert sorted(p.name for p in folder.glob("*.png")) == [f"{i:06d}.png" for i in range(n)]
        with open(folder / "labels.csv", newline="") as f:
            rows = list(csv.DictReader(f))
        assert [r["file"] for r in rows] == [f"{i:06d}.png" for i in range(n)]
        assert [r["label"] for r in rows] == ["".join(map(str, lab)) for lab in s.labels]
        assert all(len(r["label"]) == 5 for r in rows)  # leading zeros kept
        names = {v: k for k, v in compose.LAYOUT_IDS.items()}
        assert [r["layout"] for r in rows] == [names[int(x)] for x in s.layouts]
        for i in (0, n // 2, n - 1):
            png = np.asarray(Image.open(folder / f"{i:06d}.png"))
            assert png.dtype == np.uint8 and png.shape == (28, 140)
            np.testing.assert_array_equal(png, s.images[i])


def test_split_dataset_serves_stored_numbers(small_dataset):
    import torch
    from torch.utils.data import DataLoader

    from digitseq.data import loaders

    split = storage.load_split(small_dataset, "test")
    ds = loaders.SplitDataset(split)
    assert len(ds) == len(split)
    img, y = ds[3]
    assert img.shape == (1, 28, 140) and img.dtype == torch.float32
    assert float(img.max()) <= 1.0 and torch.equal(
        y, torch.from_numpy(split.labels[3].astype("int64"))
    )
    xb, yb = next(iter(DataLoader(ds, batch_size=16)))
    assert xb.shape == (16, 1, 28, 140) and yb.shape == (16, 5)
    assert np.array_equal((xb[0, 0] * 255).round().byte().numpy(), split.images[0])
