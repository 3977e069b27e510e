"""CTC decoding and confidence for strings of digits (and separators), numpy only.

Conventions: ``logp`` is (T, C) per-frame log-probabilities (already log_softmax'ed); class 0
is the CTC blank and class i+1 is ``alphabet[i]``, the alphabet following from C
(``core.constants.ALPHABETS``: 11 classes read digits, 20 digits and separators). A reading is
a string such as "00427" or "12.50" (leading zeros kept). All internal arithmetic is float64
and in log space.

The CTC lattice of a string of L characters has S = 2L+1 states: even states are blanks,
state 2k+1 is character k. A path moves s -> s, s -> s+1, or s -> s+2 when s+2 is a
character different from the one at s (a repeated character needs a blank between copies).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from digitseq.core.constants import ALPHABETS, DIGITS

NUM_CLASSES = 11  # a digit reader's classes: blank + 10 digits
NEG_INF = -np.inf


@dataclass(frozen=True)
class Decoded:
    """A CTC decoding of one line; ``decoders.LineDecoder`` turns it into the fields of the
    product's one ``Reading`` (``reading.predictor``)."""

    digits: str  # "" when nothing fits the length bounds (or the model saw no digit)
    logprob: float  # log P(digits | logp), exact CTC probability
    confidence: float  # exp(logprob)
    digit_confidences: tuple[float, ...]  # P(digit_k | other digits), one per digit
    frames: tuple[tuple[int, int], ...]  # (first_frame, last_frame) per digit


def log_softmax(logits, axis: int = -1) -> np.ndarray:
    """Numerically stable log-softmax along ``axis``."""
    x = np.asarray(logits, dtype=np.float64)
    m = np.max(x, axis=axis, keepdims=True)
    m = np.where(np.isfinite(m), m, 0.0)
    z = x - m
    return z - np.log(np.sum(np.exp(z), axis=axis, keepdims=True))


def _check(logp) -> np.ndarray:
    lp = np.asarray(logp, dtype=np.float64)
    if lp.ndim != 2 or lp.shape[1] not in ALPHABETS:
        raise ValueError(f"logp must have shape (T, {' or '.join(map(str, ALPHABETS))}), got "
                         f"{lp.shape}")  # fmt: skip
    return lp


def alphabet_of(lp: np.ndarray) -> str:
    """What a model with these outputs reads (class i + 1 is alphabet[i])."""
    return ALPHABETS[lp.shape[-1]]


def _labels(text: str, alphabet: str = DIGITS) -> np.ndarray:
    if not isinstance(text, str) or not set(text) <= set(alphabet):
        raise ValueError(f"a reading must be a string over {alphabet!r}, got {text!r}")
    return np.array([alphabet.index(ch) for ch in text], dtype=np.int64)


def _lattice(label_rows: np.ndarray):
    """label_rows (B, L) digit values -> ext (B, S) class per state, skip (B, S) bool."""
    b, n = label_rows.shape
    ext = np.zeros((b, 2 * n + 1), dtype=np.int64)
    ext[:, 1::2] = label_rows + 1
    skip = np.zeros(ext.shape, dtype=bool)
    skip[:, 3::2] = ext[:, 3::2] != ext[:, 1:-2:2]
    return ext, skip


def _forward(emit: np.ndarray, skip: np.ndarray) -> np.ndarray:
    """emit (T, B, S) log emissions per state, skip (B, S) -> alpha (T, B, S) in log space."""
    t_len, b, s = emit.shape
    alpha = np.full((t_len, b, s), NEG_INF)
    if t_len == 0:
        return alpha
    alpha[0, :, :2] = emit[0, :, :2]
    shift1 = np.full((b, s), NEG_INF)
    shift2 = np.full((b, s), NEG_INF)
    for t in range(1, t_len):
        prev = alpha[t - 1]
        shift1[:, 1:] = prev[:, :-1]
        np.copyto(shift2[:, 2:], prev[:, :-2], where=skip[:, 2:])
        cur = np.logaddexp(prev, shift1, out=alpha[t])
        np.logaddexp(cur, shift2, out=cur)
        cur += emit[t]
    return alpha


def _final(alpha_last: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """alpha_last (B, S), lengths (B,) -> log P per item (end in last blank or last digit)."""
    rows = np.arange(len(lengths))
    end = alpha_last[rows, 2 * lengths]
    last_digit = np.where(lengths > 0, alpha_last[rows, np.maximum(2 * lengths - 1, 0)], NEG_INF)
    return np.logaddexp(end, last_digit)


def _batch_logprob(lp: np.ndarray, strings: list[str]) -> np.ndarray:
    """Exact log P of each string (any lengths) in one batched forward pass -> (B,)."""
    lengths = np.array([len(s) for s in strings], dtype=np.int64)
    rows = np.zeros((len(strings), int(lengths.max(initial=0))), dtype=np.int64)
    for i, s in enumerate(strings):
        rows[i, : len(s)] = _labels(s, alphabet_of(lp))  # padding: beyond each item's end
    ext, skip = _lattice(rows)
    if len(lp) == 0:
        return np.where(lengths == 0, 0.0, NEG_INF)
    alpha = _forward(lp[:, ext], skip)  # (T, B, S)
    return _final(alpha[-1], lengths)


def string_logprob(logp, digits: str) -> float:
    """log P(digits | logp) by the CTC forward algorithm; -inf if no alignment exists."""
    return float(_batch_logprob(_check(logp), [digits])[0])


def greedy(logp) -> tuple[str, list[tuple[int, int]]]:
    """Best path: argmax per frame, collapse repeats, drop blanks; spans of each digit's run."""
    lp = _check(logp)
    return best_path(np.argmax(lp, axis=1), alphabet_of(lp))


def best_path(best: np.ndarray, alphabet: str = DIGITS) -> tuple[str, list[tuple[int, int]]]:
    """(T,) best class per frame -> its digits (repeats collapsed, blanks dropped) and the
    (first, last) frame of each digit's run."""
    best = np.asarray(best)
    if len(best) == 0:
        return "", []
    starts = np.flatnonzero(np.r_[True, best[1:] != best[:-1]])
    ends = np.r_[starts[1:] - 1, len(best) - 1]
    keep = best[starts] != 0
    digits = "".join(alphabet[int(c) - 1] for c in best[starts][keep])
    return digits, [(int(a), int(b)) for a, b in zip(starts[keep], ends[keep], strict=True)]


def _logsumexp(x: np.ndarray, axis: int) -> np.ndarray:
    m = np.max(x, axis=axis, keepdims=True)
    m = np.where(np.isfinite(m), m, 0.0)
    with np.errstate(divide="ignore"):
        return np.squeeze(m, axis) + np.log(np.sum(np.exp(x - m), axis=axis))


def _completion_logprob(lp: np.ndarray, min_len: int, max_len: int) -> np.ndarray:
    """(T+1, max_len+1, C): [t, n, c] = log P(frames t.. complete a prefix of n chars to an
    allowed length | frame t-1 emitted class c (0: blank)). Exact, by a backward pass over
    (digits still to add, last class); -inf where the missing digits cannot fit."""
    t_len = len(lp)
    nc = lp.shape[1]
    todo = np.full((t_len + 1, max_len + 1, nc), NEG_INF)  # [t, j, c]: frames t.. add j chars
    todo[t_len, 0] = 0.0
    new_digit = np.where(np.eye(nc, dtype=bool)[:, 1:], NEG_INF, 0.0)  # (C, C-1): k != c
    for t in range(t_len - 1, -1, -1):
        nxt, y = todo[t + 1], lp[t]
        cur = np.logaddexp(y[0] + nxt[:, :1], y + nxt)  # blank, or repeat of c (c > 0)
        cur[:, 0] = y[0] + nxt[:, 0]
        start = _logsumexp((y[1:] + nxt[:-1, 1:])[:, None, :] + new_digit, axis=2)  # (J, C)
        todo[t] = cur
        todo[t, 1:] = np.logaddexp(cur[1:], start)
    allowed = np.empty_like(todo)
    for n in range(max_len + 1):
        allowed[:, n] = _logsumexp(todo[:, max(0, min_len - n) : max_len - n + 1], axis=1)
    return allowed


def beam_search(logp, min_len: int = 0, max_len: int | None = None, beam: int = 16):
    """CTC prefix beam search restricted to lengths in [min_len, max_len].

    Returns [(digits, exact log P)] best first; [] if no allowed length is possible.
    """
    lp = _check(logp)
    t_len = len(lp)
    max_len = t_len if max_len is None else min(max_len, t_len)
    min_len = max(min_len, 0)
    if min_len > max_len or beam < 1:
        return []
    bounded = min_len > 0 or max_len < t_len
    outlook = _completion_logprob(lp, min_len, max_len) if bounded else None
    alphabet = alphabet_of(lp)
    na = len(alphabet)
    digit_ids = np.arange(na)
    prefixes = [""]  # (K,) beam, with per-prefix arrays below
    lens, last = np.zeros(1, dtype=np.int64), np.full(1, -1)  # length, last digit (-1: none)
    p_blank, p_nonblank = np.zeros(1), np.full(1, NEG_INF)  # log P(prefix, path ends in ...)
    for t in range(t_len):
        y = lp[t]
        k = len(prefixes)
        total = np.logaddexp(p_blank, p_nonblank)
        new_blank = total + y[0]
        new_nonblank = p_nonblank + y[last + 1]  # repeat of the last digit (empty: -inf)
        # extension by digit c: from both states, but only from blank if c repeats the last
        ext = np.where(last[:, None] == digit_ids, p_blank[:, None], total[:, None]) + y[1:]
        ext[lens >= max_len] = NEG_INF
        _join_extensions(prefixes, alphabet, new_nonblank, ext)
        if bounded:  # rank by P(prefix and a completion of allowed length): this drops
            # prefixes whose missing digits no longer fit and favours those that can end in range
            out = outlook[t + 1]  # (max_len+1, C)
            rank_stay = np.logaddexp(new_blank + out[lens, 0], new_nonblank + out[lens, last + 1])
            rank_ext = ext + out[np.minimum(lens + 1, max_len), 1:]  # ext is -inf past max_len
            rank = np.concatenate([rank_stay, rank_ext.ravel()])
        else:
            rank = np.concatenate([np.logaddexp(new_blank, new_nonblank), ext.ravel()])
        order = np.flatnonzero(rank > NEG_INF)  # over (K + 10K,) candidates: stays, extensions
        if len(order) == 0:
            return []
        if len(order) > beam:
            order = order[np.argpartition(-rank[order], beam - 1)[:beam]]
        is_ext = order >= k
        parent = np.where(is_ext, (order - k) // na, order)
        digit = np.where(is_ext, (order - k) % na, last[parent])
        prefixes = [
            prefixes[p] + alphabet[d] if e else prefixes[p]
            for p, d, e in zip(parent.tolist(), digit.tolist(), is_ext.tolist(), strict=True)
        ]
        lens, last = lens[parent] + is_ext, digit
        p_blank = np.concatenate([new_blank, np.full(na * k, NEG_INF)])[order]
        p_nonblank = np.concatenate([new_nonblank, ext.ravel()])[order]
    prefixes = [p for p in prefixes if min_len <= len(p) <= max_len]
    if not prefixes:
        return []
    exact = _batch_logprob(lp, prefixes)  # beam scores can miss mass of pruned paths
    ranked = sorted(zip(prefixes, exact.tolist(), strict=True), key=lambda item: -item[1])
    return [(p, v) for p, v in ranked if v > NEG_INF]


def _join_extensions(prefixes, alphabet, new_nonblank, ext) -> None:
    """An extension that equals a prefix already in the beam joins it (in place: its mass moves
    to that prefix's non-blank state and the extension is dropped)."""
    index = {p: i for i, p in enumerate(prefixes)}
    merge = [
        (i, index[p[:-1]], alphabet.index(p[-1]))
        for i, p in enumerate(prefixes)
        if p and p[:-1] in index
    ]
    if merge:
        i, j, c = np.array(merge).T
        new_nonblank[i] = np.logaddexp(new_nonblank[i], ext[j, c])
        ext[j, c] = NEG_INF


def _substitution_logprobs(lp: np.ndarray, digits: str) -> np.ndarray:
    """(L, C-1): log P(digits with position k replaced by c), from one alpha/beta pass.

    P = sum over frames t1 <= t2 that c occupies of A(t1-1) * prod y_c(t1..t2) * B(t2+1),
    where A is the prefix's forward mass (ending in blank, or in its last digit if != c)
    and B the suffix's backward mass (starting with blank, or its first digit if != c).
    """
    lab = _labels(digits, alphabet_of(lp))
    n, t_len, na = len(lab), len(lp), lp.shape[1] - 1
    ext, skip = _lattice(np.stack([lab, lab[::-1]]))  # the reversed string gives beta
    emit = np.stack([lp[:, ext[0]], lp[::-1][:, ext[1]]], axis=1)  # (T, 2, S)
    both = _forward(emit, skip)
    alpha, beta = both[:, 0], both[::-1, 1, ::-1]  # (T, S); beta includes frame t's emission
    pad = np.full((t_len, 1), NEG_INF)
    differs = np.arange(na)[None, :] != lab[:, None]  # (L, C-1)
    prev_ok = np.r_[np.zeros((1, na), bool), differs[:-1]]  # c != char k-1
    next_ok = np.r_[differs[1:], np.zeros((1, na), bool)]  # c != char k+1
    a_blank, a_digit = alpha[:, 0 : 2 * n : 2], np.hstack([pad, alpha[:, 1 : 2 * n - 1 : 2]])
    b_blank, b_digit = beta[:, 2 : 2 * n + 1 : 2], np.hstack([beta[:, 3 : 2 * n + 1 : 2], pad])
    before = np.logaddexp(a_blank[:, :, None], np.where(prev_ok, a_digit[:, :, None], NEG_INF))
    after = np.logaddexp(b_blank[:, :, None], np.where(next_ok, b_digit[:, :, None], NEG_INF))
    start = np.full((1, n, na), NEG_INF)
    start[0, 0] = 0.0  # A(-1): only the first digit may start at frame 0
    end = np.full((1, n, na), NEG_INF)
    end[0, -1] = 0.0  # B(T): only the last digit may end at the last frame
    before = np.concatenate([start, before])  # (T+1, L, C-1), index t holds A(t-1)
    after = np.concatenate([after, end])  # (T+1, L, C-1), index t holds B(t)
    run = np.full((t_len, n, na), NEG_INF)  # run[t]: mass of c's span ending at frame t
    prev = np.full((n, na), NEG_INF)
    for t in range(t_len):
        prev = np.logaddexp(prev, before[t], out=run[t])
        prev += lp[t, 1:]
    return _logsumexp(run + after[1:], axis=0)


def _confidences(lp: np.ndarray, digits: str) -> tuple[float, np.ndarray]:
    """-> (log P(digits), (L,) P(digit_k | other digits))."""
    if not digits or len(lp) == 0:
        return float(_batch_logprob(lp, [digits])[0]), np.zeros(len(digits))
    sub = _substitution_logprobs(lp, digits)  # (L, C-1)
    own = sub[np.arange(len(digits)), _labels(digits, alphabet_of(lp))]  # each row: log P(digits)
    logprob = float(np.max(own))
    if logprob == NEG_INF:
        return logprob, np.zeros(len(digits))
    return logprob, np.minimum(np.exp(own - _logsumexp(sub, axis=1)), 1.0)


def digit_confidences(logp, digits: str) -> np.ndarray:
    """(L,) for each k: P(s) / sum over c of P(s with s_k := c); 0 where P(s) = 0."""
    return _confidences(_check(logp), digits)[1]


def alignment(logp, digits: str) -> list[tuple[int, int]]:
    """Viterbi CTC alignment of ``digits``: (first_frame, last_frame) per digit."""
    lp = _check(logp)
    ext, skip = _lattice(_labels(digits, alphabet_of(lp))[None])
    ext, skip = ext[0], skip[0]
    s_len, t_len = len(ext), len(lp)
    if not digits:
        return []
    if t_len == 0:
        raise ValueError("no frames")
    emit = lp[:, ext]  # (T, S)
    back = np.zeros((t_len, s_len), dtype=np.int64)  # how many states each step advanced
    delta = np.full(s_len, NEG_INF)
    delta[:2] = emit[0, :2]
    cand = np.full((3, s_len), NEG_INF)
    for t in range(1, t_len):
        cand[0] = delta
        cand[1, 1:] = delta[:-1]
        cand[2, 2:] = np.where(skip[2:], delta[:-2], NEG_INF)
        back[t] = np.argmax(cand, axis=0)
        delta = cand[back[t], np.arange(s_len)] + emit[t]
    state = s_len - 1 if delta[-1] >= delta[-2] else s_len - 2
    if delta[state] == NEG_INF:
        raise ValueError(f"no CTC alignment of {digits!r} fits {t_len} frames")
    path = np.empty(t_len, dtype=np.int64)
    for t in range(t_len - 1, -1, -1):
        path[t] = state
        state -= back[t, state]
    spans = []
    for k in range(len(digits)):
        hits = np.flatnonzero(path == 2 * k + 1)
        spans.append((int(hits[0]), int(hits[-1])))
    return spans


def decode(logp, min_len: int | None = None, max_len: int | None = None, beam: int = 16):
    """Greedy reading (no bounds) or best beam reading with length in [min_len, max_len]."""
    lp = _check(logp)
    if min_len is None and max_len is None:
        digits, frames = greedy(lp)
    else:
        found = beam_search(lp, min_len or 0, max_len, beam)
        if not found:
            return Decoded("", float(NEG_INF), 0.0, (), ())
        digits = found[0][0]
        frames = alignment(lp, digits)
    return decoded(lp, digits, frames)


def decoded(logp, digits: str, frames=None) -> Decoded:
    """A chosen reading of ``logp`` (e.g. by a pattern search) with its exact probability,
    per-character confidences and frames (the Viterbi alignment unless given)."""
    lp = _check(logp)
    if frames is None:
        frames = alignment(lp, digits) if digits else []
    logprob, conf = _confidences(lp, digits)
    return Decoded(
        digits=digits,
        logprob=logprob,
        confidence=float(np.exp(logprob)),
        digit_confidences=tuple(float(c) for c in conf),
        frames=tuple(frames),
    )


def decode_batch(logp_batch, frame_counts=None, **kw) -> list[Decoded]:
    """logp_batch (N, T, C), frame_counts (N,) or None -> one Decoded per item."""
    batch = np.asarray(logp_batch)
    if batch.ndim != 3:
        raise ValueError(f"logp_batch must have shape (N, T, C), got {batch.shape}")
    n, t_len = batch.shape[:2]
    counts = np.full(n, t_len) if frame_counts is None else np.asarray(frame_counts)
    if counts.shape != (n,) or np.any(counts < 0) or np.any(counts > t_len):
        raise ValueError("frame_counts must be (N,) with values in [0, T]")
    return [decode(batch[i, : int(counts[i])], **kw) for i in range(n)]


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance between two digit strings (insertions, deletions, substitutions)."""
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def score(read: list[str], truth: list[str]) -> tuple[np.ndarray, int, int]:
    """The one accuracy scorer (training, validation, evaluation, benchmarks): whole numbers
    read right (N,) bool, character errors (edit distance, summed) and true characters."""
    pairs = list(zip(read, truth, strict=True))
    right = np.array([a == b for a, b in pairs], bool)
    return right, sum(edit_distance(a, b) for a, b in pairs), sum(map(len, truth))
