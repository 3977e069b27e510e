"""The one progress bar of the package: tqdm on a terminal, and rare updates elsewhere.

A bar written to a file or a pipe (CI logs, ``make demo > log``) cannot redraw itself in place:
every update becomes a new line, and one training run wrote 800 KB of them. Off a terminal the
bar therefore updates at most every ``OFF_TERMINAL_INTERVAL_S`` seconds (plus its final line).
"""

from __future__ import annotations

import sys

OFF_TERMINAL_INTERVAL_S = 30.0


def is_terminal(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def progress_bar(iterable=None, **kwargs):
    """A ``tqdm`` bar on stderr (or ``file=``); same arguments as tqdm. Off a terminal it
    updates rarely (``mininterval``) unless the caller chose an interval itself."""
    from tqdm import tqdm  # tqdm is a dependency of the package; imported only when a bar is made

    stream = kwargs.setdefault("file", sys.stderr)
    if not is_terminal(stream):
        kwargs.setdefault("mininterval", OFF_TERMINAL_INTERVAL_S)
        kwargs.setdefault("maxinterval", OFF_TERMINAL_INTERVAL_S * 4)
        kwargs.setdefault("dynamic_ncols", False)
    return tqdm(iterable, **kwargs)
