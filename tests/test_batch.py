"""Reading many files: ``predict --jobs``, folders, lists, stdin, ``--output``/``--resume`` after
a SIGKILL, a worker killed mid-run, bad entries (unlistable folders, symlink loops, FIFOs), file
names no terminal or JSON parser accepts, and progress bars off a terminal."""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import REPO, SEED_SAMPLES

from digitseq.apps.batch import inputs, output
from digitseq.apps.batch.work import finish, prepare_files
from digitseq.apps.cli import main
from digitseq.core.progress import progress_bar
from digitseq.reading.predictor import JSON_KEYS, Predictor

SAMPLES = sorted(SEED_SAMPLES.glob("*.png"))
with open(SEED_SAMPLES / "labels.csv") as f:
    LABELS = {row["file"]: row["label"] for row in csv.DictReader(f)}


def run_cli(capsys, *argv) -> tuple[int, list[str], str]:
    code = main.main(["predict", *map(str, argv)])
    out, err = capsys.readouterr()
    return code, out.splitlines(), err


def cli_command(*argv) -> list[str]:
    return [sys.executable, "-m", "digitseq", "predict", *map(str, argv)]


def cli_env(**extra) -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO / "src"), **extra}


def copies(folder: Path, n: int, scale: int = 1) -> dict[str, str]:
    """``n`` image files made from the seed samples (``scale``: enlarged, so slower to
    preprocess); returns {path: the true digits}."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    truth = {}
    for i in range(n):
        src = SAMPLES[i % len(SAMPLES)]
        dst = folder / f"{i:05d}.png"
        if scale == 1:
            dst.write_bytes(src.read_bytes())
        else:
            im = Image.open(src)
            im.resize((im.width * scale, im.height * scale), Image.Resampling.BILINEAR).save(dst)
        truth[str(dst)] = LABELS[src.name]
    return truth


def rows_of(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


# --- the multi-process path ------------------------------------------------------------------


def test_jobs_2_reads_the_seed_samples_right_in_order(capsys, tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_text("not an image")
    code, lines, err = run_cli(
        capsys, "--jobs", "2", "--batch-size", "4", "--format", "jsonl", SEED_SAMPLES, bad
    )
    assert code == 1 and "1 of 26" in err
    rows = [json.loads(line) for line in lines]
    assert [r["file"] for r in rows] == [*map(str, SAMPLES), str(bad)]
    assert {Path(r["file"]).name: r["digits"] for r in rows[:25]} == LABELS
    assert rows[25]["error"] == "not an image (unrecognized file format)"


def test_prepared_in_workers_reads_exactly_like_predict(bundled_model_dir, tmp_path):
    """The split path (prepare elsewhere, model on a batch) gives what ``predict`` gives."""
    predictor = Predictor.load(bundled_model_dir)
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"")
    paths = [*map(str, SAMPLES[:6]), str(bad)]
    split = finish(predictor, prepare_files(paths), min_confidence=0.99, batch_size=7)
    direct = predictor.predict(paths, min_confidence=0.99)
    assert [r.to_json(True) for r in split] == [r.to_json(True) for r in direct]


def test_recursive_from_list_and_stdin(capsys, tmp_path, monkeypatch):
    top = tmp_path / "scans"
    (top / "day2").mkdir(parents=True)
    (top / "day1").mkdir()
    (top / "z.png").write_bytes(SAMPLES[0].read_bytes())
    (top / "day1" / "a.png").write_bytes(SAMPLES[1].read_bytes())
    (top / "day2" / "b.png").write_bytes(SAMPLES[2].read_bytes())
    expected = [top / "z.png", top / "day1" / "a.png", top / "day2" / "b.png"]

    code, lines, _ = run_cli(capsys, top)
    assert code == 0 and [line.split("\t")[0] for line in lines] == [str(top / "z.png")]
    code, lines, _ = run_cli(capsys, "--jobs", "2", "--batch-size", "1", "--recursive", top)
    assert code == 0 and [line.split("\t")[0] for line in lines] == list(map(str, expected))
    assert [line.split("\t")[1] for line in lines] == [LABELS[p.name] for p in SAMPLES[:3]]

    listing = tmp_path / "list.txt"
    listing.write_text(f"{SAMPLES[3]}\n\n{tmp_path / 'gone.png'}\n{SAMPLES[4]}\n")
    code, lines, _ = run_cli(capsys, "--jobs", "1", "--from-list", listing)
    assert code == 1
    assert lines[0] == f"{SAMPLES[3]}\t{LABELS[SAMPLES[3].name]}\t" + lines[0].split("\t")[2]
    assert lines[1] == f"{tmp_path / 'gone.png'}\t-\terror: no such file or folder"
    assert lines[2].split("\t")[:2] == [str(SAMPLES[4]), LABELS[SAMPLES[4].name]]

    stdin = io.TextIOWrapper(io.BytesIO(f"{SAMPLES[5]}\n{SAMPLES[6]}\n".encode()))
    monkeypatch.setattr(sys, "stdin", stdin)
    code, lines, _ = run_cli(capsys, "--from-list", "-")
    assert code == 0
    assert [line.split("\t")[1] for line in lines] == [LABELS[p.name] for p in SAMPLES[5:7]]


def test_nothing_to_read_and_bad_option_mixes_are_one_line(capsys, tmp_path):
    for argv in (
        [],
        ["--resume", SAMPLES[0]],
        ["--format", "parquet", SAMPLES[0]],
        ["--output", tmp_path / "o.jsonl", "--format", "text", SAMPLES[0]],
    ):
        code, lines, err = run_cli(capsys, *argv)
        assert code == 2 and lines == [] and err.startswith("digitseq: error:"), argv
        assert err.count("\n") == 1
    existing = tmp_path / "done.jsonl"
    existing.write_text("")
    code, _, err = run_cli(capsys, "--output", existing, SAMPLES[0])
    assert code == 2 and "pass --resume" in err


# --- bad entries: item 4 and 12 of the hardening issue ----------------------------------------


def test_unlistable_folder_is_an_error_line_and_the_rest_is_read(capsys, tmp_path, monkeypatch):
    locked = tmp_path / "locked"
    locked.mkdir()
    (locked / "x.png").write_bytes(SAMPLES[0].read_bytes())
    real_scandir = os.scandir

    def scandir(path="."):  # root reads anything: simulate a folder it may enter, not list
        if Path(path) == locked:
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    code, lines, _ = run_cli(capsys, locked, SAMPLES[1])
    assert code == 1
    assert lines[0] == f"{locked}\t-\terror: cannot list folder: Permission denied"
    assert lines[1].split("\t")[:2] == [str(SAMPLES[1]), LABELS[SAMPLES[1].name]]


@pytest.mark.skipif(os.geteuid() == 0, reason="root may list any folder")
def test_really_unreadable_folder(capsys, tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o100)  # enter, not list
    try:
        code, lines, _ = run_cli(capsys, locked, SAMPLES[1])
    finally:
        locked.chmod(0o700)
    assert code == 1 and "cannot list folder" in lines[0] and len(lines) == 2


def test_symlink_loops_and_fifos_are_named_also_inside_folders(capsys, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a.png").write_bytes(SAMPLES[0].read_bytes())
    (folder / "loop.png").symlink_to(folder / "loop.png")
    (folder / "pipe.png").unlink(missing_ok=True)
    os.mkfifo(folder / "pipe.png")
    (folder / "dangling.png").symlink_to(tmp_path / "nowhere.png")
    (folder / "self").symlink_to(folder)  # a folder inside itself (followed with -r)
    top_loop = tmp_path / "top.png"
    top_loop.symlink_to(top_loop)
    top_fifo = tmp_path / "top-fifo.png"
    os.mkfifo(top_fifo)

    code, lines, _ = run_cli(capsys, "--recursive", folder, top_loop, top_fifo)
    assert code == 1
    assert lines[0].split("\t")[:2] == [str(folder / "a.png"), LABELS[SAMPLES[0].name]]
    assert lines[1:] == [
        f"{folder / 'dangling.png'}\t-\terror: broken symlink: its target does not exist",
        f"{folder / 'loop.png'}\t-\terror: symlink loop: the link leads back to itself",
        f"{folder / 'pipe.png'}\t-\terror: a FIFO (named pipe), not a file: not read",
        f"{folder / 'self'}\t-\terror: symlink loop: this folder contains itself",
        f"{top_loop}\t-\terror: symlink loop: the link leads back to itself",
        f"{top_fifo}\t-\terror: a FIFO (named pipe), not a file: not read",
    ]


# --- file names: items 5 and 11 ------------------------------------------------------------------


@pytest.fixture
def odd_names(tmp_path) -> Path:
    folder = tmp_path / "odd"
    folder.mkdir()
    data = SAMPLES[0].read_bytes()
    for name in (
        b"a\nb.png",
        b"c\td.png",
        b"e\xff\xfe.png",
        "f-z\u00e4hler.png".encode(),
        b"g.png",
    ):
        with open(os.path.join(os.fsencode(folder), name), "wb") as f:
            f.write(data)
    return folder


def test_text_format_keeps_one_line_per_image_whatever_the_name(odd_names):
    """Also with an output encoding that cannot show the name (PYTHONIOENCODING=ascii)."""
    for encoding in ("utf-8", "ascii"):
        done = subprocess.run(
            cli_command("--jobs", "1", odd_names),
            capture_output=True,
            env=cli_env(PYTHONIOENCODING=encoding),
            timeout=120,
        )
        lines = done.stdout.decode("ascii" if encoding == "ascii" else "utf-8").splitlines()
        assert done.returncode == 0, done.stderr.decode(errors="replace")
        names = [line.split("\t")[0] for line in lines]
        assert len(lines) == 5 and all(
            line.split("\t")[1] == LABELS[SAMPLES[0].name] for line in lines
        )
        base = str(odd_names)
        umlaut = "f-z\\xe4hler.png" if encoding == "ascii" else "f-z\u00e4hler.png"
        assert names == [
            f"{base}/a\\nb.png",
            f"{base}/c\\td.png",
            f"{base}/e\\xff\\xfe.png",
            f"{base}/{umlaut}",
            f"{base}/g.png",
        ]


def test_jsonl_names_are_strict_json_and_round_trip(capsys, odd_names):
    code, lines, _ = run_cli(capsys, "--format", "jsonl", odd_names)
    assert code == 0 and len(lines) == 5
    names = sorted(os.listdir(odd_names))
    for line, name in zip(lines, names, strict=True):
        line.encode("ascii")
        rec = json.loads(line)
        for value in rec.values():  # no lone surrogates: a strict parser accepts every string
            if isinstance(value, str):
                value.encode("utf-8")
        assert output.source_name(rec) == os.path.join(str(odd_names), name)
        assert ("file_bytes" in rec) == (name == "e\udcff\udcfe.png")
    assert json.loads(lines[2])["file"] == f"{odd_names}/e\\xff\\xfe.png"


# --- resume, and killed processes ------------------------------------------------------------


def wait_for_lines(path: Path, n: int, proc, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.read_bytes().count(b"\n") >= n:
            return
        if proc.poll() is not None:
            pytest.fail(f"the run ended before {n} lines were written")
        time.sleep(0.05)
    pytest.fail(f"no {n} lines within {timeout} s")


def test_resume_after_sigkill_gives_each_file_once_with_the_same_digits(capsys, tmp_path):
    truth = copies(tmp_path / "many", 600)
    straight = tmp_path / "straight.jsonl"
    assert main.main(["-q", "predict", "--output", str(straight), str(tmp_path / "many")]) == 0

    out = tmp_path / "killed.jsonl"
    argv = cli_command("--jobs", "2", "--batch-size", "16", "--output", out, tmp_path / "many")
    proc = subprocess.Popen(argv, env=cli_env(), stderr=subprocess.DEVNULL)
    wait_for_lines(out, 100, proc)
    import psutil

    children = psutil.Process(proc.pid).children(recursive=True)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    _, alive = psutil.wait_procs(children, timeout=10)
    assert not alive, "worker processes outlived the killed run"
    written = out.read_bytes().count(b"\n")
    assert 100 <= written < 600, "kill the run midway"
    with open(out, "ab") as f:  # what a kill mid-write leaves: a torn last line
        f.write(b'{"file": "torn')

    code, _, _ = run_cli(capsys, "--resume", "--output", out, tmp_path / "many")
    assert code == 0
    rows = rows_of(out)
    assert len(rows) == 600 and len({r["file"] for r in rows}) == 600
    assert {r["file"]: r["digits"] for r in rows} == {
        r["file"]: r["digits"] for r in rows_of(straight)
    }
    assert {r["file"]: r["digits"] for r in rows} == truth

    code, _, _ = run_cli(capsys, "--resume", "--output", out, tmp_path / "many")
    assert code == 0 and len(rows_of(out)) == 600  # nothing left: nothing appended


def test_a_killed_worker_is_replaced_and_every_file_read_once(tmp_path):
    import psutil

    truth = copies(tmp_path / "big", 240, scale=8)  # 224x1120 px: ~10 ms each to preprocess
    out = tmp_path / "out.jsonl"
    argv = cli_command("--jobs", "2", "--batch-size", "8", "--output", out, tmp_path / "big")
    proc = subprocess.Popen(argv, env=cli_env(), stderr=subprocess.PIPE)
    wait_for_lines(out, 16, proc)
    me = psutil.Process(proc.pid)
    workers = [p for p in me.children() if "spawn_main" in " ".join(p.cmdline())]
    assert workers, "no worker processes found"
    workers[0].send_signal(signal.SIGKILL)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err.decode()
    assert "a worker process died" in err.decode()
    rows = rows_of(out)
    assert len(rows) == 240 and {r["file"]: r["digits"] for r in rows} == truth


# --- progress bars (hardening of issue 9) ---------------------------------------------------------


def test_progress_bar_off_a_terminal_prints_rarely():
    sink = io.StringIO()
    with progress_bar(total=200_000, file=sink, unit="img") as bar:
        for _ in range(200_000):
            bar.update(1)
    assert sink.getvalue().count("\r") <= 3  # the first and the last state, not 200,000


def test_inputs_are_streamed_not_listed_up_front(tmp_path):
    copies(tmp_path / "a", 3)
    stream = inputs.iter_items([tmp_path / "a", tmp_path / "missing.png"])
    assert next(stream) == tmp_path / "a" / "00000.png"  # a generator: nothing else walked yet


# --- the Ray engine on a real local cluster ---------------------------------------------------


@pytest.mark.slow
def test_ray_local_cluster_reads_every_file(tmp_path):
    ray = pytest.importorskip("ray")
    from digitseq.apps.batch import ray_engine

    folder = tmp_path / "ray"
    truth = copies(folder, 25)
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        rows = list(ray_engine.read([str(folder)], None, "torch", False, None, False, 16))
        parquet = tmp_path / "parquet"
        errors = list(
            ray_engine.read([str(folder)], None, "torch", False, None, False, 16, parquet)
        )
    finally:
        ray.shutdown()
    assert [r["file"] for r in rows] == sorted(map(str, folder.glob("*.png")))
    assert {r["file"]: r["digits"] for r in rows if r["error"] is None} == truth
    assert list(rows[0]) == list(JSON_KEYS)  # the fields of predict --format jsonl
    assert rows[25]["file"].endswith("broken.png")
    assert rows[25]["error"].startswith("corrupt image header")
    import pyarrow.parquet as pq

    table = pq.read_table(parquet)
    assert table.num_rows == 26 and sum(e["error"] is not None for e in errors) == 1
    assert dict(zip(table["file"].to_pylist(), table["digits"].to_pylist(), strict=True)) == {
        **truth,
        str(folder / "broken.png"): None,
    }
