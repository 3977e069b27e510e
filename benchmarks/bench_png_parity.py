"""`digitseq predict` on the PNG export of a test split against `digitseq evaluate` on the same
split's arrays: the whole-number accuracies must agree within 0.2 points (images already in the
seed format lose nothing in preprocessing).

    .venv/bin/python benchmarks/bench_png_parity.py [--model RUN] [--layout seed] [--n 10000]

Last stdout line: one JSON object.
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", type=Path)
    ap.add_argument("--layout", default="seed", choices=["seed", "natural", "mixed"])
    ap.add_argument("--n", type=int, default=10_000)
    args = ap.parse_args()

    import torch

    torch.set_num_threads(2)
    from digitseq.data import storage
    from digitseq.evaluation import metrics
    from digitseq.models import checkpoint

    folder = Path(tempfile.mkdtemp(prefix="parity.")) / "ds"
    cfg = storage.GenerateConfig(layout=args.layout, counts={"test": args.n}, seed=0, png=True)
    storage.generate_dataset(folder, cfg, progress=False)
    split = storage.load_split(folder, "test")

    model, mcfg = checkpoint.load_model(args.model)
    t = time.perf_counter()
    ev = metrics.evaluate_model(model, mcfg, split)
    eval_s = time.perf_counter() - t
    eval_acc = ev.metrics["overall"]["seq_acc"]

    cmd = [
        sys.executable,
        "-m",
        "digitseq",
        "predict",
        "--format",
        "jsonl",
        str(split.folder / "png"),
    ]
    if args.model:
        cmd[4:4] = ["--model", str(args.model)]
    t = time.perf_counter()
    res = subprocess.run(cmd, capture_output=True, text=True, check=False)
    predict_s = time.perf_counter() - t
    readings = {Path(r["file"]).name: r["digits"] for r in map(json.loads, res.stdout.splitlines())}
    with open(split.folder / "png" / "labels.csv") as f:
        truth = {row["file"]: row["label"] for row in csv.DictReader(f)}
    hits = [readings.get(name) == label for name, label in truth.items()]
    predict_acc = float(np.mean(hits))
    out = {
        "layout": args.layout,
        "n": args.n,
        "evaluate_seq_acc": round(100 * eval_acc, 3),
        "predict_png_seq_acc": round(100 * predict_acc, 3),
        "difference_points": round(100 * abs(eval_acc - predict_acc), 3),
        "within_0_2_points": abs(eval_acc - predict_acc) <= 0.002,
        "evaluate_s": round(eval_s, 1),
        "predict_s": round(predict_s, 1),
    }
    print(
        f"{args.layout}: evaluate {out['evaluate_seq_acc']}%, predict on PNGs "
        f"{out['predict_png_seq_acc']}% (difference {out['difference_points']} points)"
    )
    print(json.dumps(out))


if __name__ == "__main__":
    main()
