"""Drawn separators: every mark, drawn many times, keeps its size and place on a 28-px line
(digits from row ~4 to the baseline at row ~24), and the alphabet encodes texts."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from digitseq.data import separators as sep
from digitseq.data.mnist_style import stroke_width

DRAWS = 300
BASELINE, MID = sep.BASELINE, sep.MID


def drawn(ch: str, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [sep.draw_separator(ch, rng) for _ in range(DRAWS)]


def mean_column(patch: np.ndarray, rows: slice) -> float:
    """The mean column of the ink (> 0, weighted by its value) in ``rows``."""
    part = patch[rows].astype(np.float64)
    return float((part.sum(axis=0) * np.arange(patch.shape[1])).sum() / part.sum())


def ink_rows(patch: np.ndarray) -> np.ndarray:
    return np.flatnonzero(patch.any(axis=1))


def test_the_alphabet_is_digits_then_separators_then_a_space():
    assert sep.TEXT_ALPHABET == "0123456789.,-/:()+ "
    assert len(set(sep.TEXT_ALPHABET)) == len(sep.TEXT_ALPHABET)
    classes, lengths = sep.encode_texts(["12.50", "+44 20", "7"])
    assert lengths.tolist() == [5, 6, 1]
    assert classes[0, :5].tolist() == [2, 3, 11, 6, 1]  # class i + 1 = TEXT_ALPHABET[i]
    assert classes[1, :6].tolist() == [18, 5, 5, 19, 3, 1]
    assert (classes[2, 1:] == sep.PAD_LABEL).all()
    with pytest.raises(ValueError, match="outside"):
        sep.encode_texts(["12a"])
    with pytest.raises(ValueError, match="outside"):
        sep.encode_texts(["1€"])


@pytest.mark.parametrize("ch", list(sep.SEPARATORS[:-1]))
def test_every_mark_is_a_cropped_bright_line_patch(ch):
    for patch in drawn(ch, seed=1):
        assert patch.dtype == np.uint8 and patch.shape[0] == 28 and 1 <= patch.shape[1] <= 28
        assert patch[:, 0].any() and patch[:, -1].any()  # cropped to its ink columns
        assert patch.max() >= 200  # a stroke's core saturates as MNIST's do
        assert sep.ink_box(patch) is not None


def test_the_same_rng_draws_the_same_marks_and_unknown_marks_are_refused():
    for ch in sep.SEPARATORS:
        a = sep.draw_separator(ch, np.random.default_rng(7))
        b = sep.draw_separator(ch, np.random.default_rng(7))
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="no drawn separator"):
        sep.draw_separator("x", np.random.default_rng(0))


def test_a_dot_is_small_and_sits_on_the_baseline():
    for patch in drawn("."):
        top, bottom, left, right = sep.ink_box(patch)
        assert bottom - top + 1 <= 8 and right - left + 1 <= 8, (top, bottom, left, right)
        assert BASELINE - 3 <= bottom <= BASELINE + 1, bottom  # its foot near the baseline
        assert top >= 15  # all its ink in the bottom rows


def test_a_comma_descends_below_the_baseline_slanting_left():
    dot_feet = [sep.ink_box(p)[1] for p in drawn(".")]
    for patch in drawn(","):
        top, bottom, _, _ = sep.ink_box(patch)
        assert bottom >= BASELINE + 2 > max(dot_feet), (bottom, max(dot_feet))
        assert top >= 16 and bottom - top + 1 >= 5  # a head near the baseline, then a tail
        foot = mean_column(patch, slice(bottom - 1, bottom + 1))
        head = mean_column(patch, slice(top, top + 3))
        assert foot < head, (foot, head)  # the tail goes down to the left


def test_a_dash_is_a_thin_horizontal_stroke_at_mid_height():
    for patch in drawn("-"):
        top, bottom, left, right = sep.ink_box(patch)
        width, height = right - left + 1, bottom - top + 1
        assert 6 <= width <= 14 and height <= 7 and width > height, (width, height)
        assert MID - 3 <= (top + bottom) / 2 <= MID + 3.5


def test_a_slash_is_a_digit_tall_and_leans_right():
    for patch in drawn("/"):
        top, bottom, _, _ = sep.ink_box(patch)
        assert bottom - top + 1 >= 19 and bottom >= BASELINE - 1, (top, bottom)
        high = mean_column(patch, slice(top, top + 3))
        low = mean_column(patch, slice(bottom - 2, bottom + 1))
        assert high > low + 2, (high, low)  # top ink right of bottom ink


def test_a_colon_is_two_dots_one_high_one_low():
    for patch in drawn(":"):
        count, _, stats, centroids = cv2.connectedComponentsWithStats(
            (patch > 0).astype(np.uint8), connectivity=8
        )
        assert count - 1 == 2, count - 1
        ys = sorted(centroids[1:, 1])
        assert ys[0] < MID and ys[1] > MID + 4, ys
        assert (stats[1:, cv2.CC_STAT_HEIGHT] <= 8).all()  # each one a dot


@pytest.mark.parametrize("ch", ["(", ")"])
def test_parentheses_are_tall_arcs_that_open_the_right_way(ch):
    for patch in drawn(ch):
        rows = ink_rows(patch)
        top, bottom = rows[0], rows[-1]
        assert bottom - top + 1 >= 20, (top, bottom)
        third = (bottom - top + 1) // 3
        ends = (mean_column(patch, slice(top, top + 3))
                + mean_column(patch, slice(bottom - 2, bottom + 1))) / 2  # fmt: skip
        middle = mean_column(patch, slice(top + third, bottom + 1 - third))
        # '(' bows left: its middle lies left of its ends; ')' the other way
        assert (middle < ends - 1) if ch == "(" else (middle > ends + 1), (middle, ends)


def test_a_plus_is_two_crossing_strokes_at_mid_height():
    for patch in drawn("+"):
        top, bottom, left, right = sep.ink_box(patch)
        assert MID - 3 <= (top + bottom) / 2 <= MID + 4
        assert right - left + 1 >= 7 and bottom - top + 1 >= 7
        core = patch > 127
        assert core.sum(axis=1).max() >= 5 and core.sum(axis=0).max() >= 5  # a bar each way
        assert core[top : bottom + 1, left : right + 1].mean() < 0.6  # strokes, not a blob
        assert cv2.connectedComponents(core.astype(np.uint8))[0] - 1 == 1  # they cross


def test_a_space_is_blank_columns():
    widths = [p.shape[1] for p in drawn(" ")]
    for patch in drawn(" "):
        assert patch.shape[0] == 28 and not patch.any()
    assert min(widths) >= sep.SPACE_WIDTH[0] and max(widths) <= sep.SPACE_WIDTH[1]
    assert len(set(widths)) > 5


def test_pens_are_mnist_wide_and_vary():
    widths = [stroke_width(p > 127) for ch in "/()-" for p in drawn(ch, seed=3)[:100]]
    assert 1.8 <= np.median(widths) <= 3.0  # MNIST's strokes: ~1.6-3.3 px at this scale
    assert np.percentile(widths, 95) - np.percentile(widths, 5) > 0.6  # thin and thick pens
