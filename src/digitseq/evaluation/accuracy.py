"""The test figures of a line reader (MNIST test digits only, never val or train), as the bundle's
model card and ``benchmarks/bench_accuracy.py`` report them:

- 5-digit numbers per layout (seed, natural, touching), read without being told the length;
  a 5-digit baseline side by side on seed and natural;
- every length 1-12 on ``natural``: whole-number accuracy vs 0.997^L, CER, wrong-length rate,
  ECE of the calibrated string probability;
- abstention: the confidence thresholds that give 99.5% / 99.9% accuracy on val numbers, and
  the coverage they give on test.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from digitseq.data import compose, mnist
from digitseq.evaluation import lengths
from digitseq.models import checkpoint, ctc_decode
from digitseq.models.inference import batched_logits


def five_digit_sets(pool, labels, n: int, seed: int = 0) -> dict[str, compose.Lines]:
    return {
        layout: compose.generate(
            pool, labels, n, np.random.default_rng([seed, i, 5]), layout, lengths=(5, 5), pad_to=4
        )  # fmt: skip
        for i, layout in enumerate(("seed", "natural", "touching"))
    }


def score(read: list[str], truth: list[str]) -> dict:
    right, errors, chars = ctc_decode.score(read, truth)
    return {
        "n": len(truth),
        "seq_acc": round(float(right.mean()), 5),
        "digit_acc": round(1 - errors / chars, 5),
    }


def read_fixed(model, lines: compose.Lines) -> list[str]:
    logits = batched_logits(model, lines.images[:, :, :140], batch_size=1000)
    return ["".join(map(str, row)) for row in logits.argmax(-1).tolist()]


def read_mixed(model, pool, labels, n: int, seed: int):
    """(right or not, confidence) for n numbers of 1-12 digits in the mix3 layouts."""
    lines = compose.generate(pool, labels, n, np.random.default_rng(seed), "mix3", lengths=(1, 12),
                             pad_to=32)  # fmt: skip
    truth = compose.labels_to_strings(lines.digits, lines.lengths)
    read, conf = lengths.read_by_width(model, lines.widths, lambda r: lines.take(r, 32).images, 500)
    return ctc_decode.score(read, truth)[0], conf


def thresholds(model, pool, labels, n: int = 10_000) -> dict:
    """Confidence thresholds reaching 99.5% / 99.9% accuracy on val numbers (mixed lengths)."""
    right, conf = read_mixed(model, pool, labels, n, seed=11)
    out = {}
    by_conf = np.argsort(-conf)
    acc = np.cumsum(right[by_conf]) / np.arange(1, n + 1)
    for target in (0.995, 0.999):
        ok = np.flatnonzero(acc >= target)
        k = ok.max() if ok.size else 0
        out[str(target)] = {"threshold": float(conf[by_conf][k]), "val_coverage": (k + 1) / n}
    return out


def coverage(model, pool, labels, thr: dict, n: int = 10_000) -> dict:
    right, conf = read_mixed(model, pool, labels, n, seed=12)
    out = {}
    for key, t in thr.items():
        kept = conf >= t["threshold"]
        out[key] = {
            **t,
            "test_coverage": round(float(kept.mean()), 5),
            "test_accuracy": round(float(right[kept].mean()) if kept.any() else 1.0, 5),
        }
    return out


def accuracy_report(model_path, baseline=None, n5: int = 10_000, n_len: int = 1000) -> dict:
    torch.set_num_threads(2)
    t0 = time.perf_counter()
    m = mnist.load()
    model, _ = checkpoint.load_model(model_path)
    sets = five_digit_sets(m.test_images, m.test_labels, n5)
    five = {}
    for layout, lines in sets.items():
        truth = compose.labels_to_strings(lines.digits, lines.lengths)
        read, _ = lengths.read_lines(model, lines.images, lines.widths)
        five[layout] = score(read, truth)
        if baseline is not None and layout != "touching":
            base, _ = checkpoint.load_model(baseline)
            five[layout]["multihead"] = score(read_fixed(base, lines), truth)
    per_length = lengths.length_table(model, range(1, 13), n_len, "natural")
    vpool, vlab, _ = mnist.split_pool(m, "val")
    abstain = coverage(model, m.test_images, m.test_labels, thresholds(model, vpool, vlab))
    return {
        "model": str(model_path),
        "five_digits": five,
        "per_length_natural": per_length,
        "abstention": abstain,
        "seconds": round(time.perf_counter() - t0, 1),
    }
