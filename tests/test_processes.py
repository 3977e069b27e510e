"""Every long-running command stops whole (issue 23, item 3): sent a plain SIGTERM on its top
process only (``kill PID``, ``proc.terminate()``, supervisord), as a process manager does, the
command leaves no process behind and frees its port; ``predict --output`` is left without a torn
line and ``--resume`` continues it exactly. A supervisor killed with SIGKILL takes its workers
with it.

Every process a test starts carries a marker in its environment, which its descendants inherit:
a process still holding the marker afterwards was left behind, even one re-parented to init."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from conftest import REPO, SEED_SAMPLES

from digitseq.apps.cli import main
from digitseq.apps.webapp.view import free_port

psutil = pytest.importorskip("psutil")

SAMPLES = sorted(SEED_SAMPLES.glob("*.png"))
MARK = "DIGITSEQ_TEST_MARK"


def start(*argv, mark: str, **kwargs) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO / "src"), MARK: mark}
    command = [sys.executable, "-m", "digitseq", *map(str, argv)]
    return subprocess.Popen(command, env=env, stdin=subprocess.DEVNULL, **kwargs)


def marked(mark: str) -> list:
    """The live processes started by a test (its marker in their environment)."""
    found = []
    for p in psutil.process_iter():
        try:
            if p.environ().get(MARK) == mark and p.status() != psutil.STATUS_ZOMBIE:
                found.append(p)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


def alive(procs: list) -> list:
    out = []
    for p in procs:
        try:
            if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                out.append(p)
        except psutil.NoSuchProcess:
            continue
    return out


def assert_none_left(mark: str, timeout: float = 15.0, tree: tuple = ()) -> None:
    """No process holds ``mark`` nor is one of ``tree`` (descendants noted before the kill:
    Ray starts its agents with an environment of their own)."""
    deadline = time.monotonic() + timeout
    while (left := marked(mark) + alive(tree)) and time.monotonic() < deadline:
        time.sleep(0.2)
    names = [" ".join(p.cmdline()[:4]) for p in left if p.is_running()]
    for p in left:  # do not leave them to the next test
        p.kill()
    assert not left, f"processes left behind: {names}"


def port_is_free(port: int, timeout: float = 10.0) -> bool:
    """A server can listen on ``port`` (with SO_REUSEADDR, as servers do: the connections
    of the test itself may wait in TIME_WAIT)."""
    deadline = time.monotonic() + timeout
    while True:
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(("127.0.0.1", port))
                return True
            except OSError:
                if time.monotonic() > deadline:
                    return False
        time.sleep(0.2)


def wait_until(check, proc: subprocess.Popen, what: str, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert proc.poll() is None, f"the command ended before {what}"
        assert time.monotonic() < deadline, f"no {what} within {timeout} s"
        time.sleep(0.1)


def answers(url: str) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=1) as r:
            return r.status == 200
    except OSError:
        return False


def copies(folder: Path, n: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        (folder / f"{i:05d}.png").write_bytes(SAMPLES[i % len(SAMPLES)].read_bytes())


def line_count(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.exists() else 0


# --- SIGTERM on the top process -------------------------------------------------------------


@pytest.mark.slow
def test_app_stops_whole_on_sigterm():
    pytest.importorskip("streamlit")
    mark, port = uuid.uuid4().hex, free_port()
    proc = start("app", "--port", port, mark=mark, stdout=subprocess.DEVNULL)
    try:
        health = f"http://127.0.0.1:{port}/_stcore/health"
        wait_until(lambda: answers(health), proc, "app answering")
        proc.send_signal(signal.SIGTERM)
        proc.wait(20)
    finally:
        assert_none_left(mark)
    assert port_is_free(port)


@pytest.mark.slow
@pytest.mark.parametrize("kill", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_serve_workers_stop_with_their_supervisor(kill):
    """SIGTERM: uvicorn's supervisor stops its workers. SIGKILL: it cannot; the workers notice
    that their parent is gone and stop (before: both kept serving the port)."""
    mark, port = uuid.uuid4().hex, free_port()
    proc = start("serve", "--port", port, "--workers", "2", mark=mark, stdout=subprocess.DEVNULL,
                 stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}/healthz"
        wait_until(lambda: answers(url) and len(marked(mark)) >= 3, proc, "two workers serving")
        proc.send_signal(kill)
        proc.wait(20)
    finally:
        assert_none_left(mark)
    assert port_is_free(port)


@pytest.mark.slow
@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT], ids=["sigterm", "sigint"])
def test_predict_jobs_stops_whole_and_resume_continues_exactly(tmp_path, capsys, stop):
    folder, out = tmp_path / "many", tmp_path / "out.jsonl"
    copies(folder, 400)
    mark = uuid.uuid4().hex
    proc = start("predict", "--jobs", "2", "--batch-size", "8", "--output", out, folder,
                 mark=mark, stderr=subprocess.PIPE)  # fmt: skip
    try:
        wait_until(lambda: line_count(out) >= 24, proc, "24 lines written")
        proc.send_signal(stop)
        err = proc.communicate(timeout=30)[1].decode()
    finally:
        assert_none_left(mark)
    assert proc.returncode == 128 + stop, err
    assert "Traceback" not in err and "interrupted" in err, err
    data = out.read_bytes()
    assert data.endswith(b"\n"), "a torn last line"
    written = [json.loads(line) for line in data.splitlines()]
    assert 24 <= len(written) < 400, "stop the run midway"

    assert main.main(["-q", "predict", "--resume", "--output", str(out), str(folder)]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert rows[: len(written)] == written  # nothing before the stop was rewritten
    assert sorted(r["file"] for r in rows) == sorted(str(p) for p in folder.glob("*.png"))


@pytest.mark.slow
@pytest.mark.parametrize("kill", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_ray_engine_shuts_its_local_cluster_down(tmp_path, kill):
    pytest.importorskip("ray")
    folder = tmp_path / "many"
    copies(folder, 200)
    mark = uuid.uuid4().hex
    out, tree = tmp_path / "out.jsonl", []
    proc = start("predict", "--engine", "ray", "--batch-size", "8", "--output", out, folder,
                 mark=mark, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
    try:  # a cluster at work: its agents and workers started
        wait_until(lambda: line_count(out) >= 8, proc, "readings from Ray", timeout=120)
        tree = psutil.Process(proc.pid).children(recursive=True)
        assert any("Agent" in p.name() for p in tree), [p.name() for p in tree]
        proc.send_signal(kill)
        err = proc.communicate(timeout=60)[1].decode()
    finally:
        assert_none_left(mark, timeout=30, tree=tree)
    assert "Traceback" not in err, err
    if kill == signal.SIGTERM:
        assert proc.returncode == 128 + kill, err
        assert out.read_bytes().endswith(b"\n")


# --- the reaper behind --engine ray, alone ------------------------------------------------------

PARENT = """
import subprocess, sys, time
from digitseq.core import reaper
r = reaper.start()
time.sleep(0.3)  # let it note what this process had before: nothing of ours yet
orphan = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
time.sleep(3)  # noted (every 0.5 s, once the reaper runs: slow on a busy machine)
print(orphan.pid, flush=True)
if sys.argv[1] == "stop":
    reaper.stop(r)
    print("stopped", flush=True)
time.sleep(60)
"""


@pytest.mark.parametrize("how", ["sigkill", "stop"])
def test_the_reaper_kills_what_a_killed_parent_left_and_nothing_after_stop(how):
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT, how], env=env, stdout=subprocess.PIPE, text=True
    )
    orphan = psutil.Process(int(parent.stdout.readline()))
    try:
        if how == "stop":
            assert parent.stdout.readline().strip() == "stopped"
        parent.kill()
        parent.wait(10)
        deadline = time.monotonic() + 10
        while alive([orphan]) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert (not alive([orphan])) == (how == "sigkill")
    finally:
        if orphan.is_running():
            orphan.kill()
