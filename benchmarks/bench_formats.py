"""Formatted numbers (amounts, dates, times, phone numbers, IDs and plain numbers) read by a
reader, per format family: exact text (separators included), digits only (the digits of the
reading against the number's digits), and exact text when the reading is held to the family's
format (``--pattern``). Test numbers come from MNIST test digits (``--split val``: val digits,
for choosing) with separators drawn by ``data/separators.py``, in the ``people`` layouts
(close-written included), as 28-px lines.

    .venv/bin/python benchmarks/bench_formats.py [--model RUN_OR_ONNX] [--n 300] [--split test]

A digit reader (the bundle today) reads no separator: its exact text is right only on plain
numbers, and its digits-only column is what it gives a user of a formatted number. The last
stdout line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from digitseq.data import formats, mnist
from digitseq.reading.predictor import Predictor

PATTERNS = {  # the format each family is held to with --pattern
    "number": "digits",
    "amount": "amount",
    "date": "date",
    "time": "time",
    "phone": "phone",
    "id": formats.FAMILIES["id"].pattern,
}


def family_set(name: str, n: int, split: str, seed: int = 0):
    """n lines of one family from the split's MNIST digits: (images, widths, texts)."""
    m = mnist.load()
    pool, labels = mnist.split_pool(m, split)[:2]
    rng = np.random.default_rng([seed, 7, list(formats.FAMILIES).index(name)])
    texts = formats.sample_texts(n, rng, {name: 1.0})
    lines = formats.compose_text_lines(pool, labels, texts, rng, "people")
    return lines.images, lines.widths, texts


def digits_of(text: str | None) -> str:
    return "".join(c for c in text or "" if c.isdigit())


def measure(predictor: Predictor, name: str, n: int, split: str) -> dict:
    images, widths, texts = family_set(name, n, split)
    inputs = [images[i, :, : widths[i]].astype(np.float32) / 255 for i in range(len(texts))]
    t0 = time.perf_counter()
    free = predictor.predict(inputs)
    ms = 1000 * (time.perf_counter() - t0) / len(texts)
    held = predictor.predict(inputs, pattern=PATTERNS[name])
    return {
        "n": len(texts),
        "exact_text": float(np.mean([r.text == t for r, t in zip(free, texts, strict=True)])),
        "digits_only": float(
            np.mean([r.digits == digits_of(t) for r, t in zip(free, texts, strict=True)])
        ),
        "pattern_exact_text": float(
            np.mean([r.text == t for r, t in zip(held, texts, strict=True)])
        ),
        "pattern_flagged": float(np.mean([bool(r.warning) for r in held])),
        "ms_per_image": round(ms, 2),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", help="a run folder, model folder or .onnx (default: the bundle)")
    ap.add_argument("--n", type=int, default=300, help="numbers per family")
    ap.add_argument("--split", choices=["val", "test"], default="test")
    args = ap.parse_args()
    predictor = Predictor.load(args.model)
    rows = {name: measure(predictor, name, args.n, args.split) for name in formats.FAMILIES}
    print(f"| {args.n} numbers per family ({args.split}) | exact text | digits only | "
          "exact text, held to its format | flagged |")  # fmt: skip
    print("|---|---:|---:|---:|---:|")
    for name, r in rows.items():
        print(f"| {name} | {r['exact_text']:.1%} | {r['digits_only']:.1%} | "
              f"{r['pattern_exact_text']:.1%} | {r['pattern_flagged']:.1%} |")  # fmt: skip
    print(json.dumps({"model": args.model or "bundled", "split": args.split, "families": rows}))


if __name__ == "__main__":
    main()
