"""The user-facing error type and the one helper that turns any exception into one line."""

from __future__ import annotations


class DigitseqError(Exception):
    """A user-facing error: the CLI prints its message on one line and exits non-zero."""


def one_line(exc: BaseException, limit: int = 200) -> str:
    """The first line of an exception's message (its type name when it has none)."""
    lines = str(exc).strip().splitlines()
    return lines[0][:limit] if lines else type(exc).__name__
