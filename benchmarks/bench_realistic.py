"""Accuracy on realistic images beside the clean accuracy on the very same numbers, per length.

Builds --n realistic images of --lengths digits from MNIST *test* digits (``data/realistic.py``:
larger, dark ink on textured paper, uneven gaps, rotation, blur, noise, JPEG), reads them from
disk with the Predictor (full preprocessing), and reads the same MNIST digits composed cleanly
(``seed`` and ``natural`` layouts, saved as dark-on-white PNG bytes, the same predictor path).
Prints whole-number accuracy per length and per length group (1-4, 5-8, 9-12) for each set; the
target is realistic within 1 point of clean. ``--split val`` builds both from MNIST val digits
(50,000-59,999 of the train file) instead: for choosing between readers or preprocessings, which
must never look at test digits. The last stdout line is one JSON object.

    .venv/bin/python benchmarks/bench_realistic.py                      # bundled reader, 2000
    .venv/bin/python benchmarks/bench_realistic.py --lengths 5 --n 500  # the 5-digit set
    .venv/bin/python benchmarks/bench_realistic.py --split val --model runs/x   # for choosing
"""

from __future__ import annotations

import argparse
import io
import json
import tempfile
import time
from pathlib import Path

import numpy as np

GROUPS = ((1, 4), (5, 8), (9, 12))


def whole(pred: list[str | None], truth: list[str], mask: np.ndarray) -> float | None:
    hits = [p == t for p, t, m in zip(pred, truth, mask, strict=True) if m]
    return round(100 * float(np.mean(hits)), 2) if hits else None


def png_bytes(img: np.ndarray) -> bytes:
    """A clean white-ink-on-black line -> dark-on-white PNG with paper around it."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.pad(255 - img, 30, constant_values=255)).save(buf, "PNG")
    return buf.getvalue()


def mnist_digits(split: str):
    """MNIST with the digits of ``split`` ("val" or "test") in its test fields, which the
    realistic renderer and the clean sets read."""
    import dataclasses

    from digitseq.data import mnist

    data = mnist.load()
    if split == "test":
        return data
    pool, labels, _ = mnist.split_pool(data, split)
    return dataclasses.replace(data, test_images=pool, test_labels=labels)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, help="run folder or weights (default: bundled model)")
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--lengths", default="1-12", help="N or LO-HI digits (default 1-12)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, help="keep the realistic set here (default: a temp dir)")
    ap.add_argument("--backend", choices=["torch", "onnx"], default="onnx")
    ap.add_argument("--split", choices=["val", "test"], default="test", help="MNIST digits used")
    args = ap.parse_args(argv)

    from digitseq.data import compose, realistic, storage
    from digitseq.reading.predictor import Predictor

    lo, hi = storage.parse_lengths(args.lengths)
    data = mnist_digits(args.split)
    out = args.out or Path(tempfile.mkdtemp(prefix="realistic.")) / "set"
    t = time.perf_counter()
    if not (out / "labels.csv").is_file():
        realistic.write_realistic_set(out, args.n, args.seed, data, lengths=(lo, hi))
    build_s = time.perf_counter() - t
    rows = realistic.read_labels(out)
    truth = [label for _, label, _ in rows]
    lens = np.array([len(s) for s in truth])

    predictor = Predictor.load(args.model, backend=args.backend)
    digits = predictor.decoder.lengths  # None: any length; the 5-digit baselines: (5, 5)
    t = time.perf_counter()
    readings = predictor.predict([out / name for name, _, _ in rows], batch_size=64, digits=digits)
    read_s = time.perf_counter() - t
    errors = [r.error for r in readings if r.error]
    preds = {"realistic": [r.digits for r in readings]}

    # The same MNIST digits composed cleanly, read through the same predictor path.
    idx = np.full((len(rows), hi), -1, np.int64)
    for i, (_, _, src) in enumerate(rows):
        idx[i, : len(src)] = src
    for layout in ("seed", "natural"):
        rng = np.random.default_rng([args.seed, 5, compose.LAYOUT_IDS[layout]])
        lay = np.full(len(rows), compose.LAYOUT_IDS[layout], np.uint8)
        images, widths = compose.compose_lines(data.test_images, idx, lens, lay, rng)
        pngs = [png_bytes(images[i, :, : widths[i]]) for i in range(len(rows))]
        preds[f"clean_{layout}"] = [r.digits for r in predictor.predict(pngs, digits=digits)]

    groups = [(a, b) for a, b in GROUPS if a <= hi and b >= lo] if hi > lo else [(lo, hi)]
    results = {}
    for name, pred in preds.items():
        results[name] = {
            "whole_number": whole(pred, truth, np.ones(len(truth), bool)),
            "per_group": {
                f"{a}-{b}": whole(pred, truth, (lens >= a) & (lens <= b)) for a, b in groups
            },  # fmt: skip
            "per_length": {int(k): whole(pred, truth, lens == k) for k in np.unique(lens)},
        }
    clean = results["clean_seed"]
    real = results["realistic"]
    gap = {g: round(clean["per_group"][g] - real["per_group"][g], 2) for g in real["per_group"]}

    print(f"model {predictor.info['name']} ({args.backend}), {len(rows)} numbers of {lo}-{hi} "
          f"digits from MNIST {args.split}")  # fmt: skip
    head = "".join(f"{k:>8}" for k in results["realistic"]["per_length"])
    print(f"{'whole-number %':16s}{'all':>8}{head}")
    for name, r in results.items():
        cells = "".join(f"{v:>8.2f}" for v in r["per_length"].values())
        print(f"{name:16s}{r['whole_number']:>8.2f}{cells}")
    for g, d in gap.items():
        print(f"{g} digits: realistic {real['per_group'][g]:.2f}% vs clean seed "
              f"{clean['per_group'][g]:.2f}% ({d:+.2f} points; target <= 1)")  # fmt: skip
    print(f"{len(errors)} unreadable" + (f"; first: {errors[:3]}" if errors else ""))
    summary = {
        "benchmark": "realistic",
        "model": predictor.info["name"],
        "n": len(rows),
        "lengths": [lo, hi],
        "split": args.split,
        **results,
        "gap_points_vs_clean_seed": round(clean["whole_number"] - real["whole_number"], 2),
        "gap_points_per_group": gap,
        "unreadable": len(errors),
        "build_s": round(build_s, 1),
        "read_ms_per_image": round(1000 * read_s / len(rows), 2),
    }
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
