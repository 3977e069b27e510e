"""A watcher that kills what a process leaves behind when it dies, even by SIGKILL (Linux).

Some children do not share their parent's fate: a local Ray cluster's raylet and GCS die with
the driver (Ray sets PR_SET_PDEATHSIG on them), but the agents the raylet starts do not, and
after a SIGKILL of ``digitseq predict --engine ray`` two of them (~175 MB) ran on for good.

``start()`` runs ``python -m digitseq.core.reaper PID`` as a child of PID. While PID lives, the
reaper notes every descendant PID starts from then on (by /proc, with its start time, so a
reused pid is never hit; children PID had before are not its business). When PID dies (its
stdin closes without a word), the reaper kills each noted process still alive, SIGTERM first
and SIGKILL ``grace_s`` later. ``stop()`` (PID shut its children down itself) sends ``stop``:
the reaper then exits and kills nothing.
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
    before = ",".join(f"{pid}:{t}" for pid, t in descendants(os.getpid()).items())
    command = [sys.executable, "-m", "digitseq.core.reaper", str(os.getpid()), before]
    return subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)


def stop(reaper: subprocess.Popen | None, timeout: float = 15.0) -> None:
    """Tell the reaper this process ended its children itself: it exits, killing nothing."""
    if reaper is None:
        return
    try:
        reaper.stdin.write(b"stop\n")
        reaper.stdin.close()
    except OSError:  # the reaper is gone already
        pass
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


def main(parent: int, before: set, every_s: float = 0.5, grace_s: float = 3.0) -> None:
    """``before``: the (pid, start time) of the parent's descendants when it started this."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    before.add((os.getpid(), stat_of(os.getpid())[1]))
    noted: dict[int, int] = {}
    while os.getppid() == parent:
        noted.update(p for p in descendants(parent).items() if p not in before)
        ready, _, _ = select.select([sys.stdin.buffer], [], [], every_s)
        if ready:
            said = os.read(sys.stdin.fileno(), 64)
            if said.startswith(b"stop"):
                return  # the parent shut its children down itself
            if not said:
                break  # stdin closed without a word: the parent died
    noted.pop(os.getpid(), None)
    if kill_all(noted, signal.SIGTERM):
        time.sleep(grace_s)
        kill_all(noted, signal.SIGKILL)


if __name__ == "__main__":
    pairs = (item.split(":") for item in sys.argv[2].split(",") if item)
    main(int(sys.argv[1]), {(int(pid), int(t)) for pid, t in pairs})
