"""CTC decoding over the text alphabet (digits and separators, 20 classes): exact string
probabilities, length-bounded beam search and per-character confidences against brute force
on small outputs, and the alphabet following from the number of classes."""

from __future__ import annotations

import math

import numpy as np
import pytest

from digitseq.core.constants import TEXT_ALPHABET
from digitseq.models.ctc_decode import (
    alphabet_of,
    beam_search,
    decode,
    digit_confidences,
    greedy,
    log_softmax,
    string_logprob,
)

NC = len(TEXT_ALPHABET) + 1  # 20


def path_table(logp: np.ndarray) -> dict[str, float]:
    """Probability of every string, by enumerating all 20**T frame paths and collapsing."""
    t_len = len(logp)
    idx = np.arange(NC**t_len)
    cls_t = [(idx // NC ** (t_len - 1 - t)) % NC for t in range(t_len)]
    path_logp = sum(logp[t, c] for t, c in enumerate(cls_t))
    table: dict[str, float] = {}
    strings = [""] * len(idx)
    prev = np.full(len(idx), -1)
    for c in cls_t:
        emitted = (c != 0) & (c != prev)
        for i in np.flatnonzero(emitted).tolist():
            strings[i] += TEXT_ALPHABET[c[i] - 1]
        prev = c
    for s, p in zip(strings, np.exp(path_logp).tolist(), strict=True):
        table[s] = table.get(s, 0.0) + p
    return table


def random_logp(rng, t_len: int) -> np.ndarray:
    logits = rng.normal(size=(t_len, NC))
    logits[np.arange(t_len), rng.integers(0, NC, t_len)] += rng.uniform(2, 5)
    return log_softmax(logits)


def test_the_alphabet_follows_from_the_number_of_classes():
    assert alphabet_of(np.zeros((3, 11))) == "0123456789"
    assert alphabet_of(np.zeros((3, 20))) == TEXT_ALPHABET
    with pytest.raises(ValueError, match="shape"):
        greedy(np.zeros((3, 12)))


@pytest.mark.parametrize("seed", range(3))
def test_text_probabilities_and_bounded_search_match_brute_force(seed):
    rng = np.random.default_rng(seed)
    logp = random_logp(rng, 4)
    table = path_table(logp)
    assert sum(table.values()) == pytest.approx(1.0)
    for text, p in sorted(table.items(), key=lambda kv: -kv[1])[:25]:
        assert math.exp(string_logprob(logp, text)) == pytest.approx(p, rel=1e-9, abs=1e-15)
    for lo, hi in ((1, 1), (2, 3), (3, 4)):
        allowed = {s: p for s, p in table.items() if lo <= len(s) <= hi}
        best = max(allowed, key=allowed.get)
        found = beam_search(logp, lo, hi, beam=64)
        assert found[0][0] == best
        assert math.exp(found[0][1]) == pytest.approx(allowed[best], rel=1e-9)


def test_greedy_reads_separators_and_character_confidences_follow_the_definition():
    text = "1.5-0"
    logp = np.full((9, NC), -8.0)
    for t, ch in enumerate("1 . 5 - 0"):
        logp[t, 0 if ch == " " else TEXT_ALPHABET.index(ch) + 1] = 0.0
    logp = log_softmax(logp)
    assert greedy(logp)[0] == text
    d = decode(logp)
    assert d.digits == text and len(d.frames) == 5
    conf = digit_confidences(logp, text)
    for k in range(len(text)):
        alts = sum(math.exp(string_logprob(logp, text[:k] + c + text[k + 1 :]))
                   for c in TEXT_ALPHABET)  # fmt: skip
        assert conf[k] == pytest.approx(math.exp(string_logprob(logp, text)) / alts, rel=1e-9)


def peaky(text_with_blanks: str) -> np.ndarray:
    """A (T, 20) output reading each character of the string in turn (a space: the blank)."""
    logp = np.full((len(text_with_blanks), NC), -8.0)
    for t, ch in enumerate(text_with_blanks):
        logp[t, 0 if ch == " " else TEXT_ALPHABET.index(ch) + 1] = 0.0
    return log_softmax(logp)


def test_a_text_reading_gives_the_text_and_the_digits_with_their_own_spans():
    from digitseq.models.decoders import LineDecoder

    out = LineDecoder().decode(peaky("1 . 5 - 0"))
    assert out["text"] == "1.5-0" and out["digits"] == "150"
    assert len(out["digit_confidences"]) == 3
    assert out["input_spans"] == [[0, 3], [16, 19], [32, 35]]  # frames 0, 4, 8; 4 columns each
    bounded = LineDecoder().decode(peaky("1 . 5 - 0"), (3, 3))  # three digits, nothing else
    assert bounded["text"] == bounded["digits"] and len(bounded["digits"]) == 3


def test_a_pattern_picks_the_most_probable_reading_it_accepts_and_flags_a_poor_fit():
    from digitseq.models.decoders import LineDecoder

    logp = peaky("0 7 / 1 2 / 2 0 2 6")
    slash = TEXT_ALPHABET.index("/") + 1
    logp[10] = log_softmax(np.where(np.arange(NC) == 2, 0.0, -8.0) + (np.arange(NC) == slash) * 7.5)
    assert LineDecoder().decode(logp)["text"] == "07/1212026"  # the second slash read as a 1
    dated = LineDecoder().decode(logp, pattern="date")
    assert dated["text"] == "07/12/2026" and dated["digits"] == "07122026"
    assert "warning" not in dated
    assert LineDecoder().decode(logp, pattern=r"\d{2}/\d{2}/\d{4}")["text"] == "07/12/2026"
    poor = LineDecoder().decode(logp, pattern="time")  # nothing like hh:mm is there
    assert poor["warning"].startswith("unsure")
