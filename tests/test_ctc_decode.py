"""CTC decoding: exact string probabilities, length-constrained beam search vs brute force."""

import itertools
import math

import numpy as np
import pytest

from digitseq.models.ctc_decode import (
    Decoded,
    _batch_logprob,
    _completion_logprob,
    alignment,
    beam_search,
    decode,
    decode_batch,
    digit_confidences,
    greedy,
    log_softmax,
    string_logprob,
)

BLANK = 0
DIGITS = "0123456789"


# ---------------------------------------------------------------- helpers


def path_table(logp: np.ndarray) -> dict[str, float]:
    """Probability of every string, by enumerating all 11**T frame paths and collapsing."""
    t_len = len(logp)
    idx = np.arange(11**t_len)
    key = np.zeros(len(idx), dtype=np.int64)  # collapsed string in base 11, digit d as d+1
    path_logp = np.zeros(len(idx))
    prev = np.full(len(idx), -1)
    for t in range(t_len):
        cls = (idx // 11 ** (t_len - 1 - t)) % 11
        path_logp += logp[t, cls]
        emitted = (cls != BLANK) & (cls != prev)
        key = np.where(emitted, key * 11 + cls, key)
        prev = cls
    keys, inverse = np.unique(key, return_inverse=True)
    probs = np.bincount(inverse, weights=np.exp(path_logp))
    table = {}
    for k, p in zip(keys.tolist(), probs.tolist(), strict=True):
        chars = []
        while k:
            k, c = divmod(k, 11)
            chars.append(str(c - 1))
        table["".join(reversed(chars))] = p
    return table


def forward_table(logp: np.ndarray, max_len: int) -> dict[str, float]:
    """Probability of every string up to max_len digits, by the (separately verified)
    batched forward pass; for T = 6..7, where 11**T paths are too many to enumerate."""
    strings = ["".join(s) for n in range(max_len + 1) for s in itertools.product(DIGITS, repeat=n)]
    return dict(zip(strings, np.exp(_batch_logprob(logp, strings)).tolist(), strict=True))


def random_logp(rng: np.random.Generator, t_len: int, kind: str) -> np.ndarray:
    logits = rng.normal(size=(t_len, 11))
    if kind == "peaky":
        logits[np.arange(t_len), rng.integers(0, 11, t_len)] += rng.uniform(3, 8)
    elif kind == "blanky":
        logits[:, BLANK] += 1.5
    return log_softmax(logits)


def peaky(classes: list[int], strength: float = 9.0) -> np.ndarray:
    """A (T, 11) log-prob matrix whose frame t strongly prefers class classes[t]."""
    logits = np.zeros((len(classes), 11))
    logits[np.arange(len(classes)), classes] = strength
    return log_softmax(logits)


def best_per_length(table: dict[str, float]) -> dict[int, tuple[str, float]]:
    best = {}
    for s, p in table.items():
        if p > 0 and p > best.get(len(s), ("", 0.0))[1]:
            best[len(s)] = (s, p)
    return best


def best_in_range(best: dict[int, tuple[str, float]], lo: int, hi: int):
    fits = [best[n] for n in range(lo, hi + 1) if n in best]
    return max(fits, key=lambda item: item[1]) if fits else None


# ---------------------------------------------------------------- log_softmax


def test_log_softmax_is_stable_and_normalised():
    x = np.array([[1000.0, 0.0, -1000.0], [1.0, 2.0, 3.0]])
    out = log_softmax(x)
    assert np.all(np.isfinite(out[:, :2]))
    np.testing.assert_allclose(np.exp(out).sum(axis=1), 1.0)
    np.testing.assert_allclose(out[1], x[1] - np.log(np.exp(x[1]).sum()))
    np.testing.assert_allclose(log_softmax(x.T, axis=0), out.T)


# ---------------------------------------------------------------- string_logprob


@pytest.mark.parametrize("t_len", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("kind", ["flat", "peaky", "blanky"])
def test_string_logprob_matches_path_enumeration(t_len, kind):
    rng = np.random.default_rng(100 * t_len + len(kind))
    logp = random_logp(rng, t_len, kind).astype(np.float32)
    table = path_table(logp.astype(np.float64))
    assert math.isclose(sum(table.values()), 1.0, rel_tol=1e-6)  # float32 input rounding
    strings = list(table)
    expected = np.log(np.array([table[s] for s in strings]))
    np.testing.assert_allclose(
        _batch_logprob(logp.astype(np.float64), strings), expected, rtol=1e-9
    )
    for i in rng.choice(len(strings), size=min(len(strings), 100), replace=False):
        got = string_logprob(logp, strings[i])
        assert math.isclose(got, expected[i], rel_tol=1e-9, abs_tol=1e-9), strings[i]
    # strings no path produces
    assert string_logprob(logp, "1" * (t_len + 1)) == -math.inf
    if t_len >= 2:
        assert string_logprob(logp, "7" * t_len) == -math.inf  # repeats need blanks between


def test_string_logprob_repeats_need_blank():
    logp = peaky([2, 2, 2])
    assert string_logprob(logp, "11") > -math.inf  # 1 blank 1
    assert string_logprob(logp, "111") == -math.inf  # needs 5 frames
    assert string_logprob(peaky([0, 0]), "") == pytest.approx(2 * peaky([0])[0, 0])
    assert string_logprob(np.zeros((0, 11)), "") == 0.0
    assert string_logprob(np.zeros((0, 11)), "3") == -math.inf


def test_bad_inputs_raise():
    with pytest.raises(ValueError):
        string_logprob(np.zeros((3, 10)), "1")
    with pytest.raises(ValueError):
        string_logprob(peaky([1, 2]), "1a")


# ---------------------------------------------------------------- beam_search


def _beam_gap(table, best, logp, lo, hi, beam) -> float:
    """Check beam_search's output; return how many nats its best is below the true best."""
    found = beam_search(logp, lo, hi, beam=beam)
    expected = best_in_range(best, lo, hi)
    if expected is None:
        assert found == []
        return 0.0
    assert found, (lo, hi)
    scores = [v for _, v in found]
    assert scores == sorted(scores, reverse=True)
    assert len({s for s, _ in found}) == len(found)
    for digits, v in found:
        assert lo <= len(digits) <= hi
        assert math.isclose(v, math.log(table[digits]), rel_tol=1e-9)  # exact, not beam, scores
    gap = math.log(expected[1]) - found[0][1]
    assert gap > -1e-9  # nothing beats the brute-force best
    return max(gap, 0.0) if gap > 1e-9 else 0.0


EXHAUSTIVE_BEAM = 1111  # every prefix of <= 3 digits: with max_len <= 3 nothing is pruned


@pytest.mark.parametrize("kind", ["flat", "peaky", "blanky"])
def test_beam_search_with_length_bounds_matches_brute_force(kind):
    rng = np.random.default_rng(7 + len(kind))
    gaps16 = []
    for trial in range(12):
        t_len = 4 + trial % 4
        logp = random_logp(rng, t_len, kind)
        top = t_len if t_len <= 5 else 4
        table = path_table(logp) if t_len <= 5 else forward_table(logp, top)
        best = best_per_length(table)
        ranges = [(n, n) for n in range(top + 1)] + [(0, top), (1, 3), (2, top)]
        for lo, hi in ranges:
            gaps16.append(_beam_gap(table, best, logp, lo, hi, beam=16))
            assert _beam_gap(table, best, logp, lo, hi, beam=64) == 0.0, (trial, lo, hi)
            if hi <= 3 and lo >= 2:  # no pruning at all: the prefix search itself is exact
                assert _beam_gap(table, best, logp, lo, hi, beam=EXHAUSTIVE_BEAM) == 0.0
        # lengths that cannot fit in t_len frames, and an empty range
        assert beam_search(logp, t_len + 1, t_len + 3) == []
        assert beam_search(logp, 3, 2) == []
    # beam 16 is a heuristic: on near-uniform outputs (random normal logits) forced far from
    # their natural length it can miss the best of thousands of near-ties, by little
    misses = sum(g > 0 for g in gaps16)
    assert misses <= (0 if kind == "peaky" else len(gaps16) // 10), (misses, len(gaps16))
    assert max(gaps16) < 0.5


def test_completion_logprob_matches_path_enumeration():
    """The beam's ranking term: P(frames t.. add an allowed number of digits | class c at t-1)."""
    rng = np.random.default_rng(5)
    logp = random_logp(rng, 4, "flat")
    for t in (0, 2, 4):
        added = np.zeros((11, 5))  # [c, j]: P(frames t.. add j digits | class c at t-1)
        for path in itertools.product(range(11), repeat=4 - t):
            p = math.exp(sum(logp[t + i, k] for i, k in enumerate(path)))
            for c in range(11):
                prev, j = c, 0
                for k in path:
                    j += k != BLANK and k != prev
                    prev = k
                added[c, j] += p
        for lo, hi in [(0, 4), (2, 2), (1, 3), (4, 4)]:
            outlook = _completion_logprob(logp, lo, hi)  # (T+1, hi+1, 11)
            for n in range(hi + 1):
                want = added[:, max(0, lo - n) : hi - n + 1].sum(axis=1)  # (11,)
                with np.errstate(divide="ignore"):
                    np.testing.assert_allclose(np.exp(outlook[t, n]), want, rtol=1e-9, atol=1e-300)
                    if n + 4 - t < lo:  # the missing digits cannot fit: pruned
                        assert np.all(outlook[t, n] == -np.inf)
    table = path_table(logp)  # from the start, it is P(length in range)
    for lo, hi in [(0, 4), (2, 3), (3, 3)]:
        want = sum(p for s, p in table.items() if lo <= len(s) <= hi)
        assert math.isclose(math.exp(_completion_logprob(logp, lo, hi)[0, 0, 0]), want)


def test_beam_search_no_bounds_includes_greedy_top_and_respects_max_len():
    logp = peaky([2, 0, 3, 0, 4, 5])  # "1234"
    found = beam_search(logp)
    assert found[0][0] == "1234"
    assert all(len(s) <= 2 for s, _ in beam_search(logp, 0, 2))
    assert beam_search(logp, 0, 2)[0][0] in {"12", "13", "14", "23", "24", "34"}


def test_beam_search_prunes_unreachable_min_len():
    logp = peaky([2, 2, 2, 2])  # greedy "1", but min_len 4 must force 4 digits
    found = beam_search(logp, 4, 4)
    assert found and len(found[0][0]) == 4 and "11" not in found[0][0]


# ---------------------------------------------------------------- greedy


def test_greedy_hand_built():
    assert greedy(peaky([1, 0, 1])) == ("00", [(0, 0), (2, 2)])
    assert greedy(peaky([1, 1, 1])) == ("0", [(0, 2)])
    assert greedy(peaky([0, 2, 2, 3, 0, 4, 5, 5, 6, 0])) == (
        "12345",
        [(1, 2), (3, 3), (5, 5), (6, 7), (8, 8)],
    )
    assert greedy(peaky([0, 0, 0])) == ("", [])
    assert greedy(np.zeros((0, 11))) == ("", [])


# ---------------------------------------------------------------- digit_confidences


def brute_confidences(logp, digits):
    out = []
    for k in range(len(digits)):
        alts = [
            math.exp(string_logprob(logp, digits[:k] + c + digits[k + 1 :])) for c in "0123456789"
        ]
        out.append(math.exp(string_logprob(logp, digits)) / sum(alts))
    return np.array(out)


@pytest.mark.parametrize("digits", ["5", "00", "12", "110", "3433", "9090"])
def test_digit_confidences_match_definition(digits):
    rng = np.random.default_rng(len(digits) * 31 + int(digits))
    for kind in ["flat", "peaky", "blanky"]:
        for t_len in (len(digits) + 2, 9, 15):
            logp = random_logp(rng, t_len, kind)
            conf = digit_confidences(logp, digits)
            assert conf.shape == (len(digits),)
            np.testing.assert_allclose(conf, brute_confidences(logp, digits), rtol=1e-9, atol=1e-12)
            assert np.all((conf > 0) & (conf <= 1))


def test_digit_confidences_limits():
    logp = peaky([2, 0, 3, 0, 4], strength=30)
    conf = digit_confidences(logp, "123")
    assert np.all(conf > 0.999999) and np.all(conf <= 1.0)
    doubtful = log_softmax(np.where(np.arange(11) == 0, 0.0, 0.0)[None].repeat(3, 0))
    np.testing.assert_allclose(digit_confidences(doubtful, "7"), 0.1)  # uniform: 1 of 10 digits
    assert digit_confidences(logp, "").shape == (0,)
    np.testing.assert_array_equal(digit_confidences(peaky([2, 2]), "111"), 0.0)  # impossible


# ---------------------------------------------------------------- alignment


def test_alignment_hand_built():
    classes = [0, 2, 2, 0, 0, 2, 0, 6, 6, 6, 0, 10, 0]  # "1", "1", "5", "9"
    logp = peaky(classes)
    spans = alignment(logp, "1159")
    assert spans == [(1, 2), (5, 5), (7, 9), (11, 11)]
    assert alignment(logp, "159") == [(1, 2), (7, 9), (11, 11)]  # the 2nd "1" peak as blank
    # forcing a third "1" costs one off-peak frame at least; the cheapest takes frame 7
    spans = alignment(logp, "11159")
    assert spans == [(1, 2), (5, 5), (7, 7), (8, 9), (11, 11)]
    for (a, b), (c, _) in zip(spans, spans[1:], strict=False):
        assert a <= b < c  # monotone, non-overlapping
    assert alignment(logp, "") == []
    with pytest.raises(ValueError):
        alignment(peaky([2, 2]), "111")


@pytest.mark.parametrize("seed", range(4))
def test_alignment_is_the_best_path(seed):
    rng = np.random.default_rng(seed)
    logp = random_logp(rng, 5, "flat")
    digits = "33" if seed % 2 else "12"
    best, best_spans = -math.inf, None
    for path in itertools.product(range(11), repeat=5):
        collapsed = [c for t, c in enumerate(path) if c and (t == 0 or path[t - 1] != c)]
        if "".join(str(c - 1) for c in collapsed) != digits:
            continue
        score = sum(logp[t, c] for t, c in enumerate(path))
        if score > best:
            starts = [t for t, c in enumerate(path) if c and (t == 0 or path[t - 1] != c)]
            ends = [t for t, c in enumerate(path) if c and (t == 4 or path[t + 1] != c)]
            best, best_spans = score, list(zip(starts, ends, strict=True))
    assert alignment(logp, digits) == best_spans


# ---------------------------------------------------------------- decode / decode_batch


def test_decode_greedy_and_bounds():
    logp = peaky([0, 1, 1, 0, 5, 0, 5, 8, 0, 3], strength=6)
    reading = decode(logp)
    assert isinstance(reading, Decoded)
    assert reading.digits == "04472"
    assert reading.frames == ((1, 2), (4, 4), (6, 6), (7, 7), (9, 9))
    assert reading.logprob == pytest.approx(string_logprob(logp, "04472"))
    assert reading.confidence == pytest.approx(math.exp(reading.logprob))
    assert len(reading.digit_confidences) == 5
    with pytest.raises(AttributeError):
        reading.digits = "1"  # frozen
    bounded = decode(logp, min_len=5, max_len=5)
    assert bounded.digits == "04472" and bounded.logprob == pytest.approx(reading.logprob)
    six = decode(logp, min_len=6, max_len=6)
    assert len(six.digits) == 6 and six.logprob < reading.logprob
    assert len(six.frames) == 6 and six.frames == tuple(alignment(logp, six.digits))


def test_decode_bounds_prefer_best_string_over_greedy():
    rng = np.random.default_rng(3)
    for _ in range(300):
        logp = random_logp(rng, 5, "flat")
        greedy_digits, _ = greedy(logp)
        n = len(greedy_digits)
        table = path_table(logp)
        best = best_in_range(best_per_length(table), n, n)
        if best[0] != greedy_digits:
            reading = decode(logp, min_len=n, max_len=n)
            assert reading.digits == best[0]
            assert reading.logprob > string_logprob(logp, greedy_digits)
            return
    pytest.fail("no case where the best string differs from greedy's")


def test_decode_impossible_constraints():
    logp = peaky([2, 0, 3])
    for lo, hi in [(4, 4), (5, None), (3, 2)]:
        reading = decode(logp, min_len=lo, max_len=hi)
        assert reading.digits == "" and reading.confidence == 0.0
        assert reading.digit_confidences == () and reading.frames == ()
    # an empty image
    assert decode(np.zeros((0, 11))).digits == ""
    assert decode(np.zeros((0, 11)), min_len=1).confidence == 0.0


def test_decode_batch_respects_frame_counts():
    real = peaky([0, 2, 0, 3, 3, 0, 4])  # "123"
    pad = peaky([9, 9, 9, 9, 9])  # a strong digit "8" in every padding frame
    batch = np.stack([np.vstack([real, pad]), np.vstack([peaky([1, 0, 1, 0, 0, 0, 0]), pad])])
    counts = np.array([7, 3])
    got = decode_batch(batch.astype(np.float32), counts)
    assert [r.digits for r in got] == ["123", "00"]
    assert got[0] == decode(real.astype(np.float32))
    assert decode_batch(batch)[0].digits == "1238"  # without counts the padding is read
    bounded = decode_batch(batch, counts, min_len=3, max_len=3)
    assert bounded[0].digits == "123" and "8" not in bounded[1].digits
    with pytest.raises(ValueError):
        decode_batch(batch, np.array([13, 2]))
