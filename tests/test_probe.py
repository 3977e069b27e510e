"""What an adversarial probe of batch reading, model loading and the service found (issue 23,
item 4), one test each: resume that destroyed files that were not predict's, duplicated
readings, unbounded reads, tracebacks, a copied model decoded as the wrong kind, EXIF
orientation, and smaller ones."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, SEED_SAMPLES
from helpers import assert_one_line_error, run_cli

from digitseq.apps.batch import output
from digitseq.apps.batch.output import JsonlOutput

SAMPLES = sorted(SEED_SAMPLES.glob("*.png"))


def copies(folder: Path, n: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        (folder / f"{i:03d}.png").write_bytes(SAMPLES[i % len(SAMPLES)].read_bytes())
    return folder


def rows_of(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def cli(*argv, **kwargs) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO / "src")}
    command = [sys.executable, "-m", "digitseq", *map(str, argv)]
    kwargs = {"stdout": subprocess.PIPE, **kwargs}
    return subprocess.run(command, env=env, stderr=subprocess.PIPE, timeout=120, **kwargs)


# --- a) resume only into predict's own output --------------------------------------------------


@pytest.mark.parametrize(
    "content",
    [b'{"notes": "keep me"}', b'{"file": "a.png", "label": "12345"}\n', b"hello\n"],
    ids=["json-without-newline", "labels-jsonl", "text"],
)
def test_resume_refuses_a_file_that_is_not_predicts_output(capsys, tmp_path, content):
    """Before: the one-line notes.json (no newline) was truncated and filled with readings;
    a labels file with ``file`` keys was appended to."""
    target = tmp_path / "notes.json"
    target.write_bytes(content)
    code, _, err = run_cli(capsys, "predict", "--resume", "--output", target, SAMPLES[0])
    assert_one_line_error(code, err, "not an output of predict")
    assert target.read_bytes() == content


def test_resume_still_drops_a_torn_last_line_and_accepts_an_empty_file(capsys, tmp_path):
    out = tmp_path / "out.jsonl"
    assert run_cli(capsys, "-q", "predict", "--output", out, SAMPLES[0])[0] == 0
    with open(out, "ab") as f:
        f.write(b'{"file": "torn')
    assert run_cli(capsys, "-q", "predict", "--resume", "--output", out, *SAMPLES[:2])[0] == 0
    assert [r["file"] for r in rows_of(out)] == [str(p) for p in SAMPLES[:2]]
    empty = tmp_path / "empty.jsonl"
    empty.touch()
    assert run_cli(capsys, "-q", "predict", "--resume", "--output", empty, SAMPLES[0])[0] == 0
    assert len(rows_of(empty)) == 1


# --- e) duplicated readings ----------------------------------------------------------------


def test_resume_matches_files_whatever_the_spelling(capsys, tmp_path, monkeypatch):
    """Before: ``small`` then ``$PWD/small`` read every file again."""
    copies(tmp_path / "small", 3)
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "out.jsonl"
    assert run_cli(capsys, "-q", "predict", "--output", out, "small")[0] == 0
    for spelling in (tmp_path / "small", "./small/../small"):
        assert run_cli(capsys, "-q", "predict", "--resume", "--output", out, spelling)[0] == 0
    assert len(rows_of(out)) == 3


def test_a_second_predict_on_the_same_output_is_refused(capsys, tmp_path):
    out = tmp_path / "out.jsonl"
    first, _ = JsonlOutput.open(out, resume=False)  # another predict, writing
    try:
        code, _, err = run_cli(capsys, "predict", "--resume", "--output", out, SAMPLES[0])
        assert_one_line_error(code, err, "another digitseq predict")
    finally:
        first.close()
    assert out.read_bytes() == b""


def test_a_second_run_into_a_parquet_folder_is_refused(capsys, tmp_path):
    folder = tmp_path / "parquet"
    folder.mkdir()
    (folder / "part-0.parquet").write_bytes(b"PAR1")
    code, _, err = run_cli(
        capsys, "predict", "--engine", "ray", "--format", "parquet", "--output", folder, SAMPLES[0]
    )
    assert_one_line_error(code, err, "already holds files")


# --- f) unbounded reads ------------------------------------------------------------------------


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="no /dev/full")
def test_resume_on_a_device_is_refused(capsys):
    """Before: --resume on /dev/full read zeros until the OOM killer came (23 GB)."""
    code, _, err = run_cli(capsys, "predict", "--resume", "--output", "/dev/full", SAMPLES[0])
    assert_one_line_error(code, err, "not a regular file")


def test_resume_on_a_fifo_is_refused_without_waiting(capsys, tmp_path):
    fifo = tmp_path / "out.fifo"
    os.mkfifo(fifo)
    done = cli("predict", "--resume", "--output", fifo, SAMPLES[0])
    assert done.returncode == 2 and b"not a regular file" in done.stderr, done.stderr


def test_from_list_of_a_device_or_an_endless_line_is_refused(capsys, tmp_path):
    code, _, err = run_cli(capsys, "predict", "--from-list", "/dev/zero")
    assert_one_line_error(code, err, "not a file")
    endless = tmp_path / "list.txt"
    endless.write_bytes(b"x" * 10_000)
    code, _, err = run_cli(capsys, "predict", "--from-list", endless)
    assert_one_line_error(code, err, "over 4096 bytes")


# --- g) no tracebacks ----------------------------------------------------------------------


def test_a_nul_byte_in_a_list_line_is_that_entrys_error(capsys, tmp_path):
    """Before: ValueError (embedded null byte) and nothing written at all."""
    listing = tmp_path / "list.txt"
    listing.write_bytes(f"{SAMPLES[0]}\nbad\0name.png\n{SAMPLES[1]}\n".encode())
    code, out, err = run_cli(capsys, "predict", "--from-list", listing)
    lines = out.splitlines()
    assert code == 1 and "Traceback" not in err
    assert len(lines) == 3 and "NUL byte" in lines[1]
    assert lines[0].split("\t")[1] != "-" and lines[2].split("\t")[1] != "-"


def test_a_closed_pipe_ends_quietly(tmp_path):
    """``digitseq predict folder | head -2``: before, a BrokenPipeError traceback."""
    folder = copies(tmp_path / "many", 200)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO / "src")}
    done = subprocess.run(
        f"{sys.executable} -m digitseq predict --jobs 1 --batch-size 8 {folder} | head -2",
        shell=True, env=env, capture_output=True, timeout=120,
    )  # fmt: skip
    assert len(done.stdout.splitlines()) == 2
    assert done.stderr == b"", done.stderr.decode()


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="no /dev/full")
def test_a_full_disk_under_stdout_is_one_line():
    with open("/dev/full", "wb") as full:
        done = cli("predict", *SAMPLES[:3], stdout=full)
    err = done.stderr.decode()
    assert done.returncode == 2 and "Traceback" not in err, err
    assert err.strip().splitlines() == ["digitseq: error: cannot write: No space left on device"]


def test_a_full_disk_under_output_is_one_line(capsys, tmp_path, monkeypatch):
    def full(fd, data):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(output.os, "write", full)
    code, _, err = run_cli(capsys, "predict", "--output", tmp_path / "o.jsonl", SAMPLES[0])
    assert_one_line_error(code, err, "No space left on device", "o.jsonl")


# --- h) smaller ----------------------------------------------------------------------------


def test_output_dash_is_standard_output(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, _ = run_cli(capsys, "predict", "--output", "-", SAMPLES[0])
    assert code == 0 and not (tmp_path / "-").exists()
    assert json.loads(out)["file"] == str(SAMPLES[0])
