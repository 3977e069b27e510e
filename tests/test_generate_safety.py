"""``digitseq generate``'s safety: --overwrite replaces only a dataset, free space is checked
before writing, counts and seeds are checked, stale temp folders of killed runs are removed.
Every refusal is one line on stderr and exit status 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from helpers import assert_one_line_error

from digitseq.apps.cli import main
from digitseq.data import storage, target


def generate(capsys, *argv: str) -> tuple[int, str]:
    code = main.main(["-q", "generate", *argv])
    err = capsys.readouterr().err
    return code, err


def test_overwrite_refuses_a_folder_whose_manifest_is_not_digitseqs(tmp_path, capsys):
    ext = tmp_path / "extension"
    (ext / "src").mkdir(parents=True)
    (ext / "manifest.json").write_text(json.dumps({"manifest_version": 3}))
    (ext / "src" / "background.js").write_text("chrome.runtime")
    (ext / "notes.txt").write_text("mine")
    code, err = generate(capsys, str(ext), "--train", "10", "--val", "0", "--test", "0",
                         "--overwrite")  # fmt: skip
    assert_one_line_error(code, err, "not a digitseq dataset")
    assert (ext / "src" / "background.js").read_text() == "chrome.runtime"
    assert (ext / "notes.txt").is_file()


def test_overwrite_refuses_a_dataset_holding_other_files(tmp_path, capsys):
    out = tmp_path / "ds"
    args = [str(out), "--train", "10", "--val", "0", "--test", "0"]
    assert generate(capsys, *args)[0] == 0
    (out / "notes.txt").write_text("mine")
    code, err = generate(capsys, *args, "--overwrite")
    assert_one_line_error(code, err, "notes.txt")
    assert (out / "notes.txt").is_file()
    (out / "notes.txt").unlink()
    (out / "train" / "extra").mkdir()
    assert_one_line_error(*generate(capsys, *args, "--overwrite"), "train/extra")
    (out / "train" / "extra").rmdir()
    assert generate(capsys, *args, "--overwrite", "--seed", "3")[0] == 0  # a clean one: replaced
    assert json.loads((out / "manifest.json").read_text())["config"]["seed"] == 3


def test_free_space_is_checked_before_writing(tmp_path, capsys, monkeypatch):
    class Usage:
        free = 50_000

    monkeypatch.setattr(target.shutil, "disk_usage", lambda p: Usage)
    out = tmp_path / "ds"
    code, err = generate(capsys, str(out), "--train", "1000", "--val", "0", "--test", "0")
    assert_one_line_error(code, err, "needs 5.", "50.0 KB free")
    assert not out.exists() and not list(tmp_path.glob(".ds.*"))


@pytest.mark.parametrize("count", ["1000000000", str(10**12)])
def test_absurd_counts_are_refused(tmp_path, capsys, count):
    code, err = generate(capsys, str(tmp_path / "ds"), "--train", count)
    assert_one_line_error(code, err, "over the limit")


@pytest.mark.parametrize("seed", ["-1", str(2**64)])
def test_bad_seed_is_one_line(tmp_path, capsys, seed):
    code, err = generate(capsys, str(tmp_path / "ds"), "--train", "10", "--seed", seed)
    assert_one_line_error(code, err, "--seed")


def test_stale_temp_folders_of_dead_runs_are_removed(tmp_path, capsys):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f".ds.{dead.pid}.0123abcd.tmp"
    running = tmp_path / f".ds.{os.getppid()}.0123abcd.tmp"  # a live process's: kept
    other = tmp_path / f".other.{dead.pid}.0123abcd.tmp"  # another target's: kept
    for folder in (stale, running, other):
        (folder / "train").mkdir(parents=True)
    assert (
        generate(capsys, str(tmp_path / "ds"), "--train", "10", "--val", "0", "--test", "0")[0] == 0
    )
    assert not stale.exists() and running.exists() and other.exists()


def test_library_checks_seed_too():
    with pytest.raises(storage.DigitseqError, match="--seed"):
        storage.check_config(storage.GenerateConfig(counts={"train": 1}, seed=-1))
