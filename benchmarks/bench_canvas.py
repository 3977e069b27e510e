"""Numbers drawn as the app's canvas exports them, read by the bundled reader.

The canvas exports opaque black strokes of one pen width on a transparent RGBA PNG (700x140
here). Each MNIST *test* digit is upscaled to canvas size (70-100 px tall), thresholded, thinned
to its centre line (Zhang-Suen) and redrawn as a uniform round stroke 8-20 px wide (one pen per
number); the digits go left to right with gaps of 10-50% of their height and a little baseline
jitter. 1-8 digits per number. The PNG bytes go through the normal predictor path (``Predictor
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

CANVAS_W, CANVAS_H = 700, 140


def thin(mask: np.ndarray) -> np.ndarray:
    """Zhang-Suen thinning of a boolean image -> its one-pixel centre lines."""
    img = np.pad(mask.astype(np.uint8), 1)
    while True:
        changed = False
        for step in (0, 1):
            p = np.pad(img, 1)
            n = [p[1:-1, 1:-1]]  # P1, then P2..P9 clockwise from north
            for dy, dx in ((-1, 0), (-1, 1), (0, 1), (1, 1), (1, 0), (1, -1), (0, -1), (-1, -1)):
                n.append(p[1 + dy : p.shape[0] - 1 + dy, 1 + dx : p.shape[1] - 1 + dx])
            p2, p3, p4, p5, p6, p7, p8, p9 = n[1:]
            b = sum(x.astype(np.int32) for x in n[1:])
            seq = [p2, p3, p4, p5, p6, p7, p8, p9, p2]
            a = sum(((seq[i] == 0) & (seq[i + 1] == 1)).astype(np.int32) for i in range(8))
            if step == 0:
                c = (p2 * p4 * p6 == 0) & (p4 * p6 * p8 == 0)
            else:
                c = (p2 * p4 * p8 == 0) & (p2 * p6 * p8 == 0)
            drop = (img == 1) & (b >= 2) & (b <= 6) & (a == 1) & c
            if drop.any():
                img[drop] = 0
                changed = True
        if not changed:
            return img[1:-1, 1:-1].astype(bool)


def disk_dilate(mask: np.ndarray, diameter: int) -> np.ndarray:
    """Dilate a boolean image by a disk: a round pen of ``diameter`` pixels."""
    r = diameter / 2
    out = np.zeros_like(mask)
    ys, xs = np.nonzero(mask)
    if not len(ys):
        return out
    k = int(np.ceil(r))
    h, w = mask.shape
    for dy in range(-k, k + 1):
        for dx in range(-k, k + 1):
            if dy * dy + dx * dx <= r * r:
                out[np.clip(ys + dy, 0, h - 1), np.clip(xs + dx, 0, w - 1)] = True
    return out


def digit_skeleton(digit: np.ndarray, height: int) -> np.ndarray:
    """A 28x28 MNIST digit -> the centre line of its ink at ``height`` px tall (boolean)."""
    rows, cols = np.flatnonzero(digit.max(1) > 40), np.flatnonzero(digit.max(0) > 40)
    crop = digit[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    s = height / crop.shape[0]
    size = (max(1, round(crop.shape[1] * s)), height)
    big = np.asarray(Image.fromarray(np.pad(crop, 1)).resize(
        (size[0] + 2 * round(s), size[1] + 2 * round(s)), Image.Resampling.BILINEAR))  # fmt: skip
    return thin(big > 110)


def draw_number(digits: np.ndarray, rng: np.random.Generator) -> tuple[bytes, np.ndarray]:
    """(L, 28, 28) MNIST digits -> RGBA PNG bytes of the canvas (and its alpha, for saving)."""
    pen = int(rng.integers(8, 21))
    height = int(rng.integers(70, 101))
    gaps = rng.uniform(0.10, 0.50, size=len(digits)) * height
    for _ in range(6):  # shrink until the number fits the canvas
        skel = [digit_skeleton(d, height - pen) for d in digits]
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
    alpha = np.where(disk_dilate(centre_line, pen), 255, 0).astype(np.uint8)
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

    what = f"1-{args.max_digits} digits, pen 8-20 px, {CANVAS_W}x{CANVAS_H} RGBA"
    print(f"model {predictor.info['name']} ({args.backend}), {args.n} canvas-like numbers ({what})")
    print(f"{'digits':>8}{'n':>7}{'whole %':>10}")
    for k, acc in per_length.items():
        print(f"{k:>8}{int((lens == k).sum()):>7}{acc:>10.2f}")
    print(f"{'all':>8}{args.n:>7}{overall:>10.2f}   (target >= 97)")
    wrong = [(s, p) for p, s in zip(pred, truth, strict=True) if p != s][:8]
    print("some errors (true, read):", wrong)
    summary = {
        "benchmark": "canvas",
        "model": predictor.info["name"],
        "n": args.n,
        "lengths": [1, args.max_digits],
        "whole_number": overall,
        "per_length": per_length,
        "unreadable": sum(1 for r in readings if r.error),
        "draw_ms_per_number": round(1000 * draw_s / args.n, 2),
        "read_ms_per_number": round(1000 * read_s / args.n, 2),
    }
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
