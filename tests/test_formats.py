"""Formatted numbers: each family's strings match its pattern with at most 12 digits, the mix
has the declared shares, and the composed lines draw each character in order, left to right."""

from __future__ import annotations

import datetime
import re

import numpy as np
import pytest

from digitseq.data import formats, layouts, mnist
from digitseq.data import separators as sep

PER_FAMILY = 600


def valid_date(text: str) -> bool:
    """Whether some reading of the date (day-month, month-day or year first) is a real date."""
    parts = [int(p) for p in re.split(r"[/.-]", text)]
    if len(re.split(r"[/.-]", text)[0]) == 4:
        orders = [(parts[0], parts[1], parts[2])]
    else:
        orders = [(parts[2], parts[1], parts[0]), (parts[2], parts[0], parts[1])]
    for y, m, d in orders:
        try:
            datetime.date(y if y >= 100 else 2000 + y, m, d)
            return True
        except ValueError:
            pass
    return False


@pytest.mark.parametrize("name", list(formats.FAMILIES))
def test_every_family_samples_strings_of_its_pattern(name):
    family, rng = formats.FAMILIES[name], np.random.default_rng(11)
    texts = [family.sample(rng) for _ in range(PER_FAMILY)]
    for text in texts:
        assert re.fullmatch(family.pattern, text), (name, text)
        assert 1 <= sum(c.isdigit() for c in text) <= formats.MAX_DIGITS, text
        assert set(text) <= set(sep.TEXT_ALPHABET), text
        assert text == text.strip(), text
    assert len(set(texts)) > PER_FAMILY * 0.8  # varied, not a handful of strings
    if name == "date":
        assert all(valid_date(t) for t in texts)
        assert {"/", ".", "-"} <= {c for t in texts for c in t}
    if name == "time":
        for t in texts:
            h, m, *s = (int(v) for v in t.split(":"))
            assert h < 24 and m < 60 and all(v < 60 for v in s), t


def test_amounts_come_in_both_conventions():
    rng = np.random.default_rng(12)
    texts = [formats.sample_amount(rng) for _ in range(2000)]
    styles = {
        "1,250.00": r"-?\d{1,3}(,\d{3})+\.\d{2}",
        "1.250,00": r"-?\d{1,3}(\.\d{3})+,\d{2}",
        "1 250,00": r"-?\d{1,3}( \d{3})+,\d{2}",
        "12,50": r"-?\d+,\d{2}",
        "12.50": r"-?\d+\.\d{2}",
    }
    for style, pattern in styles.items():
        assert sum(bool(re.fullmatch(pattern, t)) for t in texts) > 50, style


def test_phone_numbers_come_in_several_national_styles():
    rng = np.random.default_rng(13)
    texts = [formats.FAMILIES["phone"].sample(rng) for _ in range(2000)]
    for prefix in ("(", "+1 ", "+44 ", "+33 ", "+49 ", "0"):
        assert any(t.startswith(prefix) for t in texts), prefix
    assert any(re.fullmatch(r"\d{3}-\d{3}-\d{4}", t) for t in texts)


def test_the_mix_has_the_declared_shares_in_draw_order():
    n = 20_000
    names = formats.draw_families(n, np.random.default_rng(14))
    for name, family in formats.FAMILIES.items():
        share = names.count(name) / n
        assert abs(share - family.weight) < 0.015, (name, share, family.weight)
    assert abs(sum(f.weight for f in formats.FAMILIES.values()) - 1.0) < 1e-9
    assert formats.FAMILIES["number"].weight >= 0.45  # plain numbers are still most
    # sample_texts draws the families first, then each string in order
    fams = formats.draw_families(500, np.random.default_rng(15))
    texts = formats.sample_texts(500, np.random.default_rng(15))
    for fam, text in zip(fams, texts, strict=True):
        assert re.fullmatch(formats.FAMILIES[fam].pattern, text), (fam, text)
    only = formats.sample_texts(50, np.random.default_rng(16), weights={"time": 1.0})
    assert all(re.fullmatch(formats.TIME_PATTERN, t) for t in only)
    with pytest.raises(ValueError, match="unknown format families"):
        formats.draw_families(3, np.random.default_rng(0), weights={"zip": 1.0})


def block_pool() -> tuple[np.ndarray, np.ndarray]:
    """A pool whose class c is a solid block 6 + c px wide of value 100 + 15 c (3 of each)."""
    labels = np.repeat(np.arange(10, dtype=np.uint8), 3)
    pool = np.zeros((len(labels), 28, 28), np.uint8)
    for i, c in enumerate(labels):
        pool[i, 6:23, 4 : 10 + c] = 100 + 15 * c
    return pool, labels


def test_a_seed_line_draws_each_character_in_order_and_its_width():
    pool, labels = block_pool()
    texts = ["(555) 010-0123", "1.250,00", "14:30", "+44 20 7946 0958", "7", "12/05/2023"]
    rng = np.random.default_rng(17)
    lines = formats.compose_text_lines(pool, labels, texts, rng, layout="seed", pad_to=8)
    assert lines.images.dtype == np.uint8 and lines.images.shape[1] == 28
    assert lines.images.shape[2] % 8 == 0 and lines.images.shape[2] >= lines.widths.max()
    assert lines.texts == texts and (lines.layouts == layouts.SEED).all()
    for img, width, text, spans in zip(lines.images, lines.widths, texts, lines.spans, strict=True):
        assert spans.shape == (len(text), 2)
        assert (np.diff(spans[:, 0]) > 0).all() and (spans[1:, 0] > spans[:-1, 1]).all()
        assert not img[:, width:].any() and spans[-1, 1] < width
        ink_cols = img.any(axis=0)
        for ch, (a, b) in zip(text, spans, strict=True):
            cols = img[:, a : b + 1]
            if ch == " ":
                assert not cols.any() and sep.SPACE_WIDTH[0] <= b - a + 1 <= sep.SPACE_WIDTH[1]
            elif ch.isdigit():  # the pool block of its class, unwarped
                assert b - a + 1 == 6 + int(ch) and set(np.unique(cols)) == {0, 100 + 15 * int(ch)}
            else:
                assert ink_cols[a] and ink_cols[b]
                rows = np.flatnonzero(cols.any(axis=1))
                if ch == ".":  # on the digits' feet (row 22 here, 2 above the usual 24)
                    assert 22 - 3 <= rows[-1] <= 22 + 1, rows
        inside = np.zeros(img.shape[1], bool)
        for a, b in spans:
            inside[a : b + 1] = True
        assert not ink_cols[~inside].any()  # blank between characters (seed gaps >= 3 px)


@pytest.fixture(scope="module")
def test_pool(mnist_data):
    images, labels, _ = mnist.split_pool(mnist_data, "test")
    return images, labels


@pytest.mark.parametrize("layout", ["natural", "touching", "spaced", "people"])
def test_mnist_lines_keep_their_characters_in_order(test_pool, layout):
    images, labels = test_pool
    texts = formats.sample_texts(60, np.random.default_rng(18))
    lines = formats.compose_text_lines(images, labels, texts, np.random.default_rng(19), layout)
    for img, width, text, spans in zip(lines.images, lines.widths, texts, lines.spans, strict=True):
        assert (np.diff(spans[:, 0]) > 0).all() and (np.diff(spans[:, 1]) > 0).all(), spans
        assert not img[:, width:].any() and spans.max() < width
        for ch, (a, b) in zip(text, spans, strict=True):
            assert img[:, a : b + 1].any() != (ch == " "), (text, ch)
        blank = spans[1:, 0] - spans[:-1, 1] - 1  # blank columns between neighbours
        at = [j for j, ch in enumerate(text) if ch == " "]
        others = np.delete(blank, [k for j in at for k in (j - 1, j)])
        for j in at:  # a space is wider than any other gap of its line
            assert spans[j + 1, 0] - spans[j - 1, 1] - 1 > others.max(initial=0), (text, spans)
        if layout == "natural":  # gaps of 2 px or more: each character stands alone
            for (_, b), (a, _) in zip(spans[:-1], spans[1:], strict=True):
                assert not img[:, b + 1 : a].any()


def test_close_written_lines_are_narrower_and_the_same_rng_gives_the_same_lines(test_pool):
    images, labels = test_pool
    texts = formats.sample_texts(80, np.random.default_rng(20))

    def compose(layout, seed):
        rng = np.random.default_rng(seed)
        return formats.compose_text_lines(images, labels, texts, rng, layout)

    a, b, c = compose("people", 21), compose("people", 21), compose("people", 22)
    np.testing.assert_array_equal(a.images, b.images)
    np.testing.assert_array_equal(a.widths, b.widths)
    assert all((x == y).all() for x, y in zip(a.spans, b.spans, strict=True))
    assert a.images.shape != c.images.shape or (a.images != c.images).any()
    assert compose("touching", 23).widths.mean() < compose("natural", 23).widths.mean() - 20
    ids = np.full(len(texts), layouts.SPACED, np.uint8)
    assert (formats.compose_text_lines(images, labels, texts, np.random.default_rng(0),
                                       ids).layouts == layouts.SPACED).all()  # fmt: skip


def test_bad_texts_are_refused(test_pool):
    images, labels = test_pool
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="outside"):
        formats.compose_text_lines(images, labels, ["12a"], rng)
    with pytest.raises(ValueError, match="at least one character"):
        formats.compose_text_lines(images, labels, ["12", ""], rng)
