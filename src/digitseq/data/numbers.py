"""Which numbers to compose: their lengths, their digits and the pool image of each digit.

Everything here is about labels and pool indices, never pixels, so a caller that needs only the
numbers (the realistic renderer, the stored datasets' labels) imports no image code. Randomness
comes only from the ``np.random.Generator`` passed in; ``sample_numbers`` is the first thing a
generator draws (see ``compose``), so its draw order is part of every dataset's bytes.
"""

from __future__ import annotations

import numpy as np

from digitseq.core.constants import N_DIGITS, TEXT_ALPHABET

PAD_LABEL = 255  # digits beyond a number's length
PAD_INDEX = -1  # pool indices beyond a number's length
_CHARS = np.frombuffer(TEXT_ALPHABET.encode("ascii"), np.uint8)  # label -> its character byte


def labels_to_strings(digits: np.ndarray, lengths: np.ndarray) -> list[str]:
    """(n, Lmax) labels + (n,) lengths -> the numbers as strings, leading zeros kept. A label is
    an index into ``TEXT_ALPHABET``: digits 0-9 (as every digit dataset), then the separators."""
    digits = np.asarray(digits)
    n, lmax = digits.shape
    if lmax == 0:
        return [""] * n
    keep = np.arange(lmax) < np.asarray(lengths)[:, None]
    chars = np.where(keep, _CHARS[np.where(keep, digits, 0).astype(np.int64)], 0).astype(np.uint8)
    return [s.decode() for s in np.ascontiguousarray(chars).view(f"S{lmax}").ravel()]


def strings_to_labels(strings, max_len: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Strings of digits -> (digits (n, Lmax) uint8, 255-padded; lengths (n,) uint8).

    Lmax is ``max_len`` if given, else the longest string.
    """
    raw = [s.encode("ascii") for s in strings]
    lengths = np.array([len(b) for b in raw], np.int64)
    lmax = int(lengths.max(initial=0)) if max_len is None else max_len
    if (lengths > lmax).any() or lmax >= PAD_LABEL:
        raise ValueError(f"a string is longer than max_len={lmax} (or max_len >= 255)")
    digits = np.full((len(raw), lmax), PAD_LABEL, np.uint8)
    if raw:
        flat = np.frombuffer(b"".join(raw), np.uint8) - ord("0")
        if (flat > 9).any():
            raise ValueError("strings must contain only the digits 0-9")
        rows = np.repeat(np.arange(len(raw)), lengths)
        cols = np.arange(len(flat)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        digits[rows, cols] = flat
    return digits, lengths.astype(np.uint8)


def class_index(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(order, starts, counts): pool indices sorted by label, where each class starts, its size."""
    order = np.argsort(labels, kind="stable")
    counts = np.bincount(labels, minlength=10)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    return order, starts, counts


def length_range(lengths) -> tuple[int, int]:
    """An int L or a pair (lo, hi) -> (lo, hi), checked: 1 <= lo <= hi < 255."""
    if isinstance(lengths, (bool, np.bool_)):
        raise TypeError("lengths must be an int or (lo, hi); old positional leading_zero? "
                        "use sample_fixed / pass leading_zero= by name")  # fmt: skip
    lo, hi = (lengths, lengths) if np.isscalar(lengths) else lengths
    lo, hi = int(lo), int(hi)
    if not 1 <= lo <= hi < PAD_LABEL:
        raise ValueError(f"lengths must satisfy 1 <= lo <= hi < 255, got {lengths}")
    return lo, hi


def sample_numbers(
    labels: np.ndarray,
    n: int,
    rng: np.random.Generator,
    lengths=(N_DIGITS, N_DIGITS),
    leading_zero: bool = True,
    index: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Draw n numbers: a length uniform in [lo, hi], uniform digits, per digit a random pool
    image of that class.

    Returns (digits (n, hi) uint8 with 255 beyond each length, lengths (n,) uint8, pool indices
    (n, hi) int64 with -1 beyond each length). Lengths are drawn only when lo != hi, so with
    lengths=(5, 5) the draws are exactly the old ``sample_numbers``'s. ``leading_zero=False``
    makes the first digit 1-9, except that a one-digit number may be 0.
    """
    lo, hi = length_range(lengths)
    order, starts, counts = index if index is not None else class_index(labels)
    lens = rng.integers(lo, hi + 1, size=n) if lo != hi else np.full(n, hi, np.int64)
    digits = rng.integers(0, 10, size=(n, hi), dtype=np.int64)
    if not leading_zero:
        first = rng.integers(1, 10, size=n)
        digits[:, 0] = first if lo > 1 else np.where(lens == 1, digits[:, 0], first)
    offsets = (rng.random((n, hi)) * counts[digits]).astype(np.int64)
    idx = order[starts[digits] + offsets]
    if lo != hi:
        pad = np.arange(hi) >= lens[:, None]
        digits[pad] = PAD_LABEL
        idx[pad] = PAD_INDEX
    return digits.astype(np.uint8), lens.astype(np.uint8), idx


def sample_fixed(labels, n, rng, leading_zero=True, index=None) -> tuple[np.ndarray, np.ndarray]:
    """The old ``sample_numbers``: n 5-digit numbers -> (digits (n, 5) uint8, idx (n, 5))."""
    digits, _, idx = sample_numbers(labels, n, rng, (N_DIGITS, N_DIGITS), leading_zero, index)
    return digits, idx
