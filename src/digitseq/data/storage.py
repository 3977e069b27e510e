"""Dataset folders: write (streamed into memory-mapped .npy, atomic) and read (memmap, verified).

Two formats. Version 1, 5-digit numbers (``--lengths 5``, layout seed / natural / mixed: the
default, byte for byte the datasets digitseq always wrote)::

    manifest.json            config, seed, counts, MNIST checksums, SHA-256 of every file
    train/ val/ test/        one folder per split (absent when its count was 0)
        images.npy           uint8 (N, 28, 140), white ink on black
        labels.npy           uint8 (N, 5)
        sources.npy          int32 (N, 5): MNIST index of each digit (train file for
                             train/val, t10k file for test)
        layouts.npy          uint8 (N,): 0 = seed, 1 = natural
        png/NNNNNN.png, labels.csv   with --png only

Version 2, numbers of any length (``--lengths 1-12``, or the touching, spaced, mix3, mix4 layouts)::

        images.npy           uint8 (N, 28, W): W is one width for the whole dataset (the widest
                             number its lengths and layouts can make), padded on the right with 0
        widths.npy           int32 (N,): each number's real width (columns >= it are 0)
        labels.npy           uint8 (N, Lmax): the digits, 255 beyond each number's length
        lengths.npy          uint8 (N,): digits per number (so leading zeros are kept)
        sources.npy          int32 (N, Lmax): MNIST index of each digit, -1 beyond the length
        layouts.npy          uint8 (N,): 0 = seed, 1 = natural, 2 = touching, 3 = spaced
        png/NNNNNN.png, labels.csv   each PNG at its real width; labels.csv: the digit strings
"""

from __future__ import annotations

import json
import math
import os
import re
import secrets
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from digitseq.core.constants import DIGIT_SIZE, IMG_H, IMG_W, LAYOUTS, N_DIGITS, SPLITS
from digitseq.core.errors import DigitseqError
from digitseq.core.files import file_hash
from digitseq.data import compose, mnist, numbers, target
from digitseq.data.layouts import LAYOUT_IDS, LAYOUT_MIXES, NaturalParams, TouchingParams

FORMAT_VERSION = 1  # 5-digit numbers, 28x140 (what every fixed-length reader takes)
LINES_VERSION = 2  # numbers of any length, padded to one width per dataset
VERSIONS = (FORMAT_VERSION, LINES_VERSION)
CHUNK = 8192
ARRAYS = {  # version 1: name -> (dtype, trailing shape)
    "images": (np.uint8, (IMG_H, IMG_W)),
    "labels": (np.uint8, (N_DIGITS,)),
    "sources": (np.int32, (N_DIGITS,)),
    "layouts": (np.uint8, ()),
}
FIXED_LAYOUTS = ("seed", "natural", "mixed")  # the layouts of version-1 datasets
MAX_LENGTH = 64  # longest number a dataset may hold (a 28 x 1792 image)


def line_arrays(width: int, max_length: int) -> dict[str, tuple]:
    """Version 2: name -> (dtype, trailing shape)."""
    return {
        "images": (np.uint8, (IMG_H, width)),
        "widths": (np.int32, ()),
        "labels": (np.uint8, (max_length,)),
        "lengths": (np.uint8, ()),
        "sources": (np.int32, (max_length,)),
        "layouts": (np.uint8, ()),
    }


def parse_lengths(text: str) -> tuple[int, int]:
    """'5' -> (5, 5); '1-12' -> (1, 12): the lengths a dataset's numbers are drawn from."""
    m = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", str(text))
    if not m:
        raise DigitseqError(f"--lengths must be N or LO-HI (e.g. 5 or 1-12), got {text!r}")
    lo, hi = int(m[1]), int(m[2] or m[1])
    if not 1 <= lo <= hi <= MAX_LENGTH:
        raise DigitseqError(f"--lengths must satisfy 1 <= LO <= HI <= {MAX_LENGTH}, got {text!r}")
    return lo, hi


@dataclass(frozen=True)
class GenerateConfig:
    layout: str = "mixed"
    counts: dict[str, int] = field(
        default_factory=lambda: {"train": 100_000, "val": 10_000, "test": 10_000}
    )
    seed: int = 0
    leading_zero: bool = True
    png: bool = False
    natural: NaturalParams = field(default_factory=NaturalParams)
    lengths: tuple[int, int] = (N_DIGITS, N_DIGITS)  # each number's length, uniform in [lo, hi]
    touching: TouchingParams = field(default_factory=TouchingParams)

    @property
    def fixed(self) -> bool:
        """True for today's 5-digit datasets (format version 1, byte for byte as before)."""
        return tuple(self.lengths) == (N_DIGITS, N_DIGITS) and self.layout in FIXED_LAYOUTS

    @property
    def width(self) -> int:
        """The image width of every number in the dataset: the widest its lengths and layouts
        can make (seed/natural: 28 per digit; touching: its pitch per digit plus the margins;
        spaced: a whole patch of ink per digit plus the widest gaps and the margins)."""
        hi = int(self.lengths[1])
        width = DIGIT_SIZE * hi
        t = self.touching
        layouts = LAYOUT_MIXES.get(self.layout, {self.layout: 1.0})  # the ones it draws
        if "touching" in layouts:
            step = t.pitch + max(t.gap_max, 0.0)
            touching = math.ceil(step * (hi - 1)) + DIGIT_SIZE + 2 * int(t.margin[1]) + 2
            width = max(width, touching)
        if "spaced" in layouts:
            gaps = math.ceil(max(t.ink_gap[1], 0.0) + 0.5) * (hi - 1)
            width = max(width, DIGIT_SIZE * hi + gaps + 2 * int(t.margin[1]) + 2)
        return width

    def to_dict(self) -> dict:
        d = {
            "layout": self.layout,
            "counts": dict(self.counts),
            "seed": self.seed,
            "leading_zero": self.leading_zero,
            "png": self.png,
            "natural": self.natural.to_dict(),
        }
        if not self.fixed:  # version 1 manifests stay exactly as they were
            d["lengths"] = [int(v) for v in self.lengths]
            d["touching"] = self.touching.to_dict()
        return d

    def arrays(self) -> dict[str, tuple]:
        return ARRAYS if self.fixed else line_arrays(self.width, int(self.lengths[1]))


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
    from digitseq.core.progress import progress_bar

    folder.mkdir(parents=True)
    arrays = cfg.arrays()
    files = {name: open_npy(folder / f"{name}.npy", dtype, (n, *shape)) for name, (dtype, shape)
             in arrays.items()}  # fmt: skip
    png = PngWriter(folder / "png") if cfg.png else None
    images, labels, offset = mnist.split_pool(data, split)
    index = numbers.class_index(labels)
    rng = split_rng(cfg.seed, split)
    try:
        with progress_bar(total=n, desc=f"{split:>5}", unit="seq", disable=not progress) as bar:
            for start in range(0, n, CHUNK):
                k = min(CHUNK, n - start)
                chunk = generate_chunk(images, labels, index, k, rng, cfg)
                chunk["sources"] = np.where(chunk["sources"] >= 0, chunk["sources"] + offset, -1)
                for name, f in files.items():
                    f.write(np.ascontiguousarray(chunk[name], dtype=arrays[name][0]).data)
                if png:
                    png.write(start, chunk)
                bar.update(k)
    finally:
        for f in files.values():
            f.close()
        if png:
            png.close()


def generate_chunk(images, labels, index, k: int, rng, cfg: GenerateConfig) -> dict:
    """k numbers as the split's arrays (sources are pool indices, -1 beyond each length)."""
    if cfg.fixed:  # today's generator call, so version-1 datasets keep their bytes
        img, digits, idx, lay = compose.generate_fixed(
            images, labels, k, rng, cfg.layout, cfg.leading_zero, cfg.natural, index
        )
        widths, lengths = np.full(len(img), IMG_W, np.int32), np.full(len(img), N_DIGITS, np.uint8)
        return {"images": img, "labels": digits, "sources": idx, "layouts": lay,
                "widths": widths, "lengths": lengths}  # fmt: skip
    lines = compose.generate(
        images, labels, k, rng, cfg.layout, cfg.leading_zero, cfg.natural, index,
        lengths=tuple(cfg.lengths), touching=cfg.touching, width=cfg.width,
    )  # fmt: skip
    return {"images": lines.images, "widths": lines.widths, "labels": lines.digits,
            "lengths": lines.lengths, "sources": lines.idx, "layouts": lines.layouts}  # fmt: skip


def open_npy(path: Path, dtype, shape: tuple[int, ...]):
    """Create a .npy file of the final size and return it opened at its first data byte."""
    arr = np.lib.format.open_memmap(path, "w+", dtype, shape)  # writes the header, no data
    offset = arr.offset
    del arr
    f = open(path, "r+b")
    f.seek(offset)
    return f


class PngWriter:
    """NNNNNN.png per sample (at its real width) plus labels.csv (file,label,layout: the label
    is the number as a digit string, leading zeros kept), for people and other tools."""

    def __init__(self, folder: Path):
        folder.mkdir()
        self.folder = folder
        self.csv = open(folder / "labels.csv", "w", newline="\n")
        self.csv.write("file,label,layout\n")
        self.names = {v: k for k, v in LAYOUT_IDS.items()}

    def write(self, start: int, chunk: dict[str, np.ndarray]):
        from PIL import Image

        strings = numbers.labels_to_strings(chunk["labels"], chunk["lengths"])
        for i, label in enumerate(strings):
            name = f"{start + i:06d}.png"
            image = np.ascontiguousarray(chunk["images"][i, :, : int(chunk["widths"][i])])
            Image.fromarray(image).save(self.folder / name, optimize=False)
            self.csv.write(f"{name},{label},{self.names[int(chunk['layouts'][i])]}\n")

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
    sample = sum(np.dtype(d).itemsize * int(np.prod(shape)) for d, shape in cfg.arrays().values())
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
        manifest = dataset_manifest(cfg, files)
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


def dataset_manifest(cfg: GenerateConfig, files: dict[str, str]) -> dict:
    """The manifest.json of a dataset built by ``cfg``: its format, config, counts, image shape,
    MNIST sources and checksums, and ``files`` (relative path -> hash)."""
    manifest = {
        "format": "digitseq-dataset",
        "version": FORMAT_VERSION if cfg.fixed else LINES_VERSION,
        "config": cfg.to_dict(),
        "counts": {s: cfg.counts.get(s, 0) for s in SPLITS if cfg.counts.get(s, 0) > 0},
        "image_shape": [IMG_H, IMG_W if cfg.fixed else cfg.width],
        "mnist_sources": {s: list(v) for s, v in mnist.SPLIT_SOURCES.items()},
        "mnist_md5": mnist.checksums(),
        "files": files,
    }
    if not cfg.fixed:
        manifest["lengths"] = [int(v) for v in cfg.lengths]  # Lmax = lengths[1]
    return manifest


def check_config(cfg: GenerateConfig) -> None:
    if cfg.layout not in LAYOUTS:
        raise DigitseqError(f"unknown layout {cfg.layout!r} (choose {', '.join(LAYOUTS)})")
    lengths = tuple(cfg.lengths)
    if (
        len(lengths) != 2
        or not all(isinstance(v, int | np.integer) and not isinstance(v, bool) for v in lengths)
        or not 1 <= lengths[0] <= lengths[1] <= MAX_LENGTH
    ):
        raise DigitseqError(
            f"lengths must be (lo, hi) with 1 <= lo <= hi <= {MAX_LENGTH}, got {cfg.lengths!r}"
        )
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
    """One stored split, memory-mapped. Version-1 (5-digit) splits get widths (all 140) and
    lengths (all 5) made in memory, so readers can treat both formats alike."""

    images: np.ndarray  # (N, 28, W) uint8; W = 140 for 5-digit datasets
    labels: np.ndarray  # (N, Lmax) uint8, 255 beyond each length; (N, 5) for 5-digit datasets
    sources: np.ndarray  # (N, Lmax) int32, -1 beyond each length
    layouts: np.ndarray  # (N,) uint8
    name: str
    folder: Path
    widths: np.ndarray | None = None  # (N,) int32: each number's real width
    lengths: np.ndarray | None = None  # (N,) uint8: digits per number
    version: int = FORMAT_VERSION

    def __post_init__(self):
        n = len(self.labels)
        if self.widths is None:
            object.__setattr__(self, "widths", np.full(n, self.images.shape[2], np.int32))
        if self.lengths is None:
            object.__setattr__(self, "lengths", np.full(n, self.labels.shape[1], np.uint8))

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def fixed(self) -> bool:
        """A 5-digit 28x140 split (format version 1): what fixed-length readers take."""
        return self.version == FORMAT_VERSION

    def cut_images(self, idx: np.ndarray, pad_to: int | None = None) -> np.ndarray:
        """The images of numbers ``idx`` (sorted: memmap-friendly reads) as a copy; with
        ``pad_to``, cut to the widest of them rounded up to it (stored images are padded to
        the dataset's widest), black columns added when the stored width is not a multiple."""
        full = self.images.shape[2]
        if pad_to is None:
            return np.array(self.images[idx], dtype=np.uint8)
        cut = min(full, -(-int(self.widths[idx].max()) // pad_to) * pad_to)
        images = np.array(self.images[idx, :, :cut], dtype=np.uint8)
        if cut % pad_to:
            images = np.pad(images, ((0, 0), (0, 0), (0, pad_to - cut % pad_to)))
        return images

    def strings(self, start: int = 0, stop: int | None = None) -> list[str]:
        """The numbers [start, stop) as digit strings, leading zeros kept."""
        sl = slice(start, stop)
        return numbers.labels_to_strings(np.asarray(self.labels[sl]), np.asarray(self.lengths[sl]))


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
    version = manifest.get("version")
    if version not in VERSIONS:
        raise DigitseqError(
            f"{dataset} is a dataset of format version {version}; this digitseq reads "
            f"{' and '.join(map(str, VERSIONS))}: regenerate it with `digitseq generate`"
        )
    if version == FORMAT_VERSION:
        expected = ARRAYS
    else:
        try:
            height, width = manifest["image_shape"]
            max_length = int(manifest["lengths"][1])
        except (KeyError, TypeError, ValueError, IndexError):
            raise DigitseqError(f"{dataset}/manifest.json lacks image_shape or lengths") from None
        expected = line_arrays(int(width), max_length)
    if verify_checksums:
        verify(dataset)
    arrays = {}
    for name, (dtype, shape) in expected.items():
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
    return Split(**arrays, name=split, folder=dataset / split, version=version)
