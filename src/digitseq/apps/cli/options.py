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


def digit_range(text: str) -> tuple[int, int]:
    """``N`` or ``A-B`` digits -> (A, B), as ``--digits`` takes them."""
    from digitseq.core.errors import DigitseqError
    from digitseq.reading.predictor import parse_digits

    try:
        return parse_digits(text)
    except DigitseqError as e:
        raise argparse.ArgumentTypeError(str(e).removeprefix("digits: ")) from None
