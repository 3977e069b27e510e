"""Processes that stop whole: children that end with their parent, and a main process whose
SIGTERM unwinds like Ctrl-C (``finally`` blocks run, workers are stopped, no torn line).

Children end with their parent, even a parent killed with SIGKILL.

A supervisor that dies without its ``finally`` (SIGKILL, the OOM killer) leaves its children
running: a pool worker waits forever on its queue, a server worker keeps serving the port. Each
such child calls ``exit_with_parent(parent_pid)`` first thing: on Linux the kernel sends it
``sig`` the moment its parent dies (``prctl(PR_SET_PDEATHSIG)``); everywhere a thread also
checks every ``every_s`` seconds that it has not been re-parented, sends ``sig`` to itself
(a server's graceful stop) and, ``grace_s`` later, exits hard.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def set_parent_death_signal(sig: int) -> bool:
    """Ask the kernel for ``sig`` when the parent dies; False where that is not available."""
    if not sys.platform.startswith("linux"):
        return False
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def exit_with_parent(
    parent: int, sig: int = signal.SIGTERM, every_s: float = 1.0, grace_s: float = 10.0
) -> None:
    """End this process (``sig``, then ``os._exit``) when ``parent`` is no longer its parent."""
    set_parent_death_signal(sig)
    if os.getppid() != parent:  # the parent died before the line above: nobody sent sig
        os.kill(os.getpid(), sig)
    args = (parent, sig, every_s, grace_s)
    threading.Thread(target=watch, args=args, daemon=True, name="watch-parent").start()


def watch(parent: int, sig: int, every_s: float, grace_s: float) -> None:
    while os.getppid() == parent:
        time.sleep(every_s)
    os.kill(os.getpid(), sig)
    time.sleep(grace_s)
    os._exit(1)


# --- the main process: SIGTERM and SIGINT raise, but never inside held() -------------------------


class Stopped(KeyboardInterrupt):
    """SIGTERM or SIGINT, raised in the main thread (a KeyboardInterrupt: handled like Ctrl-C)."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


_held = 0
_pending: int | None = None


def _stop(signum: int, frame) -> None:
    global _pending
    if _held:
        _pending = signum  # raised when the held() block ends
        return
    raise Stopped(signum)


@contextmanager
def stop_raises() -> Iterator[None]:
    """Within: SIGTERM and SIGINT raise Stopped in the main thread (SIGTERM's default would end
    the process at once, skipping every ``finally``). Elsewhere than the main thread (where
    Python runs signal handlers), nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = {s: signal.signal(s, _stop) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)


@contextmanager
def held() -> Iterator[None]:
    """A block a stop signal must not cut (a write that must land whole): Stopped is raised
    at its end instead. The flag is read by the handler, so it works whatever thread the
    kernel delivered the signal to."""
    global _held, _pending
    _held += 1
    try:
        yield
    finally:
        _held -= 1
        if not _held and _pending is not None:
            signum, _pending = _pending, None
            raise Stopped(signum)
