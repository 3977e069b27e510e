"""What a reading held to a named format means: ``value_of(text, format)`` -> (value, problem).

- ``date``: the ISO date (``2026-12-07``). Day first, as most of the world writes it, unless only
  the month-first order makes a date (``12/31/2026``); year first when it has four digits first.
  ``date-dmy``, ``date-mdy`` and ``date-ymd`` take the order given (``07/12/2026`` is 2026-07-12
  held to ``date-mdy``). Two-digit years: 69-99 are 1969-1999, 00-68 are 2000-2068 (POSIX's and
  Python's ``%y``).
- ``time``: ``HH:MM:SS`` on a 24-hour clock (``9:05`` -> ``09:05:00``).
- ``amount``: a decimal string (exact, unlike a float): ``1,250.00`` and ``1.250,00`` ->
  ``1250.00``, ``12,50`` -> ``12.50``, ``1 250 000`` -> ``1250000``. The last separator is the
  decimal one when one or two digits follow it; every other is a thousands separator.

A text that is no such value (``31/02/2026``) gives (None, why) for the reading's warning.
"""

from __future__ import annotations

import datetime as dt
import re

VALUED = ("date", "date-dmy", "date-mdy", "date-ymd", "time", "amount")  # readings with a value

_DAY_MONTH_YEAR = re.compile(r"(\d{1,2})([/.-])(\d{1,2})\2(\d{2}|\d{4})")
_YEAR_MONTH_DAY = re.compile(r"(\d{4})([/.-])(\d{1,2})\2(\d{1,2})")
_TIME = re.compile(r"(\d{1,2}):(\d{2})(?::(\d{2}))?")
_AMOUNT = re.compile(r"(-?)(\d[\d., ]*)")


def value_of(text: str, fmt: str) -> tuple[str | None, str | None]:
    """(the value of ``text`` read as ``fmt``, None) or (None, why it has none)."""
    kind, _, order = fmt.partition("-")
    parse = {"date": date_value, "time": time_value, "amount": amount_value}[kind]
    value = parse(text, order) if order else parse(text)
    return (value, None) if value is not None else (None, f"not a valid {kind}: {text}")


def real_date(year: int, month: int, day: int) -> str | None:
    try:
        return dt.date(year, month, day).isoformat()
    except ValueError:
        return None


def date_value(text: str, order: str = "") -> str | None:
    """The ISO date of ``text`` in ``order`` ('dmy', 'mdy', 'ymd'; '': day first if it can)."""
    if (m := _YEAR_MONTH_DAY.fullmatch(text)) and order in ("", "ymd"):
        return real_date(int(m[1]), int(m[3]), int(m[4]))
    if not (m := _DAY_MONTH_YEAR.fullmatch(text)) or order == "ymd":
        return None
    first, second, year = int(m[1]), int(m[3]), int(m[4])
    if len(m[4]) == 2:
        year += 1900 if year >= 69 else 2000
    day_first, month_first = real_date(year, second, first), real_date(year, first, second)
    return {"dmy": day_first, "mdy": month_first}.get(order, day_first or month_first)


def time_value(text: str) -> str | None:
    if not (m := _TIME.fullmatch(text)):
        return None
    h, mi, s = int(m[1]), int(m[2]), int(m[3] or 0)
    return f"{h:02d}:{mi:02d}:{s:02d}" if h < 24 and mi < 60 and s < 60 else None


def amount_value(text: str) -> str | None:
    if not (m := _AMOUNT.fullmatch(text)) or not m[2][-1].isdigit():
        return None
    parts = re.split(r"[., ]", m[2])
    decimals = ""
    if len(parts) > 1 and len(parts[-1]) in (1, 2):
        decimals = "." + parts.pop()
    if any(not p for p in parts) or any(len(p) != 3 for p in parts[1:]):
        return None  # 1,,250 or 1,25,000: not thousands
    return m[1] + "".join(parts) + decimals
