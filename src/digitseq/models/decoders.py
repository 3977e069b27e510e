"""A reader's decoder, numpy only: for each model kind, what its outputs mean. The predictor
(and through it the service, the app and batch) runs the model and asks the decoder for the
digits, the whole-number and per-digit confidences and the spans; nobody downstream asks which
kind it holds. The kind follows from the model's output shape (``kind_of``), so a model file
without its sidecar still decodes right.

'ctc' readers map (N, 1, 28, W) lines to (N, W/4, C) frame logits (blank + 10 digits, or blank
+ digits and separators: ``core.constants.ALPHABETS``): the confidence is the probability of the
whole string (CTC forward algorithm). A reading's ``text`` holds what was read, separators
included; its ``digits`` the digits alone (with their confidences and spans). The 5-digit
baselines ('fixed') map (N, 1, 28, 140) to (N, 5, 10) logits: the confidence is the product of
the five per-digit maximum softmax probabilities.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from digitseq.core.constants import ALPHABETS, FRAME_STRIDE, IMG_H, IMG_W, N_DIGITS
from digitseq.core.errors import DigitseqError
from digitseq.models import ctc_decode, ctc_pattern

LINE_PAD = 32  # line widths are padded to a multiple of this: few shapes, bounded kernel caches
UNSURE = 0.01  # a length-constrained reading below this probability is flagged, never forced
PATTERN_BEAM = 64  # prefixes kept by the pattern search (~30 ms for a 5-digit line)
FORMATS = tuple(ctc_pattern.FORMATS)  # the named formats a reading may be held to (--pattern)

Run = Callable[[np.ndarray], np.ndarray]  # (N, 1, 28, W) float32 -> (N, ...) logits


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def sequence_confidence(probs: np.ndarray) -> np.ndarray:
    """(..., 5, 10) per-position probabilities -> (...,) float64: the product of the five
    per-digit top probabilities (the probability of the read number, heads independent)."""
    return np.asarray(probs).astype(np.float64).max(-1).prod(-1)


class LineDecoder:
    """The CTC line reader: a whole line of any width in, a number of any length out."""

    kind = "ctc"
    describe = "line reader (N, T, 11 or 20)"
    line = True  # preprocessing keeps the whole line
    lengths = None  # any number of digits can be asked for

    def trained_lengths(self, lo: int, hi: int) -> tuple[int, int]:
        return (1, 12) if (lo, hi) == (5, 5) else (int(lo), int(hi))  # configs before lengths

    def check_digits(self, digits) -> None:
        """Any length constraint is honoured (the most probable reading of that length)."""

    def check_pattern(self, pattern: str | None) -> None:
        """A pattern that parses (a one-line error for one that does not)."""
        if pattern:
            ctc_pattern.compile_pattern(pattern)

    def bad_input(self, x: np.ndarray) -> str | None:
        return None

    def outputs(self, run: Run, inputs: list[np.ndarray], batch_size: int) -> list[np.ndarray]:
        """(28, W) inputs -> (T, 11) frame log-probabilities over each one's real width. Lines
        run in batches of one padded width."""
        out: list[np.ndarray | None] = [None] * len(inputs)
        widths = np.array([x.shape[1] for x in inputs])
        padded = (widths + LINE_PAD - 1) // LINE_PAD * LINE_PAD
        for w in np.unique(padded):
            idx = np.flatnonzero(padded == w)
            for k in range(0, len(idx), batch_size):
                part = idx[k : k + batch_size]
                x = np.zeros((len(part), 1, IMG_H, int(w)), np.float32)
                for row, i in enumerate(part):
                    x[row, 0, :, : widths[i]] = inputs[i]
                logp = ctc_decode.log_softmax(run(x))
                for row, i in enumerate(part):
                    out[i] = logp[row, : -(-int(widths[i]) // FRAME_STRIDE)]
        return out

    def decode(self, output: np.ndarray, digits=None, pattern: str | None = None) -> dict:
        """Greedy, the most probable reading with lo..hi digits, or the most probable one a
        ``pattern`` accepts (a name of ``ctc_pattern.FORMATS`` or a regular expression);
        spans in input columns. A constrained reading below ``UNSURE`` is flagged."""
        lo, hi = digits if digits else (None, None)
        if digits and output.shape[-1] > ctc_decode.NUM_CLASSES:  # N digits: no separator
            output = np.concatenate(
                [output[:, : ctc_decode.NUM_CLASSES],
                 np.full_like(output[:, ctc_decode.NUM_CLASSES :], -np.inf)], axis=1,
            )  # fmt: skip
        if pattern:
            # a wide beam: no completion estimate ranks the prefixes (a 3-digit reading of a
            # 5-digit line held to \d{3}: a beam of 16 missed the most probable one)
            alphabet = ctc_decode.alphabet_of(output)
            found = ctc_pattern.decode_pattern(output, pattern, alphabet, beam=PATTERN_BEAM)
            d = ctc_decode.decoded(output, found.text)
        else:
            d = ctc_decode.decode(output, lo, hi)
        stride = FRAME_STRIDE
        keep = [k for k, ch in enumerate(d.digits) if ch.isdigit()]
        out = {
            "digits": "".join(d.digits[k] for k in keep),
            "text": d.digits,
            "confidence": float(d.confidence),
            "digit_confidences": [round(float(d.digit_confidences[k]), 6) for k in keep],
            "input_spans": [
                [d.frames[k][0] * stride, (d.frames[k][1] + 1) * stride - 1] for k in keep
            ],  # fmt: skip
        }
        if pattern and (not d.digits or d.confidence < UNSURE):
            out["warning"] = f"unsure: no reading that the pattern {pattern!r} accepts is likely"
        elif digits and (not d.digits or d.confidence < UNSURE):
            out["warning"] = (
                f"unsure: no reading with {lo}-{hi} digits is likely" if lo != hi
                else f"unsure: no reading with {lo} digits is likely"
            )  # fmt: skip
        return out

    def cell_probs(self, logits: np.ndarray) -> np.ndarray:
        """(B, T, 11) frame logits of 5-digit numbers -> (B, 5, 10): the best 5-digit string
        (length-constrained beam search), then at each position the probability of each digit
        given the other four (the string probability with that position substituted,
        normalized), so the fixed-length metrics, confusion matrices and calibration apply."""
        out = np.empty((len(logits), N_DIGITS, 10), np.float32)
        for i, lp in enumerate(ctc_decode.log_softmax(logits)):
            best = ctc_decode.decode(lp, N_DIGITS, N_DIGITS)
            if len(best.digits) != N_DIGITS:  # no 5-digit reading fits at all: uniform
                out[i] = 0.1
                continue
            sub = ctc_decode._substitution_logprobs(lp.astype(np.float64), best.digits)
            sub = np.exp(sub - sub.max(axis=1, keepdims=True))
            out[i] = sub / sub.sum(axis=1, keepdims=True)
        return out

    def model_input(self, input_format) -> dict:
        return {
            "format": input_format,
            "shape": [1, IMG_H, "W"],
            "dtype": "float32",
            "preprocessing": "the whole line: ink found, cropped and deskewed, scaled to digits "
            f"{IMG_H} px tall and any width W (a number of any length)",
        }


class CellDecoder:
    """The 5-digit baselines: five 28x28 cells in, five 10-way heads out."""

    kind = "fixed"
    describe = "5-digit model (N, 5, 10)"
    line = False  # preprocessing cuts five digit cells
    lengths = (N_DIGITS, N_DIGITS)  # the only length it reads

    def trained_lengths(self, lo: int, hi: int) -> tuple[int, int]:
        return int(lo), int(hi)

    def check_digits(self, digits) -> None:
        if digits and tuple(digits) != (N_DIGITS, N_DIGITS):
            raise DigitseqError(f"this model reads exactly {N_DIGITS} digits; --digits {digits}")

    def check_pattern(self, pattern: str | None) -> None:
        if pattern:
            raise DigitseqError(f"this model reads exactly {N_DIGITS} digits: no --pattern")

    def bad_input(self, x: np.ndarray) -> str | None:
        return None if x.shape == (IMG_H, IMG_W) else "not a 28x140 model input"

    def outputs(self, run: Run, inputs: list[np.ndarray], batch_size: int) -> list[np.ndarray]:
        """(28, 140) inputs -> (5, 10) probabilities each."""
        return list(softmax(cell_logits(run, np.stack(inputs), batch_size))) if inputs else []

    def decode(self, probs: np.ndarray, digits=None, pattern=None) -> dict:
        read = "".join(str(int(d)) for d in probs.argmax(axis=-1))
        return {
            "digits": read,
            "text": read,
            "confidence": float(sequence_confidence(probs)),
            "digit_confidences": [float(p) for p in probs.max(axis=-1).astype(np.float64)],
            "probabilities": probs.astype(np.float64).round(6).tolist(),
        }

    def cell_probs(self, logits: np.ndarray) -> np.ndarray:
        """(B, 5, 10) logits -> (B, 5, 10) per-position softmax probabilities."""
        return softmax(logits)

    def model_input(self, input_format) -> dict:
        return {
            "format": input_format,
            "shape": [1, IMG_H, IMG_W],
            "dtype": "float32",
            "preprocessing": "any image is cut into 5 MNIST-style cells",
        }


def cell_logits(run: Run, inputs: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """(N, 28, 140) float32 model inputs -> (N, 5, 10) logits of a 5-digit model."""
    x = np.ascontiguousarray(inputs, dtype=np.float32).reshape(-1, 1, IMG_H, IMG_W)
    if len(x) == 0:
        return np.zeros((0, N_DIGITS, 10), np.float32)
    return np.concatenate([run(x[i : i + batch_size]) for i in range(0, len(x), batch_size)])


DECODERS = {d.kind: d for d in (LineDecoder(), CellDecoder())}


def for_kind(kind: str):
    """The decoder of a model kind ('ctc' or 'fixed')."""
    if kind not in DECODERS:
        raise DigitseqError(f"no decoder for a model of kind {kind!r}")
    return DECODERS[kind]


def for_config(model: dict):
    """The decoder of the model a config's ``model`` part describes."""
    return for_kind(config_kind(model))


def describe(kind: str) -> str:
    return DECODERS[kind].describe if kind in DECODERS else kind


def config_kind(model: dict) -> str:
    """The kind a model's config names ('ctc' for a line reader, 'fixed' for five heads);
    configs written before the kind was saved name only the architecture."""
    return model.get("kind") or ("ctc" if str(model.get("arch", "")).startswith("ctc") else "fixed")


def kind_of(out: np.ndarray) -> str | None:
    """The kind of a model from its (1, ...) output on one 28x140 input; None if no decoder
    reads that shape."""
    return item_kind(out.shape[1:]) if out.ndim == 3 and out.shape[0] == 1 else None


def item_kind(shape: tuple) -> str | None:
    """'ctc' for (T, 11) or (T, 20) frames, 'fixed' for (5, 10) heads, else None."""
    if len(shape) == 2 and shape[0] >= 1 and shape[1] in ALPHABETS:
        return "ctc"
    if tuple(shape) == (N_DIGITS, 10):
        return "fixed"
    return None


def for_outputs(out: np.ndarray):
    """The decoder that reads a batch of outputs (N, ...) of a 28x140 input, by their shape;
    None if none does."""
    kind = item_kind(np.shape(out)[1:]) if np.ndim(out) == 3 else None
    return None if kind is None else DECODERS[kind]
