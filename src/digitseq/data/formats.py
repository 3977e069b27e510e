"""Numbers as people write them, with their punctuation: amounts, dates, times, phone numbers
and IDs beside plain numbers, and the lines that show them (MNIST digits + drawn separators).

* ``FAMILIES``: name -> ``Family`` (its share of the mix, a sampler, the regular expression its
  strings match); plain numbers are still half the mix. Every string has at most 12 digits
  and only characters of ``separators.TEXT_ALPHABET``.
* ``sample_texts(n, rng) -> list[str]``: n strings, each family by its weight
  (``draw_families`` then each family's sampler, in order).
* ``compose_text_lines(pool, labels, texts, rng, layout) -> TextLines``: the strings drawn as
  28-px lines: each digit a pool image of its class (warped as the natural layout warps, except
  in seed lines), each separator drawn by ``separators``, all placed left to right by their
  ink with a gap per pair as the ``spaced`` layout does (``TEXT_GAPS``: close-written lines
  overlap by up to a few pixels), a separator raised or lowered with its neighbouring digits.

Randomness comes only from the ``np.random.Generator`` passed in; the draw order of
``compose_text_lines`` is layouts (when given by name), pool digits, warps, separators, gaps,
margins.
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from digitseq.core.constants import DIGIT_SIZE, IMG_H
from digitseq.data import layouts, separators
from digitseq.data.compose import output_width
from digitseq.data.layouts import NaturalParams, TouchingParams, draw_layouts
from digitseq.data.numbers import class_index
from digitseq.data.warp import BLOCK_DIGITS, paste, warp_digits

MAX_DIGITS = 12  # digits in one formatted number, at most


# --- the strings ---------------------------------------------------------------------------------


def weighted(options: dict, rng: np.random.Generator):
    """One key of ``options``, drawn by its weight."""
    keys = list(options)
    w = np.array([options[k] for k in keys], np.float64)
    return keys[int(rng.choice(len(keys), p=w / w.sum()))]


def fill(template: str, rng: np.random.Generator) -> str:
    """A template with N (any digit) and Z (a digit 1-9) -> a string; other characters kept."""
    out = []
    for ch in template:
        if ch == "N":
            out.append(str(rng.integers(0, 10)))
        elif ch == "Z":
            out.append(str(rng.integers(1, 10)))
        else:
            out.append(ch)
    return "".join(out)


def template_pattern(templates) -> str:
    """The regular expression that matches any of the templates (N -> \\d, Z -> [1-9])."""
    parts = (re.escape(t).replace("N", r"\d").replace("Z", "[1-9]") for t in templates)
    return "|".join(f"(?:{p})" for p in parts)


def sample_number(rng: np.random.Generator) -> str:
    """A plain number: 1-12 digits, lengths uniform, leading zeros allowed (as generate's)."""
    return fill("N" * int(rng.integers(1, MAX_DIGITS + 1)), rng)


# (thousands, decimal) separators: 1,250.00 / 1.250,00 / 1 250,00 / 1250,00 / 1250.00
AMOUNT_LENGTHS = (2, 3, 3, 3, 3, 2, 2, 1, 1, 1)  # weights of 1-10 digits before the decimals
AMOUNT_STYLES = {(",", "."): 3.0, (".", ","): 3.0, (" ", ","): 1.5, ("", ","): 1.5, ("", "."): 1.5}


def sample_amount(rng: np.random.Generator) -> str:
    """An amount: 1-10 digits before the decimal separator, grouped by thousands in the style's
    convention, mostly 2 decimals (a grouped amount may have none), sometimes negative."""
    thousands, decimal = weighted(AMOUNT_STYLES, rng)
    whole = fill("Z" + "N" * weighted(dict(enumerate(AMOUNT_LENGTHS)), rng), rng)
    if rng.random() < 0.08:  # cents only: 0,50
        whole = "0"
    grouped = thousands != "" and len(whole) > 3
    if grouped:
        head = len(whole) % 3 or 3
        groups = [whole[:head]] + [whole[i : i + 3] for i in range(head, len(whole), 3)]
        whole = thousands.join(groups)
    text = whole
    if not grouped or rng.random() < 0.75:  # an ungrouped amount without decimals is a number
        text += decimal + fill("NN" if rng.random() < 0.9 else "N", rng)
    return ("-" if rng.random() < 0.05 else "") + text


AMOUNT_PATTERN = (
    r"-?(?:\d{1,3}(?:,\d{3})+(?:\.\d{1,2})?|\d{1,3}(?:\.\d{3})+(?:,\d{1,2})?"
    r"|\d{1,3}(?: \d{3})+(?:,\d{1,2})?|\d+[.,]\d{1,2})"
)

DATE_STYLES = {
    "DD/MM/YYYY": 3.0, "MM/DD/YYYY": 3.0, "DD.MM.YYYY": 2.0, "YYYY-MM-DD": 2.0, "D/M/YY": 1.0,
    "M/D/YY": 1.0, "DD-MM-YYYY": 1.0, "DD/MM/YY": 1.0, "D.M.YYYY": 1.0, "DD.MM.YY": 1.0,
    "YYYY/MM/DD": 0.5,
}  # fmt: skip
DATE_PATTERN = r"\d{1,2}([/.-])\d{1,2}\1(?:\d{2}|\d{4})|\d{4}([/-])\d{2}\2\d{2}"


def sample_date(rng: np.random.Generator) -> str:
    """A valid calendar date (years 1900-2099, most 1950-2035) in one of DATE_STYLES."""
    year = int(rng.integers(1950, 2036) if rng.random() < 0.85 else rng.integers(1900, 2100))
    month = int(rng.integers(1, 13))
    day = int(rng.integers(1, calendar.monthrange(year, month)[1] + 1))
    fields = {"YYYY": f"{year:04d}", "YY": f"{year % 100:02d}", "MM": f"{month:02d}",
              "DD": f"{day:02d}", "M": str(month), "D": str(day)}  # fmt: skip
    style = weighted(DATE_STYLES, rng)
    return re.sub("YYYY|YY|MM|DD|M|D", lambda m: fields[m.group()], style)


TIME_STYLES = {"H:MM": 3.0, "HH:MM": 3.0, "HH:MM:SS": 1.0}
TIME_PATTERN = r"\d{1,2}:\d{2}(?::\d{2})?"


def sample_time(rng: np.random.Generator) -> str:
    """A time of day on the 24-hour clock: 9:05, 14:30, 14:30:15."""
    h, m, s = (int(v) for v in rng.integers(0, (24, 60, 60)))
    style = weighted(TIME_STYLES, rng)
    hour = f"{h:02d}" if style.startswith("HH") else str(h)
    return f"{hour}:{m:02d}" + (f":{s:02d}" if style.endswith("SS") else "")


PHONE_STYLES = {
    "(ZNN) ZNN-NNNN": 3.0, "ZNN-ZNN-NNNN": 2.0, "ZNN.ZNN.NNNN": 0.5, "+1 ZNN ZNN NNNN": 1.0,
    "+1 (ZNN) ZNN-NNNN": 0.5,  # North America
    "+44 ZN NNNN NNNN": 1.5, "0ZN NNNN NNNN": 1.0, "+44 7NNN NNNNNN": 1.0, "07NNN NNNNNN": 1.0,
    "0Z NN NN NN NN": 1.5, "+33 Z NN NN NN NN": 1.0, "0Z.NN.NN.NN.NN": 0.5,  # France
    "+49 ZN NNNNNNNN": 1.0, "0ZNN/NNNNNNN": 0.5,  # Germany
}  # fmt: skip
ID_STYLES = {
    "NNN-NN-NNNN": 3.0, "NN-NNNNNNN": 2.0, "NNNN-NNNN-NNNN": 1.5, "NNN-NNN-NNN": 1.0,
    "NN/NNN/NNNNN": 1.0, "NNNNN-NNNN": 1.0, "N-NNN-NNNNN-N": 1.0,
}  # fmt: skip


@dataclass(frozen=True)
class Family:
    """A kind of formatted number: its share of the mix, a sampler, the pattern it matches."""

    weight: float
    sample: Callable[[np.random.Generator], str]
    pattern: str  # a regular expression each sampled string fully matches


FAMILIES = {
    "number": Family(0.50, sample_number, r"\d{1,12}"),
    "amount": Family(0.16, sample_amount, AMOUNT_PATTERN),
    "date": Family(0.12, sample_date, DATE_PATTERN),
    "time": Family(0.06, sample_time, TIME_PATTERN),
    "phone": Family(
        0.10, lambda rng: fill(weighted(PHONE_STYLES, rng), rng), template_pattern(PHONE_STYLES)
    ),  # fmt: skip
    "id": Family(
        0.06, lambda rng: fill(weighted(ID_STYLES, rng), rng), template_pattern(ID_STYLES)
    ),
}


def draw_families(n: int, rng: np.random.Generator, weights: dict[str, float] | None = None):
    """(n,) family names, each drawn by its weight (``FAMILIES``' unless given)."""
    weights = weights or {k: f.weight for k, f in FAMILIES.items()}
    unknown = set(weights) - set(FAMILIES)
    if unknown:
        raise ValueError(f"unknown format families {sorted(unknown)}: one of {list(FAMILIES)}")
    names = list(weights)
    w = np.array([weights[k] for k in names], np.float64)
    return [names[i] for i in rng.choice(len(names), size=n, p=w / w.sum())]


def sample_texts(n: int, rng: np.random.Generator, weights: dict[str, float] | None = None):
    """n formatted numbers (list[str]): the families drawn first, then each string in order."""
    return [FAMILIES[f].sample(rng) for f in draw_families(n, rng, weights)]


# --- the lines -----------------------------------------------------------------------------------

# Blank columns between neighbours' ink per layout, drawn per pair (< 0: they overlap). Seed
# lines keep their digits as MNIST drew them; the others warp them as the natural layout does.
TEXT_GAPS = {
    layouts.SEED: (3.0, 8.0),
    layouts.NATURAL: (2.0, 8.0),
    layouts.TOUCHING: (-3.0, 1.0),  # close-written: digits touch and overlap
    layouts.SPACED: TouchingParams().ink_gap,  # -2 .. 8, as people write
}
SEPARATOR_GAP_MIN = -1.0  # a separator never hides inside a digit
SPACE_GAP_MIN = 0.0  # a space's blank columns stay blank
MAX_SHIFT = 3  # rows a separator follows its neighbouring digits up or down


@dataclass
class TextLines:
    """A batch of formatted numbers drawn as lines."""

    images: np.ndarray  # (n, 28, W) uint8, white ink on black, padded on the right with 0
    widths: np.ndarray  # (n,) int32: the real width of each line (columns >= it are 0)
    texts: list[str]  # the label of each line, separators and spaces included
    layouts: np.ndarray  # (n,) uint8: LAYOUT_IDS
    spans: list[np.ndarray]  # per line (len(text), 2) int64: each character's first and last
    # ink column (a space: its blank columns)

    def __len__(self) -> int:
        return len(self.widths)


def ink_boxes(cells: np.ndarray) -> np.ndarray:
    """(m, 28, 28) -> (4, m) int64: first/last ink row, first/last ink column (ink = > 0)."""
    rows, cols = (cells > 0).any(2), (cells > 0).any(1)
    last = DIGIT_SIZE - 1
    return np.stack([rows.argmax(1), last - rows[:, ::-1].argmax(1),
                     cols.argmax(1), last - cols[:, ::-1].argmax(1)]).astype(np.int64)  # fmt: skip


def digit_cells(pool, labels, digits, warped, rng, p: NaturalParams, t: TouchingParams, index):
    """Pool images of the classes ``digits`` (m,), those flagged ``warped`` warped as the
    natural layout warps -> (cells (m, 28, 28) uint8, top (m,) int64: the row shift drawn)."""
    order, starts, counts = index if index is not None else class_index(labels)
    idx = order[starts[digits] + (rng.random(len(digits)) * counts[digits]).astype(np.int64)]
    cells, top = pool[idx], np.zeros(len(digits), np.int64)
    which = np.flatnonzero(warped)
    d = layouts.touching_draws(len(which), rng, p, t, 1, spaced=True)  # (k, 1) each
    for s in range(0, len(which), BLOCK_DIGITS):
        sl = slice(s, min(s + BLOCK_DIGITS, len(which)))
        block = {k: v[sl] for k, v in d.items()}
        centres = np.full((sl.stop - sl.start, 1), DIGIT_SIZE / 2)
        patches, _, dy, _ = warp_digits(pool[idx[which[sl]]][:, None], block, p, centres)
        cells[which[sl]], top[which[sl]] = patches[:, 0], dy[:, 0].astype(np.int64)
    return cells, top


def separator_cells(chars: list[str], rng) -> tuple[np.ndarray, np.ndarray]:
    """Drawn separators -> (cells (m, 28, 28) uint8, the patch left-aligned; widths (m,))."""
    cells = np.zeros((len(chars), IMG_H, DIGIT_SIZE), np.uint8)
    widths = np.zeros(len(chars), np.int64)
    for i, ch in enumerate(chars):
        patch = separators.draw_separator(ch, rng)
        widths[i] = min(patch.shape[1], DIGIT_SIZE)
        cells[i, :, : widths[i]] = patch[:, :DIGIT_SIZE]
    return cells, widths


def follow_digits(kind: np.ndarray, foot: np.ndarray, line: np.ndarray) -> np.ndarray:
    """Row shift of each separator: its neighbouring digits' mean foot (the nearest digit on
    each side in its line) less the baseline, clipped to +-MAX_SHIFT; 0 for digits."""
    m, at = len(kind), np.arange(len(kind))
    before = np.maximum.accumulate(np.where(kind == 0, at, -1))  # nearest digit at or before
    after = np.minimum.accumulate(np.where(kind == 0, at, m)[::-1])[::-1]  # at or after
    has_b = (before >= 0) & (line[np.maximum(before, 0)] == line)
    has_a = (after < m) & (line[np.minimum(after, m - 1)] == line)
    total = np.where(has_b, foot[np.maximum(before, 0)], 0) + np.where(
        has_a, foot[np.minimum(after, m - 1)], 0
    )
    count = has_b.astype(np.int64) + has_a
    dev = np.where(count > 0, total / np.maximum(count, 1) - separators.BASELINE, 0.0)
    shift = np.clip(np.round(dev), -MAX_SHIFT, MAX_SHIFT).astype(np.int64)
    return np.where(kind == 0, 0, shift)


def pair_gaps(kind: np.ndarray, line: np.ndarray, lay: np.ndarray, rng) -> np.ndarray:
    """(m,) gap before each character (0 for a line's first): uniform in its line's TEXT_GAPS,
    at least SEPARATOR_GAP_MIN beside a separator; beside a space at least half the line's
    largest gap, so a space's blank (a gap, its 6-16 columns, a gap) is wider than any gap
    between the characters of its line."""
    lo = np.array([TEXT_GAPS[int(v)][0] for v in lay[line]])
    hi = np.array([TEXT_GAPS[int(v)][1] for v in lay[line]])
    gap = rng.uniform(lo, hi)
    prev = np.concatenate([[0], kind[:-1]])
    gap = np.where((kind == 1) | (prev == 1), np.maximum(gap, SEPARATOR_GAP_MIN), gap)
    beside_space = np.maximum(hi / 2, SPACE_GAP_MIN)  # a space: wider than any gap in its line
    gap = np.where((kind == 2) | (prev == 2), np.maximum(gap, beside_space), gap)
    first = np.concatenate([[True], line[1:] != line[:-1]])
    return np.where(first, 0.0, gap)


def compose_text_lines(
    pool: np.ndarray,
    labels: np.ndarray,
    texts: list[str],
    rng: np.random.Generator,
    layout="people",
    params: NaturalParams | None = None,
    touching: TouchingParams | None = None,
    width: int | None = None,
    pad_to: int = 1,
    index: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
) -> TextLines:
    """Draw formatted numbers (strings over TEXT_ALPHABET) as lines of pool digits and drawn
    separators -> ``TextLines``.

    layout: (n,) layout ids, or a layout or mix name / {name: weight} (``draw_layouts``); it
    sets each line's warp and gaps (``TEXT_GAPS``). Margins as the spaced layout's. Images are
    padded to the widest line rounded up to pad_to, or to ``width``.
    """
    p, t = params or NaturalParams(), touching or TouchingParams()
    separators.encode_texts(texts)  # every character in the alphabet, or a clear error
    if any(len(s) == 0 for s in texts):
        raise ValueError("every text must have at least one character")
    n = len(texts)
    lay = np.asarray(layout if isinstance(layout, np.ndarray) else draw_layouts(layout, n, rng))
    chars = [c for s in texts for c in s]
    line = np.repeat(np.arange(n), [len(s) for s in texts])
    kind = np.array([0 if c.isdigit() else 2 if c == " " else 1 for c in chars], np.int64)
    cells = np.zeros((len(chars), IMG_H, DIGIT_SIZE), np.uint8)
    top = np.zeros(len(chars), np.int64)
    dig = np.flatnonzero(kind == 0)
    digits = np.array([int(chars[i]) for i in dig], np.int64)
    warped = lay[line[dig]] != layouts.SEED
    cells[dig], top[dig] = digit_cells(pool, labels, digits, warped, rng, p, t, index)
    sep = np.flatnonzero(kind != 0)
    cells[sep], space_w = separator_cells([chars[i] for i in sep], rng)
    ink = ink_boxes(cells)
    blank = sep[kind[sep] == 2]
    ink[:, blank] = np.stack([np.zeros_like(blank), np.full_like(blank, IMG_H - 1),
                              np.zeros_like(blank), space_w[kind[sep] == 2] - 1])  # fmt: skip
    foot = layouts.clip_rows(top, ink) + ink[1]
    top += follow_digits(kind, foot, line)
    gaps = pair_gaps(kind, line, lay, rng)
    margin = rng.integers(int(t.margin[0]), int(t.margin[1]) + 1, size=(n, 2))
    return place_lines(cells, ink, top, gaps, margin, texts, lay, width, pad_to)


def place_lines(cells, ink, top, gaps, margin, texts, lay, width, pad_to) -> TextLines:
    """Place each line's characters left to right by their ink (``layouts.place_spaced``) and
    paste them, the lines of one length at a time. cells (m, 28, 28), ink (4, m), top (m,) and
    gaps (m,) are per character, flat over the lines in order; margin (n, 2)."""
    n = len(texts)
    lengths = np.array([len(s) for s in texts], np.int64)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    widths = np.zeros(n, np.int32)
    spans: list[np.ndarray] = [np.zeros((0, 2), np.int64)] * n
    pieces = []
    for length in np.unique(lengths):
        rows = np.flatnonzero(lengths == length)
        at = starts[rows][:, None] + np.arange(length)  # (k, L) characters of these lines
        box = tuple(e[at] for e in ink)
        x0, y0, w = layouts.place_spaced(top[at], box, gaps[at][:, 1:], margin[rows])
        widths[rows] = w
        pieces.append((rows, paste(cells[at], x0, y0, int(w.max()))))
        for r, left, right in zip(rows, x0 + box[2], x0 + box[3], strict=True):
            spans[r] = np.stack([left, right], axis=1)
    out = np.zeros((n, IMG_H, output_width(widths, width, pad_to)), np.uint8)
    for rows, img in pieces:
        out[rows, :, : img.shape[2]] = img
    return TextLines(out, widths, list(texts), lay.astype(np.uint8), spans)
