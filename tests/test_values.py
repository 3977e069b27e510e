"""What a reading held to a named format means: the ISO date, the time, the amount as a decimal,
in every output that has the reading (issue 22: "returned parsed ... with a clear error when the
text is not a valid date")."""

from __future__ import annotations

import numpy as np
import pytest

from digitseq.core.constants import TEXT_ALPHABET
from digitseq.reading.predictor import Predictor, Reading
from digitseq.reading.values import value_of


@pytest.mark.parametrize(
    ("text", "iso"),
    [("07/12/2026", "2026-12-07"), ("12/31/2026", "2026-12-31"), ("2026-12-07", "2026-12-07"),
     ("2026/12/07", "2026-12-07"), ("7.12.26", "2026-12-07"), ("15/08/81", "1981-08-15"),
     ("29.02.2024", "2024-02-29"), ("1-1-00", "2000-01-01")],
)  # fmt: skip
def test_a_date_reads_as_its_iso_date_day_first_unless_only_month_first_makes_one(text, iso):
    assert value_of(text, "date") == (iso, None)


@pytest.mark.parametrize(
    ("text", "fmt"),
    [("31/02/2026", "date"), ("29.02.2023", "date"), ("2026-13-01", "date"), ("24:00", "time"),
     ("1,25,000", "amount")],
)  # fmt: skip
def test_a_reading_that_is_no_such_value_says_so_in_one_line(text, fmt):
    assert value_of(text, fmt) == (None, f"not a valid {fmt}: {text}")


@pytest.mark.parametrize(
    ("text", "value"),
    [("9:05", "09:05:00"), ("14:30", "14:30:00"), ("14:30:15", "14:30:15")],
)  # fmt: skip
def test_a_time_reads_on_a_24_hour_clock(text, value):
    assert value_of(text, "time") == (value, None)


@pytest.mark.parametrize(
    ("text", "value"),
    [("1,250.00", "1250.00"), ("1.250,00", "1250.00"), ("12,50", "12.50"), ("1 250 000", "1250000"),
     ("1,250", "1250"), ("-3.77", "-3.77"), ("1250,5", "1250.5"), ("0,50", "0.50")],
)  # fmt: skip
def test_an_amount_reads_as_an_exact_decimal_in_either_convention(text, value):
    assert value_of(text, "amount") == (value, None)


def spelled(text: str) -> np.ndarray:
    """The frame log-probabilities of a reader of text sure of ``text``: each character on a
    frame of its own between blanks."""
    frames = []
    for ch in text:
        for cls in (0, 1 + TEXT_ALPHABET.index(ch)):
            row = np.full(1 + len(TEXT_ALPHABET), 1e-4)
            row[cls] = 1.0
            frames.append(np.log(row / row.sum()))
    return np.array(frames, dtype=np.float32)


def text_reader() -> Predictor:
    config = {"model": {"arch": "ctc", "kind": "ctc", "hparams": {"alphabet": "text"}},
              "train": {"lengths": [1, 12]}}  # fmt: skip
    return Predictor(None, config, "text-reader", "test")


def test_a_reading_held_to_a_date_carries_its_iso_date_into_its_json():
    r = Reading(file="due.png")
    text_reader().fill(r, spelled("07/12/2026"), pattern="date")
    assert (r.text, r.digits, r.value, r.warning) == ("07/12/2026", "07122026", "2026-12-07", None)
    assert r.to_json()["value"] == "2026-12-07"


def test_an_impossible_date_gets_no_value_and_a_warning_and_no_pattern_no_value():
    r = Reading(file="feb.png")
    text_reader().fill(r, spelled("31/02/2026"), pattern="date")
    assert (r.text, r.value) == ("31/02/2026", None)
    assert r.warning == "not a valid date: 31/02/2026"
    plain = Reading(file="amount.png")
    text_reader().fill(plain, spelled("1,250.00"))
    assert (plain.text, plain.value) == ("1,250.00", None)  # no format asked: no meaning given
    held = Reading(file="amount.png")
    text_reader().fill(held, spelled("1,250.00"), pattern="amount", min_confidence=0.9)
    assert (held.value, held.abstained) == ("1250.00", False)


@pytest.mark.parametrize("day", [(2026, 12, 31), (1999, 1, 5)])
def test_every_date_style_read_in_its_own_order_gives_back_its_date(day):
    """Each date style of the data (DD/MM/YYYY, M/D/YY, YYYY-MM-DD, ...), held to the ordered
    format of its style, is accepted by it and means the date written; the other orders refuse
    the day-31 date (no month 31)."""
    import re

    from digitseq.data.formats import DATE_STYLES
    from digitseq.models.ctc_pattern import FORMATS

    y, m, d = day
    fields = {"YYYY": f"{y}", "YY": f"{y % 100:02d}", "MM": f"{m:02d}", "DD": f"{d:02d}",
              "M": f"{m}", "D": f"{d}"}  # fmt: skip
    for style in DATE_STYLES:
        text = re.sub("YYYY|YY|MM|DD|M|D", lambda g: fields[g.group()], style)
        order = {"D": "dmy", "M": "mdy", "Y": "ymd"}[style[0]]
        assert re.fullmatch(FORMATS[f"date-{order}"], text), (style, text)
        assert value_of(text, f"date-{order}") == (f"{y}-{m:02d}-{d:02d}", None), style
        if d == 31:
            for other in {"dmy", "mdy", "ymd"} - {order}:
                assert not re.fullmatch(FORMATS[f"date-{other}"], text), (style, other)


def test_a_date_held_to_month_first_means_month_first():
    assert value_of("07/12/2026", "date-mdy") == ("2026-07-12", None)
    assert value_of("07/12/2026", "date") == ("2026-12-07", None)  # day first when it can be
    assert value_of("31/12/2026", "date-mdy") == (None, "not a valid date: 31/12/2026")
