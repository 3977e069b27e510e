"""Accuracy per number length for line readers (CTC): test numbers of each length 1..12 built
from MNIST test digits only, read without being told the length. Whole-number accuracy, CER,
the rate of wrong-length readings, and calibration (ECE) of the string probability per length.
"""

from __future__ import annotations

import time

import numpy as np

from digitseq.core.constants import FRAME_STRIDE
from digitseq.data import compose, mnist, numbers
from digitseq.evaluation.metrics import calibration
from digitseq.models import ctc_decode


def read_lines(model, images: np.ndarray, widths: np.ndarray, batch_size: int = 256):
    """(digits, confidence) per line of a uint8 (N, 28, W) batch, greedy decoding; the
    confidence is the (calibrated) probability of the whole string."""
    from digitseq.models.inference import batched_logits

    digits, conf = [], []
    for i in range(0, len(images), batch_size):
        logits = batched_logits(model, images[i : i + batch_size], batch_size=batch_size)
        logp = ctc_decode.log_softmax(logits.numpy().astype(np.float64))
        for lp, w in zip(logp, widths[i : i + batch_size], strict=True):
            r = ctc_decode.decode(lp[: -(-int(w) // FRAME_STRIDE)])
            digits.append(r.digits)
            conf.append(r.confidence)
    return digits, np.asarray(conf)


def read_by_width(model, widths, cut, batch_size: int = 256, progress=None):
    """The one batch loop over stored lines: sorted by width, each batch of ``batch_size``
    rows (sorted: memmap-friendly reads) cut by ``cut(rows)`` to its widest rounded up (less
    work, few shapes), read by ``read_lines``, then put back in order. Returns (readings (N,)
    str, confidences (N,))."""
    widths = np.asarray(widths)
    n = len(widths)
    order = np.argsort(widths, kind="stable")
    read: list[str] = [""] * n
    conf = np.zeros(n, np.float64)
    for start in range(0, n, batch_size):
        rows = np.sort(order[start : start + batch_size])
        r, c = read_lines(model, cut(rows), widths[rows], batch_size)
        for i, j in enumerate(rows):
            read[j], conf[j] = r[i], c[i]
        if progress is not None:
            progress.update(len(rows))
    return read, conf


def length_table(model, lengths=range(1, 13), n: int = 1000, layout: str = "natural",
                 seed: int = 0, mnist_dir=None) -> list[dict]:  # fmt: skip
    """One row per length: n test numbers of that length in ``layout``, read by ``model``."""
    m = mnist.load(mnist_dir)
    rows = []
    for length in lengths:
        t0 = time.perf_counter()
        rng = np.random.default_rng([seed, length, 7])
        lines = compose.generate(m.test_images, m.test_labels, n, rng, layout,
                                 lengths=(length, length), pad_to=32)  # fmt: skip
        truth = numbers.labels_to_strings(lines.digits, lines.lengths)
        read, conf = read_lines(model, lines.images, lines.widths)
        row = length_row(read, truth, conf, length, layout)
        rows.append({**row, "seconds": round(time.perf_counter() - t0, 2)})
    return rows


def length_row(read: list[str], truth: list[str], conf: np.ndarray, length, layout: str) -> dict:
    """Metrics of one group of readings (``length``: its number of digits, or "all"):
    whole-number accuracy, CER (edit distance / true digits), wrong-length rate, ECE of the
    string probability."""
    n = len(truth)
    right, errors, chars = ctc_decode.score(read, truth)
    ece, _ = calibration(np.asarray(conf, np.float64), right)
    return {
        "length": length,
        "n": n,
        "layout": layout,
        "seq_acc": float(right.mean()),
        "target": 0.997**length if isinstance(length, int) else None,
        "cer": errors / max(1, chars),
        "wrong_length": float(
            np.mean([len(a) != len(b) for a, b in zip(read, truth, strict=True)])
        ),
        "ece": ece,
        "mean_confidence": float(np.mean(conf)),
    }


def table_markdown(rows: list[dict]) -> str:
    head = "| digits | n | whole-number | target 0.997^L | CER | wrong length | ECE |\n"
    head += "|---:|---:|---:|---:|---:|---:|---:|\n"
    return head + "".join(
        f"| {r['length']} | {r['n']:,} | {r['seq_acc']:.2%} | "
        f"{'-' if r['target'] is None else format(r['target'], '.2%')} | "
        f"{r['cer']:.2%} | {r['wrong_length']:.2%} | {r['ece']:.4f} |\n"
        for r in rows
    )


def length_figure(rows: list[dict], title: str = "Whole-number accuracy per length"):
    """Accuracy per length with the 0.997^L target, as a matplotlib Figure."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 3.6))
    ax = fig.subplots()
    lengths = [r["length"] for r in rows]
    ax.plot(lengths, [100 * r["seq_acc"] for r in rows], "o-", label="read right")
    ax.plot(lengths, [100 * r["target"] for r in rows], "--", color="gray", label="0.997^L target")
    ax.set_xlabel("digits in the number")
    ax.set_ylabel("whole-number accuracy (%)")
    ax.set_xticks(lengths)
    lo, hi = min(r["n"] for r in rows), max(r["n"] for r in rows)
    n = f"{lo:,}" if lo == hi else f"{lo:,}-{hi:,}"
    ax.set_title(f"{title}\n{rows[0]['layout']} layout, {n} numbers per length", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return fig
