"""Accuracy on realistic images beside the clean accuracy on the very same numbers.

Builds --n realistic images from MNIST *test* digits (``digitseq.realistic``: larger, dark ink
on textured paper, uneven gaps, rotation, blur, noise, JPEG), reads them from disk with the
Predictor (full preprocessing), and reads the same five MNIST digits composed cleanly in the
``seed`` and ``natural`` layouts. Prints whole-number and per-digit accuracy for each; the last
stdout line is one JSON object.

    .venv/bin/python benchmarks/bench_realistic.py                 # bundled model, 2000 images
    .venv/bin/python benchmarks/bench_realistic.py --model RUN_DIR --n 500 --out /tmp/real
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np


def accuracy(pred: list[str | None], labels: list[str]) -> dict:
    whole = np.mean([p == t for p, t in zip(pred, labels, strict=True)])
    digit = np.mean(
        [
            a == b
            for p, t in zip(pred, labels, strict=True)
            for a, b in zip(p or "-----", t, strict=True)
        ]
    )
    return {"sequence_acc": round(100 * float(whole), 2), "digit_acc": round(100 * float(digit), 2)}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, help="run folder or weights (default: bundled model)")
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, help="keep the realistic set here (default: a temp dir)")
    ap.add_argument("--backend", choices=["torch", "onnx"], default="torch")
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(1)
    from digitseq.data import compose, mnist, realistic
    from digitseq.reading.predictor import Predictor

    data = mnist.load()
    out = args.out or Path(tempfile.mkdtemp(prefix="realistic.")) / "set"
    t = time.perf_counter()
    if not (out / "labels.csv").is_file():
        realistic.write_realistic_set(out, args.n, args.seed, data)
    build_s = time.perf_counter() - t
    rows = realistic.read_labels(out)
    labels = [label for _, label, _ in rows]
    idx = np.array([src for _, _, src in rows])

    predictor = Predictor.load(args.model, backend=args.backend)
    t = time.perf_counter()
    readings = predictor.predict([out / name for name, _, _ in rows], batch_size=256)
    read_s = time.perf_counter() - t
    errors = [r.error for r in readings if r.error]
    results = {"realistic": accuracy([r.digits for r in readings], labels)}
    results["realistic"]["unreadable"] = len(errors)

    digits = data.test_images[idx]  # (n, 5, 28, 28): the same MNIST digits, composed cleanly
    rng = np.random.default_rng([args.seed, 5])
    clean = {"seed": compose.compose_seed(digits), "natural": compose.compose_natural(digits, rng)}
    for layout, images in clean.items():
        logits = predictor.logits(images.astype(np.float32) / 255.0)
        pred = ["".join(map(str, row)) for row in logits.argmax(axis=-1)]
        results[f"clean_{layout}"] = accuracy(pred, labels)

    print(f"model {predictor.info['name']} ({args.backend}), {len(rows)} numbers from MNIST test")
    print(f"{'set':16s}{'whole number':>14s}{'per digit':>12s}")
    for name, r in results.items():
        print(f"{name:16s}{r['sequence_acc']:>13.2f}%{r['digit_acc']:>11.2f}%")
    gap = results["clean_seed"]["sequence_acc"] - results["realistic"]["sequence_acc"]
    print(f"realistic is {gap:.2f} points below clean seed; {len(errors)} unreadable")
    if errors:
        print("first errors:", errors[:3])
    summary = {
        "benchmark": "realistic",
        "model": predictor.info["name"],
        "n": len(rows),
        **results,
        "gap_points_vs_clean_seed": round(gap, 2),
        "build_s": round(build_s, 1),
        "read_ms_per_image": round(1000 * read_s / len(rows), 2),
    }
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
