"""A watcher that kills what a process leaves behind when it dies, even by SIGKILL (Linux).

Some children do not share their parent's fate: a local Ray cluster's raylet and GCS die with
the driver (Ray sets PR_SET_PDEATHSIG on them), but the agents the raylet starts do not, and
after a SIGKILL of ``digitseq predict --engine ray`` two of them (~175 MB) ran on for good.

``start()`` runs ``python -m digitseq.core.reaper PID`` as a child of PID. While PID lives, the
reaper notes every descendant of PID (by /proc, with its start time, so a reused pid is never
hit). When PID is gone, or closes the reaper's stdin (its normal end: ``stop()``), the reaper
kills each noted process still alive, SIGTERM first and SIGKILL ``grace_s`` later.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

PROC = Path("/proc")


def start() -> subprocess.Popen | None:
    """A reaper for this process's descendants; None where there is no /proc."""
    if not PROC.is_dir():
        return None
    command = [sys.executable, "-m", "digitseq.core.reaper", str(os.getpid())]
    return subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)


def stop(reaper: subprocess.Popen | None, timeout: float = 15.0) -> None:
    """Tell the reaper this process ended its children itself; it kills any still alive."""
    if reaper is None:
        return
    reaper.stdin.close()
    try:
        reaper.wait(timeout)
    except subprocess.TimeoutExpired:
        reaper.kill()


def stat_of(pid: int) -> tuple[int, int] | None:
    """(parent pid, start time) of ``pid`` from /proc, or None when it is gone."""
    try:
        text = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()  # after "pid (name) ": state, ppid, ...
    return int(fields[1]), int(fields[19])


def descendants(root: int) -> dict[int, int]:
    """{pid: start time} of every live descendant of ``root``."""
    parent_of, started = {}, {}
    for entry in PROC.iterdir():
        if entry.name.isdigit() and (st := stat_of(int(entry.name))) is not None:
            parent_of[int(entry.name)], started[int(entry.name)] = st
    found: dict[int, int] = {}
    frontier = {root}
    while frontier:
        frontier = {p for p, pp in parent_of.items() if pp in frontier and p not in found}
        found.update({p: started[p] for p in frontier})
    return found


def kill_all(noted: dict[int, int], sig: int) -> list[int]:
    """Send ``sig`` to each noted process that is still the same process; those hit."""
    hit = []
    for pid, start_time in noted.items():
        st = stat_of(pid)
        if pid != os.getpid() and st is not None and st[1] == start_time:
            try:
                os.kill(pid, sig)
                hit.append(pid)
            except OSError:
                continue
    return hit


def main(parent: int, every_s: float = 0.5, grace_s: float = 3.0) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    noted: dict[int, int] = {}
    while os.getppid() == parent:
        noted.update(descendants(parent))
        ready, _, _ = select.select([sys.stdin.buffer], [], [], every_s)
        if ready and not os.read(sys.stdin.fileno(), 4096):
            break  # stdin closed: the parent stopped (or died)
    noted.pop(os.getpid(), None)
    if kill_all(noted, signal.SIGTERM):
        time.sleep(grace_s)
        kill_all(noted, signal.SIGKILL)


if __name__ == "__main__":
    main(int(sys.argv[1]))
