"""Where a reader's errors come from (issue 11, item 1), on MNIST test digits only:

1. every one of the 10,000 MNIST test digits read alone, as a 1-digit number: per-digit accuracy
   and the list of digits it misreads alone (with their MNIST test index, label and reading) —
   MNIST's ambiguous and mislabelled digits are among them;
2. 10,000 clean 5-digit `seed` test numbers: each wrong reading is put in one of two groups,
   "holds a digit misread alone too" (the digit itself is the problem: ambiguous, mislabelled or
   hard) or "plain misread" (every digit is read right alone; the context made the error).

    .venv/bin/python benchmarks/bench_errors.py [MODEL] [--n 10000]

The last stdout line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from digitseq.data import compose, mnist
from digitseq.evaluation import lengths
from digitseq.models import checkpoint


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", nargs="?", type=Path)
    ap.add_argument("--n", type=int, default=10_000, help="5-digit test numbers")
    args = ap.parse_args()
    torch.set_num_threads(2)
    t0 = time.perf_counter()
    m = mnist.load()
    model, _ = checkpoint.load_model(args.model)

    digits = m.test_images  # (10000, 28, 28): each one a 1-digit number in the seed layout
    read, _ = lengths.read_lines(model, digits, np.full(len(digits), 28), batch_size=1000)
    truth = [str(int(d)) for d in m.test_labels]
    alone_wrong = {i: read[i] for i in range(len(digits)) if read[i] != truth[i]}
    digit_acc = 1 - len(alone_wrong) / len(digits)

    lines = compose.generate(
        m.test_images,
        m.test_labels,
        args.n,
        np.random.default_rng([0, 0, 5]),
        "seed",
        lengths=(5, 5),
    )  # fmt: skip  (bench_accuracy's seed set)
    nums = compose.labels_to_strings(lines.digits, lines.lengths)
    got, _ = lengths.read_lines(model, lines.images, lines.widths, batch_size=1000)
    wrong = [i for i in range(args.n) if got[i] != nums[i]]
    hard = [i for i in wrong if any(int(j) in alone_wrong for j in lines.idx[i, :5])]
    rows = [
        {
            "number": nums[i],
            "read": got[i],
            "hard_digits": [
                {
                    "mnist_test_index": int(j),
                    "label": int(m.test_labels[j]),
                    "read_alone": alone_wrong[int(j)],
                }
                for j in lines.idx[i, :5]
                if int(j) in alone_wrong
            ],  # fmt: skip
        }
        for i in wrong
    ]
    print(f"MNIST test digits read alone: {digit_acc:.2%} ({len(alone_wrong)} misread)")
    plain = len(wrong) - len(hard)
    print(
        f"5-digit seed numbers: {1 - len(wrong) / args.n:.2%} whole-number; {len(wrong)} errors: "
        f"{len(hard)} hold a digit misread alone too, {plain} plain misreads"
    )
    print("digits misread alone (MNIST test index: label -> read):")
    print(", ".join(f"{i}: {m.test_labels[i]}->{r or '-'}" for i, r in sorted(alone_wrong.items())))
    print(json.dumps({
        "model": str(args.model or "bundled"),
        "single_digit_acc": round(digit_acc, 5),
        "single_digit_misread": {str(k): v for k, v in sorted(alone_wrong.items())},
        "five_digit_seed_acc": round(1 - len(wrong) / args.n, 5),
        "errors": len(wrong),
        "errors_with_a_hard_digit": len(hard),
        "plain_misreads": len(wrong) - len(hard),
        "error_rows": rows,
        "seconds": round(time.perf_counter() - t0, 1),
    }))  # fmt: skip


if __name__ == "__main__":
    main()
