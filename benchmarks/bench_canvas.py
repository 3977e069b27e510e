"""Numbers drawn as the app's canvas exports them, read by the bundled reader.

The canvas exports opaque black strokes of one pen width on a transparent RGBA PNG (700x140
here). Each MNIST *test* digit is upscaled to canvas size (70-100 px tall), thresholded, thinned
to its centre line (Zhang-Suen) and redrawn as a uniform round stroke 8-20 px wide, one pen per
number (``digitseq.data.drawn``, which also draws training digits from MNIST's train digits);
the digits go left to right with gaps of 10-50% of their height and a little baseline jitter.
1-8 digits per number. The PNG bytes go through the normal predictor path (``Predictor
.predict``, as the app does). Prints whole-number accuracy per length and overall (target
>= 97%); the last stdout line is one JSON object.

    .venv/bin/python benchmarks/bench_canvas.py                # bundled reader, 1600 numbers
    .venv/bin/python benchmarks/bench_canvas.py --n 400 --save /tmp/canvas   # keep the PNGs
"""

from __future__ import annotations

import argparse
import io
import json
import time
from pathlib import Path

import numpy as np
from PIL import Image

from digitseq.data import drawn

CANVAS_W, CANVAS_H = 700, 140


def draw_number(digits: np.ndarray, rng: np.random.Generator) -> tuple[bytes, np.ndarray]:
    """(L, 28, 28) MNIST digits -> RGBA PNG bytes of the canvas (and its alpha, for saving)."""
    pen = int(rng.integers(8, 21))
    height = int(rng.integers(70, 101))
    gaps = rng.uniform(0.10, 0.50, size=len(digits)) * height
    for _ in range(6):  # shrink until the number fits the canvas
        skel = [drawn.digit_skeleton(d, height - pen) for d in digits]
        total = sum(s.shape[1] for s in skel) + gaps[1:].sum() + len(digits) * pen + 2 * pen
        if total <= CANVAS_W - 20:
            break
        height = int(height * (CANVAS_W - 20) / total)
        gaps = gaps * (CANVAS_W - 20) / total
    centre_line = np.zeros((CANVAS_H, CANVAS_W), bool)
    x = float(rng.uniform(10, max(11, CANVAS_W - 10 - total)))
    for i, s in enumerate(skel):
        if i:
            x += gaps[i] + pen
        top = int(
            np.clip(
                (CANVAS_H - s.shape[0]) / 2 + rng.uniform(-6, 6), pen, CANVAS_H - s.shape[0] - pen
            )
        )
        left = int(x)
        region = centre_line[top : top + s.shape[0], left : left + s.shape[1]]
        region |= s[: region.shape[0], : region.shape[1]]
        x += s.shape[1]
    alpha = np.where(drawn.pen(centre_line, pen), 255, 0).astype(np.uint8)
    rgba = np.zeros((CANVAS_H, CANVAS_W, 4), np.uint8)
    rgba[..., 3] = alpha  # opaque black strokes on transparent
    buf = io.BytesIO()
    Image.fromarray(rgba, "RGBA").save(buf, "PNG")
    return buf.getvalue(), alpha


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, help="run folder or weights (default: bundled model)")
    ap.add_argument("--n", type=int, default=1600, help="numbers (spread over 1-8 digits)")
    ap.add_argument("--max-digits", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--split", choices=["val", "test"], default="test", help="MNIST digits used")
    ap.add_argument("--backend", choices=["torch", "onnx"], default="onnx")
    ap.add_argument("--save", type=Path, help="also write the PNGs and labels.csv here")
    args = ap.parse_args(argv)

    from digitseq.data import compose, mnist
    from digitseq.reading.predictor import Predictor

    data = mnist.load()
    pool, labels, _ = mnist.split_pool(data, args.split)  # val: for choosing; test: to report
    rng = np.random.default_rng([args.seed, 8])
    digits, lens, idx = compose.sample_numbers(labels, args.n, rng, (1, args.max_digits))
    truth = compose.labels_to_strings(digits, lens)
    t = time.perf_counter()
    pngs = []
    for i in range(args.n):
        png, _ = draw_number(pool[idx[i, : lens[i]]], rng)
        pngs.append(png)
    draw_s = time.perf_counter() - t
    if args.save:
        args.save.mkdir(parents=True, exist_ok=True)
        for i, png in enumerate(pngs):
            (args.save / f"{i:06d}.png").write_bytes(png)
        rows = "".join(f"{i:06d}.png,{s}\n" for i, s in enumerate(truth))
        (args.save / "labels.csv").write_text("file,label\n" + rows)

    predictor = Predictor.load(args.model, backend=args.backend)
    t = time.perf_counter()
    readings = predictor.predict(pngs, batch_size=64)
    read_s = time.perf_counter() - t
    pred = [r.digits for r in readings]
    right = np.array([p == s for p, s in zip(pred, truth, strict=True)])
    per_length = {int(k): round(100 * float(right[lens == k].mean()), 2) for k in np.unique(lens)}
    overall = round(100 * float(right.mean()), 2)
    wrong_len = np.array(
        [p is not None and len(p) != len(t) for p, t in zip(pred, truth, strict=True)]
    )
    wrong_length = round(100 * float(wrong_len.mean()), 2)  # digits lost or invented

    what = f"1-{args.max_digits} digits, pen 8-20 px, {CANVAS_W}x{CANVAS_H} RGBA"
    print(f"model {predictor.info['name']} ({args.backend}), {args.n} canvas-like numbers ({what})")
    print(f"{'digits':>8}{'n':>7}{'whole %':>10}")
    for k, acc in per_length.items():
        print(f"{k:>8}{int((lens == k).sum()):>7}{acc:>10.2f}")
    print(f"{'all':>8}{args.n:>7}{overall:>10.2f}   (target >= 97)")
    print(f"wrong length: {wrong_length:.2f}% of the numbers ({wrong_len.sum()} of "
          f"{int((~right).sum())} errors); the rest are misread digits")  # fmt: skip
    wrong = [(s, p) for p, s in zip(pred, truth, strict=True) if p != s][:8]
    print("some errors (true, read):", wrong)
    summary = {
        "benchmark": "canvas",
        "model": predictor.info["name"],
        "n": args.n,
        "lengths": [1, args.max_digits],
        "whole_number": overall,
        "per_length": per_length,
        "wrong_length": wrong_length,
        "unreadable": sum(1 for r in readings if r.error),
        "draw_ms_per_number": round(1000 * draw_s / args.n, 2),
        "read_ms_per_number": round(1000 * read_s / args.n, 2),
    }
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
