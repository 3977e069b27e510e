"""Format-constrained CTC decoding against brute force: on small outputs, the pattern search
finds exactly the most probable string the pattern accepts, with its exact probability."""

from __future__ import annotations

import itertools
import re

import numpy as np
import pytest

from digitseq.core.errors import DigitseqError
from digitseq.models import ctc_decode
from digitseq.models.ctc_pattern import FORMATS, compile_pattern, decode_pattern


def every_string(logp: np.ndarray, alphabet: str) -> dict[str, float]:
    """P(string) for every string, by summing every frame path (C ** T of them)."""
    probs: dict[str, float] = {}
    p = np.exp(logp)
    for path in itertools.product(range(p.shape[1]), repeat=p.shape[0]):
        chars, prev = [], 0
        for c in path:
            if c and c != prev:
                chars.append(alphabet[c - 1])
            prev = c
        text = "".join(chars)
        probs[text] = probs.get(text, 0.0) + float(np.prod(p[np.arange(len(path)), path]))
    return probs


def random_logp(rng, frames: int, classes: int) -> np.ndarray:
    return ctc_decode.log_softmax(rng.normal(0, 2.0, size=(frames, classes)))


@pytest.mark.parametrize(
    "alphabet, pattern",
    [
        ("01-", r"\d+"),
        ("01-", r"\d-\d"),
        ("01-", r"1?0+"),
        ("12/", r"\d{1,2}/\d"),
        ("012", r"(01|2)+"),
        ("01:", r"\d:\d\d|\d"),
    ],
)
def test_the_pattern_search_finds_the_most_probable_accepted_string(alphabet, pattern):
    rng = np.random.default_rng(hash(pattern) % 2**32)
    for _ in range(12):
        logp = random_logp(rng, 6, len(alphabet) + 1)
        probs = every_string(logp, alphabet)
        accepted = {t: p for t, p in probs.items() if re.fullmatch(pattern, t)}
        got = decode_pattern(logp, pattern, alphabet, beam=512)
        if not accepted:
            assert not got.matched and got.text == ""
            continue
        best = max(accepted, key=accepted.get)
        assert got.matched
        assert got.text == best or accepted[got.text] == pytest.approx(accepted[best])
        assert np.exp(got.logprob) == pytest.approx(accepted[got.text], rel=1e-9)
        assert got.free_logprob >= got.logprob - 1e-12


def test_digit_patterns_do_as_well_as_the_length_constrained_search():
    """``\\d{3}`` is ``--digits 3``: the string found is at least as probable (exactly)."""
    rng = np.random.default_rng(3)
    for _ in range(10):
        logp = random_logp(rng, 10, 11)
        want = ctc_decode.decode(logp, 3, 3, beam=64)
        got = decode_pattern(logp, r"\d{3}", beam=2048)  # every prefix kept
        assert len(got.text) == 3
        exact = ctc_decode.string_logprob(logp, got.text)
        assert exact >= ctc_decode.string_logprob(logp, want.digits) - 1e-9
        assert got.logprob <= exact + 1e-9  # the beam's sum never exceeds the exact one


def test_a_pattern_the_output_cannot_explain_is_flagged_not_forced():
    logp = np.log(np.full((8, 11), 1e-9))
    logp[:, 1 + 7] = 0.0  # every frame is sure it sees a 7: "7" is the reading
    got = decode_pattern(ctc_decode.log_softmax(logp), r"\d{3}")
    assert got.text in ("", "777") or got.logprob < got.free_logprob - 10
    date = decode_pattern(ctc_decode.log_softmax(logp), "date")  # needs separators: none here
    assert not date.matched and date.text == ""


def test_named_formats_compile_and_bad_patterns_are_one_line_errors():
    for name in FORMATS:
        assert compile_pattern(name, "0123456789.,-/:()+ ").final.any()
    with pytest.raises(DigitseqError, match="not a valid pattern"):
        compile_pattern("(12", "0123456789")
    with pytest.raises(DigitseqError, match="logp must be"):
        decode_pattern(np.zeros((4, 5)), r"\d")


@pytest.mark.parametrize(
    ("family", "name"),
    [("amount", "amount"), ("date", "date"), ("time", "time"), ("phone", "phone"),
     ("number", "digits")],
)  # fmt: skip
def test_a_named_format_accepts_every_way_its_numbers_are_written(family, name):
    """Held to its format, a reading can only be right if the format accepts how the number was
    written: every style the training and test data write (US, UK, French and German phones,
    dates year-first with slashes, negative amounts, ...) fully matches the named format."""
    import re

    from digitseq.data import formats

    texts = formats.sample_texts(2000, np.random.default_rng(3), {family: 1.0})
    refused = [t for t in texts if not re.fullmatch(FORMATS[name], t)]
    assert not refused, refused[:5]
    people = {
        "phone": ["(555) 010-0123", "+44 20 7946 0958", "06.12.34.56.78", "0301/1234567"],
        "date": ["07/12/2026", "2026-12-07", "2026/12/07", "7.12.26"],
        "amount": ["1,250.00", "12,50", "-3.77", "1 250 000"],
    }
    for written in people.get(name, []):
        assert re.fullmatch(FORMATS[name], written), written


@pytest.mark.parametrize(
    ("name", "misread"),
    [("amount", "5,811,627,97"), ("amount", "3.763,278,42"), ("amount", "1,25.5"),
     ("date", "15.2/2079"), ("date", "35/40/2020"), ("date", "2002/13/10"), ("time", "25:61"),
     ("time", "14:30:75")],
)  # fmt: skip
def test_a_named_format_refuses_a_number_misread_out_of_its_shape(name, misread):
    """A misread separator or digit that gives a number no one writes (a decimal comma after
    comma-grouped thousands, a date with two separators or a 35th day, minute 61) is refused,
    so the constrained search looks for the reading the format does accept."""
    import re

    assert not re.fullmatch(FORMATS[name], misread)


@pytest.mark.parametrize(
    ("pattern", "why"),
    [(r"(\d{64}){64}", "asks for up to 4096"), (r"(\d+){999}", "repeats a part 999"),
     (r"\d*1\d{15}", "too complex")],
)  # fmt: skip
def test_a_pattern_whose_automaton_would_be_huge_is_refused_at_once(pattern, why):
    """Before: ``(\\d{64}){64}`` built its automaton for minutes (a request to the service
    could hold a worker that long); an exponential one (``\\d*1\\d{15}``: 2^16 states) too."""
    import time

    from digitseq.core.errors import DigitseqError
    from digitseq.models.ctc_pattern import compile_pattern

    t0 = time.perf_counter()
    with pytest.raises(DigitseqError, match=why):
        compile_pattern(pattern)
    assert time.perf_counter() - t0 < 5
