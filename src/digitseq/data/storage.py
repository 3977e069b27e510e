"""Dataset folders: write (streamed into memory-mapped .npy, atomic) and read (memmap, verified).

Layout of a dataset folder::

    manifest.json            config, seed, counts, MNIST checksums, SHA-256 of every file
    train/ val/ test/        one folder per split (absent when its count was 0)
        images.npy           uint8 (N, 28, 140), white ink on black
        labels.npy           uint8 (N, 5)
        sources.npy          int32 (N, 5): MNIST index of each digit (train file for
                             train/val, t10k file for test)
        layouts.npy          uint8 (N,): 0 = seed, 1 = natural
        png/NNNNNN.png, labels.csv   with --png only
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from digitseq.core.constants import IMG_H, IMG_W, N_DIGITS, SPLITS
from digitseq.core.errors import DigitseqError
from digitseq.core.files import file_hash
from digitseq.data import compose, mnist, target

FORMAT_VERSION = 1
CHUNK = 8192
ARRAYS = {  # name -> (dtype, trailing shape)
    "images": (np.uint8, (IMG_H, IMG_W)),
    "labels": (np.uint8, (N_DIGITS,)),
    "sources": (np.int32, (N_DIGITS,)),
    "layouts": (np.uint8, ()),
}


@dataclass(frozen=True)
class GenerateConfig:
    layout: str = "mixed"
    counts: dict[str, int] = field(
        default_factory=lambda: {"train": 100_000, "val": 10_000, "test": 10_000}
    )
    seed: int = 0
    leading_zero: bool = True
    png: bool = False
    natural: compose.NaturalParams = field(default_factory=compose.NaturalParams)

    def to_dict(self) -> dict:
        return {
            "layout": self.layout,
            "counts": dict(self.counts),
            "seed": self.seed,
            "leading_zero": self.leading_zero,
            "png": self.png,
            "natural": self.natural.to_dict(),
        }


def split_rng(seed: int, split: str) -> np.random.Generator:
    return np.random.default_rng([seed, SPLITS.index(split)])


def write_split(
    folder: Path, split: str, n: int, cfg: GenerateConfig, data: mnist.Mnist, progress: bool
) -> None:
    """Generate one split in chunks, each appended to preallocated .npy files.

    Plain sequential writes rather than a writable memmap: dirty mapped pages would count
    in the process's resident memory (~4 GB for 1,000,000 images); this way only one chunk
    (~32 MB) is held at a time.
    """
    from tqdm import tqdm

    folder.mkdir(parents=True)
    files = {name: open_npy(folder / f"{name}.npy", dtype, (n, *shape)) for name, (dtype, shape)
             in ARRAYS.items()}  # fmt: skip
    png = PngWriter(folder / "png") if cfg.png else None
    images, labels, offset = mnist.split_pool(data, split)
    index = compose.class_index(labels)
    rng = split_rng(cfg.seed, split)
    try:
        with tqdm(total=n, desc=f"{split:>5}", unit="seq", disable=not progress) as bar:
            for start in range(0, n, CHUNK):
                k = min(CHUNK, n - start)
                img, digits, idx, lay = compose.generate_fixed(
                    images, labels, k, rng, cfg.layout, cfg.leading_zero, cfg.natural, index
                )
                chunk = {"images": img, "labels": digits, "sources": idx + offset, "layouts": lay}
                for name, f in files.items():
                    f.write(np.ascontiguousarray(chunk[name], dtype=ARRAYS[name][0]).data)
                if png:
                    png.write(start, img, digits, lay)
                bar.update(k)
    finally:
        for f in files.values():
            f.close()
        if png:
            png.close()


def open_npy(path: Path, dtype, shape: tuple[int, ...]):
    """Create a .npy file of the final size and return it opened at its first data byte."""
    arr = np.lib.format.open_memmap(path, "w+", dtype, shape)  # writes the header, no data
    offset = arr.offset
    del arr
    f = open(path, "r+b")
    f.seek(offset)
    return f


class PngWriter:
    """NNNNNN.png per sample plus labels.csv (file,label,layout), for people and other tools."""

    def __init__(self, folder: Path):
        folder.mkdir()
        self.folder = folder
        self.csv = open(folder / "labels.csv", "w", newline="\n")
        self.csv.write("file,label,layout\n")
        self.names = {v: k for k, v in compose.LAYOUT_IDS.items()}

    def write(self, start: int, images: np.ndarray, digits: np.ndarray, layouts: np.ndarray):
        from PIL import Image

        for i in range(len(images)):
            name = f"{start + i:06d}.png"
            Image.fromarray(images[i]).save(self.folder / name, optimize=False)
            label = "".join(map(str, digits[i]))
            self.csv.write(f"{name},{label},{self.names[int(layouts[i])]}\n")

    def close(self) -> None:
        self.csv.close()


def generate_dataset(
    out_dir: Path,
    cfg: GenerateConfig,
    overwrite: bool = False,
    mnist_dir: Path | None = None,
    progress: bool = True,
) -> Path:
    """Build a whole dataset folder atomically: everything goes into a temp sibling first."""
    out_dir = Path(out_dir)
    check_config(cfg)
    if out_dir.exists() and not overwrite:
        raise DigitseqError(f"{out_dir} already exists (use --overwrite to replace it)")
    # --overwrite replaces a dataset, never a folder of someone's other files.
    target.check_replaceable(out_dir)
    target.remove_stale_temps(out_dir)  # left by killed runs
    sample = sum(np.dtype(d).itemsize * int(np.prod(shape)) for d, shape in ARRAYS.values())
    target.check_free_space(out_dir.parent, target.dataset_bytes(cfg.counts, sample, cfg.png))
    data = mnist.load(mnist_dir)
    try:
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        # A hidden sibling (same filesystem, so the final rename is atomic); mkdir, unlike
        # mkdtemp, honours the umask, so the dataset gets the usual permissions.
        tmp = out_dir.parent / f".{out_dir.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
        tmp.mkdir()
    except OSError as e:
        raise DigitseqError(f"cannot write to {out_dir.parent}: {e.strerror}") from None
    try:
        files = {}
        for split in SPLITS:
            n = cfg.counts.get(split, 0)
            if n > 0:
                write_split(tmp / split, split, n, cfg, data, progress)
        for path in sorted(tmp.rglob("*")):
            if path.is_file():
                files[path.relative_to(tmp).as_posix()] = file_hash(path)
        manifest = {
            "format": "digitseq-dataset",
            "version": FORMAT_VERSION,
            "config": cfg.to_dict(),
            "counts": {s: cfg.counts.get(s, 0) for s in SPLITS if cfg.counts.get(s, 0) > 0},
            "image_shape": [IMG_H, IMG_W],
            "mnist_sources": {s: list(v) for s, v in mnist.SPLIT_SOURCES.items()},
            "mnist_md5": mnist.checksums(),
            "files": files,
        }
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
        if out_dir.exists():
            old = out_dir.with_name(f".{out_dir.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(out_dir, old)
            os.replace(tmp, out_dir)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out_dir)
    except OSError as e:  # disk full, permissions, ... : one line, nothing half-written left
        shutil.rmtree(tmp, ignore_errors=True)
        raise DigitseqError(f"cannot write the dataset {out_dir}: {e}") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


def check_config(cfg: GenerateConfig) -> None:
    if cfg.layout not in ("seed", "natural", "mixed"):
        raise DigitseqError(f"unknown layout {cfg.layout!r} (choose seed, natural or mixed)")
    for split, n in cfg.counts.items():
        if split not in SPLITS:
            raise DigitseqError(f"unknown split {split!r} (choose from {', '.join(SPLITS)})")
        if not isinstance(n, int | np.integer) or n < 0:
            raise DigitseqError(f"--{split} must be a whole number >= 0, got {n!r}")
    if not any(cfg.counts.values()):
        raise DigitseqError("nothing to generate: every split count is 0")
    target.check_counts(cfg.counts)
    if not isinstance(cfg.seed, int | np.integer) or not 0 <= cfg.seed < 2**63:
        raise DigitseqError(f"--seed must be a whole number from 0 to 2**63-1, got {cfg.seed!r}")


# --- reading ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Split:
    """One stored split, memory-mapped."""

    images: np.ndarray  # (N, 28, 140) uint8
    labels: np.ndarray  # (N, 5) uint8
    sources: np.ndarray  # (N, 5) int32
    layouts: np.ndarray  # (N,) uint8
    name: str
    folder: Path

    def __len__(self) -> int:
        return len(self.labels)


def read_manifest(dataset: Path) -> dict:
    path = Path(dataset) / "manifest.json"
    if not path.is_file():
        raise DigitseqError(f"{dataset} is not a digitseq dataset (no manifest.json)")
    try:
        manifest = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise DigitseqError(f"{path} is not valid JSON") from None
    if manifest.get("format") != "digitseq-dataset":
        raise DigitseqError(f"{path} is not a digitseq dataset manifest")
    return manifest


def verify(dataset: Path) -> None:
    """Recompute the SHA-256 of every file listed in the manifest."""
    dataset = Path(dataset)
    manifest = read_manifest(dataset)
    for rel, digest in manifest.get("files", {}).items():
        path = dataset / rel
        if not path.is_file():
            raise DigitseqError(f"{path} is missing")
        if file_hash(path) != digest:
            raise DigitseqError(f"{path} fails its checksum: the dataset is corrupt")


def load_split(dataset: Path, split: str, verify_checksums: bool = False) -> Split:
    """Memory-map one split, checking shapes and dtypes against the manifest."""
    dataset = Path(dataset)
    manifest = read_manifest(dataset)
    n = manifest.get("counts", {}).get(split)
    if not n:
        raise DigitseqError(f"{dataset} has no {split!r} split")
    if verify_checksums:
        verify(dataset)
    arrays = {}
    for name, (dtype, shape) in ARRAYS.items():
        path = dataset / split / f"{name}.npy"
        try:
            arr = np.load(path, mmap_mode="r", allow_pickle=False)
        except FileNotFoundError:
            raise DigitseqError(f"{path} is missing") from None
        except ValueError as e:
            raise DigitseqError(f"{path} is not a valid .npy file: {e}") from None
        if arr.dtype != dtype or arr.shape != (n, *shape):
            raise DigitseqError(
                f"{path} has shape {arr.shape} {arr.dtype}, manifest expects {(n, *shape)} "
                f"{np.dtype(dtype)}"
            )
        arrays[name] = arr
    return Split(**arrays, name=split, folder=dataset / split)
