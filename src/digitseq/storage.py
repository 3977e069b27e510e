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

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from digitseq import compose, mnist
from digitseq.config import IMG_H, IMG_W, N_DIGITS, SPLITS, DigitseqError

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


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def split_rng(seed: int, split: str) -> np.random.Generator:
    return np.random.default_rng([seed, SPLITS.index(split)])


def write_split(
    folder: Path, split: str, n: int, cfg: GenerateConfig, data: mnist.Mnist, progress: bool
) -> None:
    """Generate one split in chunks straight into memory-mapped .npy files."""
    from tqdm import tqdm

    folder.mkdir(parents=True)
    out = {
        name: np.lib.format.open_memmap(folder / f"{name}.npy", "w+", dtype, (n, *shape))
        for name, (dtype, shape) in ARRAYS.items()
    }
    images, labels, offset = mnist.split_pool(data, split)
    index = compose.class_index(labels)
    rng = split_rng(cfg.seed, split)
    with tqdm(total=n, desc=f"{split:>5}", unit="seq", disable=not progress) as bar:
        for start in range(0, n, CHUNK):
            k = min(CHUNK, n - start)
            img, digits, idx, lay = compose.generate(
                images, labels, k, rng, cfg.layout, cfg.leading_zero, cfg.natural, index
            )
            sl = slice(start, start + k)
            out["images"][sl] = img
            out["labels"][sl] = digits
            out["sources"][sl] = idx + offset
            out["layouts"][sl] = lay
            bar.update(k)
    for arr in out.values():
        arr.flush()
    del out
    if cfg.png:
        write_pngs(folder)


def write_pngs(folder: Path) -> None:
    """NNNNNN.png per sample plus labels.csv (file,label,layout), for people and other tools."""
    from PIL import Image

    images = np.load(folder / "images.npy", mmap_mode="r")
    labels = np.load(folder / "labels.npy")
    layouts = np.load(folder / "layouts.npy")
    png = folder / "png"
    png.mkdir()
    names = {v: k for k, v in compose.LAYOUT_IDS.items()}
    rows = ["file,label,layout"]
    for i in range(len(images)):
        name = f"{i:06d}.png"
        Image.fromarray(np.asarray(images[i])).save(png / name, optimize=False)
        rows.append(f"{name},{''.join(map(str, labels[i]))},{names[int(layouts[i])]}")
    (png / "labels.csv").write_text("\n".join(rows) + "\n")


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
    if out_dir.exists() and not out_dir.is_dir():
        raise DigitseqError(f"{out_dir} exists and is not a folder")
    data = mnist.load(mnist_dir)
    try:
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".tmp", dir=out_dir.parent))
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
                files[path.relative_to(tmp).as_posix()] = sha256_file(path)
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
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


def check_config(cfg: GenerateConfig) -> None:
    if cfg.layout not in ("seed", "natural", "mixed"):
        raise DigitseqError(f"unknown layout {cfg.layout!r} (choose seed, natural or mixed)")
    for split, n in cfg.counts.items():
        if n < 0:
            raise DigitseqError(f"--{split} must be >= 0, got {n}")
    if not any(cfg.counts.values()):
        raise DigitseqError("nothing to generate: every split count is 0")


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
    for rel, digest in manifest["files"].items():
        path = dataset / rel
        if not path.is_file():
            raise DigitseqError(f"{path} is missing")
        if sha256_file(path) != digest:
            raise DigitseqError(f"{path} fails its checksum: the dataset is corrupt")


def load_split(dataset: Path, split: str, verify_checksums: bool = False) -> Split:
    """Memory-map one split, checking shapes and dtypes against the manifest."""
    dataset = Path(dataset)
    manifest = read_manifest(dataset)
    n = manifest["counts"].get(split)
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
