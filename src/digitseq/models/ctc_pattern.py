"""CTC decoding constrained to a format: the most probable string that a pattern (a regular
expression over the reader's alphabet) accepts, by a prefix beam search through the pattern's
automaton. numpy only; the automaton comes from ``interegular`` (regular expression -> minimal
DFA), the library constrained-generation tools use for the same job.

Conventions as ``ctc_decode``: ``logp`` is (T, C) per-frame log-probabilities, class 0 the CTC
blank and class i + 1 the character ``alphabet[i]``. A pattern the model cannot explain well
(the constrained string far less probable than the free reading) is flagged by the caller from
``PatternReading.logprob`` and ``free_logprob``; it is never silently forced.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from digitseq.core.errors import DigitseqError

DIGITS = "0123456789"
_DAY, _MONTH, _YEAR = r"(0?[1-9]|[12]\d|3[01])", r"(0?[1-9]|1[0-2])", r"(\d{2}|\d{4})"
# named formats, written over digits and the separators a reader may know; a pattern needing a
# character outside the reader's alphabet matches nothing (and says so). Each holds a number to
# how it is written, so that a misread separator makes a reading the format refuses:
FORMATS = {
    "digits": r"\d+",
    # one convention per amount: 1,250.00 / 1.250,00 / 1 250,00 / 1250.00 (not 1,250,00)
    "amount": r"-?(\d{1,3}(,\d{3})+(\.\d{1,2})?|\d{1,3}(\.\d{3})+(,\d{1,2})?"
    r"|\d{1,3}( \d{3})+([.,]\d{1,2})?|\d+([.,]\d{1,2})?)",
    # day and month either way round (31/12, 12/31) or year first, one separator throughout
    "date": "|".join(
        [rf"({_DAY}{s}{_MONTH}|{_MONTH}{s}{_DAY}){s}{_YEAR}" for s in ("/", r"\.", "-")]
        + [rf"\d{{4}}{s}{_MONTH}{s}{_DAY}" for s in ("/", r"\.", "-")]
    ),
    # the same with the order known: day first (31/12/2026), month first (12/31/2026), year first
    **{
        f"date-{order}": "|".join(rf"{a}{s}{b}{s}{c}" for s in ("/", r"\.", "-"))
        for order, (a, b, c) in {
            "dmy": (_DAY, _MONTH, _YEAR),
            "mdy": (_MONTH, _DAY, _YEAR),
            "ymd": (r"\d{4}", _MONTH, _DAY),
        }.items()
    },  # fmt: skip
    "time": r"([01]?\d|2[0-3]):[0-5]\d(:[0-5]\d)?",  # 9:05, 14:30, 14:30:15 (24-hour clock)
    # a country code, an area code in parentheses, then groups split by a space, dot, dash or
    # slash: (555) 010-0123, +44 20 7946 0958, 06.12.34.56.78, 0301/1234567, 5550100123
    "phone": r"(\+\d{1,3} ?)?(\(\d{1,4}\) ?)?\d{1,12}([ ./-]\d{1,8}){0,4}",
}


@dataclass(frozen=True)
class Automaton:
    """A DFA over a reader's alphabet: ``step[s, i]`` is the state after character i from
    state s (-1: rejected), ``final[s]`` whether s accepts, ``live[s]`` whether an accepting
    state can still be reached from s, ``need[s]`` in how many characters at fewest."""

    step: np.ndarray  # (S, len(alphabet)) int
    final: np.ndarray  # (S,) bool
    live: np.ndarray  # (S,) bool
    need: np.ndarray  # (S,) int: the fewest characters from s to an accepting state
    start: int


@dataclass(frozen=True)
class PatternReading:
    text: str  # "" when nothing the pattern accepts has any probability
    logprob: float  # log P(text | logp): the exact CTC probability of the string
    free_logprob: float  # the same for the best unconstrained prefix the search met
    matched: bool  # False when the pattern accepts nothing the model gives any probability


def resolve(pattern: str) -> str:
    """A named format (``FORMATS``) or the user's regular expression."""
    return FORMATS.get(pattern, pattern)


MAX_TEXT = 200  # characters a pattern may ask for in one line (a line holds ~170 frames)


def check_size(pattern: str) -> None:
    """Refuse a pattern whose automaton would be huge (``(\\d{64}){64}``: thousands of states,
    minutes to build) before building it: every bounded part of it accepts at most MAX_TEXT
    characters, as a line can hold no more."""
    import re._parser as sre

    try:
        tree = sre.parse(pattern)
    except Exception:  # noqa: BLE001 - interegular's parser gives the error message
        return
    stack = [tree]  # every sub-pattern of the tree (groups, branches, repeated parts)
    while stack:
        node = stack.pop()
        hi = node.getwidth()[1]
        if MAX_TEXT < hi < sre.MAXREPEAT:
            raise DigitseqError(f"pattern {pattern[:40]!r} asks for up to {hi} characters: a "
                                f"line holds at most {MAX_TEXT}")  # fmt: skip
        for op, arg in node.data:
            if op in (sre.MAX_REPEAT, sre.MIN_REPEAT) and MAX_TEXT < arg[1] < sre.MAXREPEAT:
                raise DigitseqError(f"pattern {pattern[:40]!r} repeats a part {arg[1]} times: "
                                    f"a line holds at most {MAX_TEXT} characters")  # fmt: skip
            for part in arg if isinstance(arg, list | tuple) else [arg]:
                if isinstance(part, sre.SubPattern):
                    stack.append(part)
                elif isinstance(part, list | tuple):
                    stack.extend(x for x in part if isinstance(x, sre.SubPattern))


MAX_STEPS = 10_000  # transitions followed building one automaton (the phone format: ~2,400)


class TooComplex(Exception):
    pass


@contextmanager
def bounded_crawl():
    """Building a DFA from a regular expression can blow up exponentially (``\\d*1\\d{15}``:
    2^16 states, and interegular's crawl is quadratic in them): while the automaton is built,
    interegular's crawl gives up after MAX_STEPS transitions (interegular has no limit of its
    own). A service must not spend minutes on one request's pattern."""
    from interegular import fsm

    crawl, steps = fsm.crawl, 0

    def bounded(alphabet, initial, final, follow):
        def counted(state, transition):
            nonlocal steps
            steps += 1
            if steps > MAX_STEPS:
                raise TooComplex
            return follow(state, transition)

        return crawl(alphabet, initial, final, counted)

    with _CRAWL_LOCK:
        fsm.crawl = bounded
        try:
            yield
        finally:
            fsm.crawl = crawl


_CRAWL_LOCK = threading.Lock()


@lru_cache(maxsize=64)
def compile_pattern(pattern: str, alphabet: str = DIGITS) -> Automaton:
    """The DFA of ``pattern`` (a name of ``FORMATS`` or a regular expression) restricted to
    ``alphabet``. Raises DigitseqError (one line) for a pattern that does not parse."""
    import interegular

    check_size(resolve(pattern))
    try:
        with bounded_crawl():
            fsm = interegular.parse_pattern(resolve(pattern)).to_fsm()
    except TooComplex:
        raise DigitseqError(
            f"pattern {pattern[:40]!r} is too complex (its automaton grows past "
            f"{MAX_STEPS:,} steps): write it more simply"
        ) from None
    except Exception as e:  # interegular raises several kinds for a bad pattern
        raise DigitseqError(f"not a valid pattern {pattern!r}: {e}") from None
    states = sorted(fsm.states)
    index = {s: i for i, s in enumerate(states)}
    other = fsm.alphabet.get(interegular.fsm.anything_else)
    step = np.full((len(states), len(alphabet)), -1, np.int64)
    for s in states:
        moves = fsm.map.get(s, {})
        for i, ch in enumerate(alphabet):
            symbol = fsm.alphabet[ch] if ch in fsm.alphabet else other
            if symbol is not None and symbol in moves:
                step[index[s], i] = index[moves[symbol]]
    final = np.array([s in fsm.finals for s in states])
    need = np.where(final, 0, np.iinfo(np.int64).max // 2)
    for _ in range(len(states)):  # Bellman-Ford on unit steps: fewest characters to accept
        reach = np.where(step >= 0, need[step], need.max()).min(axis=1) + 1
        updated = np.minimum(need, reach)
        if np.array_equal(updated, need):
            break
        need = updated
    live = need < np.iinfo(np.int64).max // 2
    return Automaton(step, final, live, need, index[fsm.initial])


def _lse(a: float, b: float) -> float:
    if a == -np.inf:
        return b
    if b == -np.inf:
        return a
    m = max(a, b)
    return m + np.log(np.exp(a - m) + np.exp(b - m))


def _adder(table: dict):
    """A function adding (log p_blank, log p_char) to a prefix's entry in ``table``."""

    def add(prefix: str, pb: float, pc: float, state: int) -> None:
        old = table.get(prefix)
        if old is None:
            table[prefix] = [pb, pc, state]
        else:
            old[0], old[1] = _lse(old[0], pb), _lse(old[1], pc)

    return add


def pattern_search(logp, dfa: Automaton, alphabet: str, beam: int = 16):
    """CTC prefix beam search through ``dfa`` -> (best accepted string, its beam log-probability,
    the best free prefix's); ``logp`` is (T, 1 + len(alphabet)). Each beam entry is a prefix
    with its log-probabilities of ending in a blank and in its last character; a prefix grows
    only by characters the automaton allows from its state, and only into states from which the
    pattern can still be completed."""
    lp = np.asarray(logp, np.float64)
    where = {c: i for i, c in enumerate(alphabet)}
    frames = lp.shape[0]
    beams = {"": (0.0, -np.inf, dfa.start)}  # prefix -> (log p_blank, log p_char, state)
    free = -np.inf
    for t in range(lp.shape[0]):
        row = lp[t]
        nxt: dict[str, list] = {}
        add = _adder(nxt)

        for prefix, (pb, pc, state) in beams.items():
            total = _lse(pb, pc)
            add(prefix, total + row[0], -np.inf, state)  # a blank
            if prefix:  # the last character again, collapsed
                last = prefix[-1]
                add(prefix, -np.inf, pc + row[1 + where[last]], state)
            for i in np.flatnonzero(dfa.step[state] >= 0):
                nstate = int(dfa.step[state, i])
                if dfa.need[nstate] > frames - t - 1:  # cannot be completed in time
                    continue
                ch = alphabet[i]
                # after the same character, only a blank in between starts a new one
                p = pb if prefix and prefix[-1] == ch else total
                add(prefix + ch, -np.inf, p + row[1 + i], nstate)
        ranked = sorted(nxt.items(), key=lambda kv: -_lse(kv[1][0], kv[1][1]))[:beam]
        beams = {k: (v[0], v[1], v[2]) for k, v in ranked}
        free = max(free, max(_lse(v[0], v[1]) for _, v in ranked))
    done = [(k, _lse(v[0], v[1])) for k, v in beams.items() if dfa.final[v[2]]]
    if not done:
        return "", -np.inf, free
    text, score = max(done, key=lambda kv: kv[1])
    return text, score, free


def decode_pattern(logp, pattern: str, alphabet: str = DIGITS, beam: int = 16) -> PatternReading:
    """The most probable string ``pattern`` accepts under the CTC output ``logp`` (T, 1 +
    len(alphabet)), with the probability the beam summed for it (exact when the beam holds
    every prefix it met, as for short outputs)."""
    lp = np.asarray(logp, np.float64)
    if lp.ndim != 2 or lp.shape[1] != len(alphabet) + 1:
        raise DigitseqError(f"logp must be (T, {len(alphabet) + 1}) for alphabet {alphabet!r}")
    text, score, free = pattern_search(lp, compile_pattern(pattern, alphabet), alphabet, beam)
    return PatternReading(text, float(score), float(free), bool(np.isfinite(score)))
