"""Dataset folders: no leakage between splits, labels, determinism, manifest checks, loading
refusals, atomic generation (also under SIGKILL), --overwrite and --png."""

from __future__ import annotations

import csv
import hashlib
import importlib.util
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


# --- numbers of any length (format version 2) ----------------------------------------------------

# SHA-256 of manifest.json (which holds the SHA-256 of every file) of a 5-digit seed-layout
# dataset, counts 50/20/30, seed 5, no PNG: recorded with the storage module of be73272, before
# datasets of any length. Pure numpy, so the same on every machine.
FROZEN_V1_MANIFEST_SHA256 = "cc09546046130643ba1eabeb9fca2dd52ad9ae91ea787d7be71ad75f46d6b11a"
OLD_STORAGE = "be73272:src/digitseq/data/storage.py"


def line_cfg(**kw) -> storage.GenerateConfig:
    kw.setdefault("counts", {"train": 40, "val": 0, "test": 80})
    kw.setdefault("layout", "mix3")
    kw.setdefault("lengths", (1, 12))
    return storage.GenerateConfig(**kw)


@pytest.fixture(scope="module")
def line_dataset(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("lines") / "ds"
    return storage.generate_dataset(out, line_cfg(png=True, seed=3), progress=False)


def test_a_dataset_of_any_length_round_trips(line_dataset, mnist_data):
    manifest = storage.read_manifest(line_dataset)
    assert manifest["version"] == storage.LINES_VERSION and manifest["lengths"] == [1, 12]
    assert manifest["image_shape"] == [28, 336] and manifest["config"]["lengths"] == [1, 12]
    for split, images, labels, (lo, hi) in (
        ("train", mnist_data.train_images, mnist_data.train_labels, (0, 50_000)),
        ("test", mnist_data.test_images, mnist_data.test_labels, (0, 10_000)),
    ):
        s = storage.load_split(line_dataset, split, verify_checksums=True)
        n = len(s)
        assert not s.fixed and s.images.shape == (n, 28, 336) and s.labels.shape == (n, 12)
        assert s.widths.dtype == np.int32 and s.lengths.dtype == np.uint8
        assert 1 <= s.lengths.min() and s.lengths.max() <= 12 and len(set(s.lengths)) > 5
        valid = np.arange(12) < s.lengths[:, None]
        assert (s.labels[~valid] == 255).all() and (s.sources[~valid] == -1).all()
        assert (s.labels[valid] < 10).all()
        # every digit from its split's own MNIST digits, and of the class its label says
        assert s.sources[valid].min() >= lo and s.sources[valid].max() < hi
        np.testing.assert_array_equal(labels[s.sources[valid]], s.labels[valid])
        # strings keep leading zeros and have the stored lengths
        strings = s.strings()
        assert [len(t) for t in strings] == s.lengths.tolist()
        assert strings == [
            "".join(map(str, row[:k])) for row, k in zip(s.labels, s.lengths, strict=True)
        ]
        if split == "test":
            assert any(t.startswith("0") and len(t) > 1 for t in strings)
        # nothing beyond each real width; seed rows are exact stitches of their sources
        beyond = np.arange(336)[None, None, :] >= s.widths[:, None, None]
        assert not (np.asarray(s.images) * beyond).any()
        assert set(s.layouts.tolist()) == {0, 1, 2}
        for i in np.flatnonzero(s.layouts == 0)[:10]:
            k = int(s.lengths[i])
            assert s.widths[i] == 28 * k
            np.testing.assert_array_equal(
                s.images[i, :, : 28 * k], stitch(images, [s.sources[i, :k]])[0]
            )
        assert s.strings(2, 5) == strings[2:5]


def test_png_export_of_any_length_is_at_the_real_width(line_dataset):
    s = storage.load_split(line_dataset, "test")
    folder = line_dataset / "test" / "png"
    with open(folder / "labels.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["label"] for r in rows] == s.strings()
    names = {v: k for k, v in compose.LAYOUT_IDS.items()}
    assert [r["layout"] for r in rows] == [names[int(x)] for x in s.layouts]
    for i in range(0, len(s), 7):
        png = np.asarray(Image.open(folder / rows[i]["file"]))
        assert png.shape == (28, int(s.widths[i]))
        np.testing.assert_array_equal(png, s.images[i, :, : s.widths[i]])


@pytest.mark.parametrize("name", ["widths.npy", "lengths.npy", "labels.npy", "images.npy"])
def test_verify_catches_a_flipped_byte_in_a_dataset_of_any_length(line_dataset, tmp_path, name):
    copy = Path(shutil.copytree(line_dataset, tmp_path / "copy"))
    storage.verify(copy)
    path = copy / "test" / name
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(DigitseqError, match="fails its checksum"):
        storage.verify(copy)
    with pytest.raises(DigitseqError, match="fails its checksum"):
        storage.load_split(copy, "test", verify_checksums=True)


def test_a_stored_array_of_the_wrong_width_is_refused(line_dataset, tmp_path):
    copy = Path(shutil.copytree(line_dataset, tmp_path / "copy"))
    np.save(copy / "test" / "widths.npy", np.zeros(3, np.int32))
    with pytest.raises(DigitseqError, match="widths.npy has shape"):
        storage.load_split(copy, "test")


def test_touching_at_a_fixed_length_is_a_dataset_of_any_length(tmp_path):
    cfg = line_cfg(layout="touching", lengths=(5, 5), counts={"test": 60})
    s = storage.load_split(storage.generate_dataset(tmp_path / "t", cfg, progress=False), "test")
    assert not s.fixed and (s.lengths == 5).all() and s.widths.min() < s.widths.max()
    assert s.images.shape[2] == cfg.width >= s.widths.max()


def test_spaced_and_mix4_numbers_fit_the_width_the_manifest_promises(tmp_path):
    """The widest spaced number (12 wide digits, the widest gaps) fits ``cfg.width``; every
    layout of mix4 is stored and named in the layout counts."""
    for layout in ("spaced", "mix4"):
        cfg = line_cfg(layout=layout, lengths=(12, 12), counts={"test": 200})
        out = storage.generate_dataset(tmp_path / layout, cfg, progress=False)
        s = storage.load_split(out, "test", verify_checksums=True)
        assert s.images.shape[2] == cfg.width >= s.widths.max() and not s.fixed
        expected = {3} if layout == "spaced" else {0, 1, 2, 3}
        assert set(np.unique(s.layouts)) == expected
        assert all(len(label) == 12 for label in s.strings())


def test_five_digit_datasets_are_unchanged_version_1(tmp_path):
    cfg = small_cfg(layout="seed", counts={"train": 50, "val": 20, "test": 30}, seed=5)
    out = storage.generate_dataset(tmp_path / "d", cfg, progress=False)
    manifest = (out / "manifest.json").read_bytes()
    assert hashlib.sha256(manifest).hexdigest() == FROZEN_V1_MANIFEST_SHA256
    s = storage.load_split(out, "test")
    assert s.fixed and (s.widths == 140).all() and (s.lengths == 5).all()
    assert s.strings() == ["".join(map(str, row)) for row in s.labels]
    assert not (out / "test" / "widths.npy").exists()


@pytest.mark.parametrize("layout", ["seed", "mixed"])
def test_five_digit_datasets_are_byte_identical_to_the_old_writer(tmp_path, layout):
    """The storage module from before datasets of any length, loaded from git history."""
    shown = subprocess.run(
        ["git", "-C", str(Path(__file__).resolve().parents[1]), "show", OLD_STORAGE],
        capture_output=True, text=True,
    )  # fmt: skip
    if shown.returncode:
        pytest.skip(f"{OLD_STORAGE} is not in this checkout's git history")
    path = tmp_path / "old_storage.py"
    path.write_text(shown.stdout)
    spec = importlib.util.spec_from_file_location("old_storage", path)
    old = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = old
    spec.loader.exec_module(old)
    counts = {"train": 30, "val": 10, "test": 20}
    a = old.generate_dataset(tmp_path / "old", old.GenerateConfig(layout=layout, counts=counts,
                             seed=2, png=True), progress=False)  # fmt: skip
    b = storage.generate_dataset(tmp_path / "new", storage.GenerateConfig(layout=layout,
                                 counts=counts, seed=2, png=True), progress=False)  # fmt: skip
    assert (a / "manifest.json").read_bytes() == (b / "manifest.json").read_bytes()
    for rel in storage.read_manifest(a)["files"]:
        assert (a / rel).read_bytes() == (b / rel).read_bytes()


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"lengths": (0, 3)}, "lengths must be"),
        ({"lengths": (5, 2)}, "lengths must be"),
        ({"lengths": (1, 65)}, "lengths must be"),
        ({"layout": "cursive"}, "unknown layout"),
    ],
)
def test_bad_lengths_are_refused_before_any_work(tmp_path, kw, message):
    with pytest.raises(DigitseqError, match=message):
        storage.generate_dataset(tmp_path / "d", line_cfg(**kw), progress=False)
    assert list(tmp_path.iterdir()) == []


def test_free_space_check_counts_the_wider_images(tmp_path, monkeypatch):
    from digitseq.data import target

    needed = []
    monkeypatch.setattr(target, "check_free_space", lambda folder, n: needed.append(n))
    monkeypatch.setattr(storage.mnist, "load", lambda *a: (_ for _ in ()).throw(SystemExit))
    for cfg in (small_cfg(counts={"test": 100_000}), line_cfg(counts={"test": 100_000})):
        with pytest.raises(SystemExit):
            storage.generate_dataset(tmp_path / "d", cfg, progress=False)
    five, lines = needed
    assert lines > 2.3 * five  # 28x336 images + widths + 12 labels, lengths, 12 sources
