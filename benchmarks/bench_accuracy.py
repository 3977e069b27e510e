"""Accuracy of a reader on test numbers built from MNIST test digits only (never val/train):

- 5-digit numbers, 10,000 per layout (seed, natural, touching: gaps -8..0 px), read without
  being told the length; the 5-digit `multihead` baseline side by side on seed and natural;
- every length 1-12 on `natural` (1,000 per length): whole-number accuracy vs 0.997^L, CER,
  wrong-length rate, ECE of the calibrated string probability;
- abstention: the confidence thresholds that give 99.5% / 99.9% accuracy on val numbers, and
  the coverage they give on test.

    .venv/bin/python benchmarks/bench_accuracy.py [MODEL] [--baseline models/digitseq-multihead]
        [--n5 10000] [--n-len 1000]

The last stdout line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from digitseq.core.paths import bundled_models_dir
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


def thresholds(model, pool, labels, n: int = 10_000) -> dict:
    """Confidence thresholds reaching 99.5% / 99.9% accuracy on val numbers (mixed lengths)."""
    lines = compose.generate(pool, labels, n, np.random.default_rng(11), "mix3", lengths=(1, 12),
                             pad_to=32)  # fmt: skip
    truth = compose.labels_to_strings(lines.digits, lines.lengths)
    read, conf = lengths.read_by_width(model, lines.widths, lambda r: lines.take(r, 32).images, 500)
    right = ctc_decode.score(read, truth)[0]
    out = {}
    by_conf = np.argsort(-conf)
    acc = np.cumsum(right[by_conf]) / np.arange(1, n + 1)
    for target in (0.995, 0.999):
        ok = np.flatnonzero(acc >= target)
        k = ok.max() if ok.size else 0
        out[str(target)] = {"threshold": float(conf[by_conf][k]), "val_coverage": (k + 1) / n}
    return out


def coverage(model, pool, labels, thr: dict, n: int = 10_000) -> dict:
    lines = compose.generate(pool, labels, n, np.random.default_rng(12), "mix3", lengths=(1, 12),
                             pad_to=32)  # fmt: skip
    truth = compose.labels_to_strings(lines.digits, lines.lengths)
    read, conf = lengths.read_by_width(model, lines.widths, lambda r: lines.take(r, 32).images, 500)
    right = ctc_decode.score(read, truth)[0]
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", nargs="?", type=Path)
    ap.add_argument("--baseline", type=Path, default=bundled_models_dir() / "digitseq-multihead")
    ap.add_argument("--n5", type=int, default=10_000)
    ap.add_argument("--n-len", type=int, default=1000)
    args = ap.parse_args()
    rep = accuracy_report(args.model, args.baseline, args.n5, args.n_len)
    for layout, s in rep["five_digits"].items():
        base = s.get("multihead")
        extra = f"  (multihead {base['seq_acc']:.2%})" if base else ""
        print(f"5 digits {layout:9s} whole {s['seq_acc']:.2%} digit {s['digit_acc']:.3%}{extra}")
    print(lengths.table_markdown(rep["per_length_natural"]))
    for key, a in rep["abstention"].items():
        print(f"accuracy {key} on val: threshold {a['threshold']:.4f} -> test coverage "
              f"{a['test_coverage']:.2%} at accuracy {a['test_accuracy']:.2%}")  # fmt: skip
    print(json.dumps(rep))


if __name__ == "__main__":
    main()
