"""Argument types shared by the subcommands (each gives a one-line error for a bad value)."""

from __future__ import annotations

import argparse


def positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {value}")
    return value


def count(text: str) -> int:
    try:
        value = int(text.replace("_", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def probability(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {value}")
    return value


MAX_DIGITS = 64


def digit_range(text: str) -> tuple[int, int]:
    """``N`` or ``A-B`` digits (1 <= A <= B <= 64) -> (A, B)."""
    lo, sep, hi = text.partition("-")
    try:
        a, b = int(lo), int(hi) if sep else int(lo)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected N or A-B (e.g. 5 or 8-12), got {text!r}"
        ) from None
    if not 1 <= a <= b <= MAX_DIGITS:
        raise argparse.ArgumentTypeError(
            f"expected 1 <= A <= B <= {MAX_DIGITS} digits, got {text!r}"
        )
    return a, b
