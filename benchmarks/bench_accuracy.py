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
from pathlib import Path

from digitseq.core.paths import bundled_models_dir
from digitseq.evaluation import lengths
from digitseq.evaluation.accuracy import accuracy_report


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
