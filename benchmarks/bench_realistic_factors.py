"""Which part of the realistic renderer costs the reader most: the realistic set rebuilt with one
factor switched off at a time, from MNIST *val* digits (50,000-59,999; a diagnosis that may
steer preprocessing, so it never reads test digits), read through the full predictor path.

    .venv/bin/python benchmarks/bench_realistic_factors.py                 # 1000 numbers of 9-12
    .venv/bin/python benchmarks/bench_realistic_factors.py --lengths 5 --only "vertical jitter"
    .venv/bin/python benchmarks/bench_realistic_factors.py --line-scale 0.94 1.06   # size probe
    .venv/bin/python benchmarks/bench_realistic_factors.py --heights --only "line rotation"

Prints whole-number accuracy with everything on and with each factor off; ``--heights`` also
compares the size of the digits preprocessing hands the reader with the size of the digits of
generated training lines (median connected-component height per line, by length). The last
stdout line is one JSON object.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
from pathlib import Path

import numpy as np
from bench_realistic import mnist_digits

from digitseq.data import realistic, storage

P = realistic.RealisticParams()
FACTORS = {  # name -> the renderer's parameters with that factor off
    "line rotation": {"line_rotation_deg": 0.0},
    "vertical jitter": {"vertical_jitter": 0.0},
    "digit rotation": {"digit_rotation_deg": 0.0},
    "blur, noise, JPEG": {"blur": (0.0, 0.0), "noise": (0.0, 0.0), "p_jpeg": 0.0},
    "thick and thin pens": {"p_thick": 0.0, "p_thin": 0.0},
}


def accuracy(predictor, folder: Path) -> float:
    """Whole-number accuracy (%) of the predictor on a written realistic set."""
    rows = realistic.read_labels(folder)
    read = predictor.predict([folder / f for f, _, _ in rows], batch_size=64)
    hits = [r.digits == label for r, (_, label, _) in zip(read, rows, strict=True)]
    return round(100 * float(np.mean(hits)), 2)


def digit_height(mask: np.ndarray) -> float:
    """Median height of a line's digit-sized connected components (at least 10% of the largest
    one's area and half its height: specks and detached strokes left out)."""
    import cv2

    n, _, stats, _ = cv2.connectedComponentsWithStats(mask.view(np.uint8), connectivity=8)
    if n < 2:
        return float("nan")
    h, area = stats[1:, cv2.CC_STAT_HEIGHT], stats[1:, cv2.CC_STAT_AREA]
    return float(np.median(h[(area >= 0.1 * area.max()) & (h >= 0.5 * h.max())]))


def heights(folder: Path, pool, labels, seed: int) -> dict[str, dict[int, float]]:
    """Mean digit height (px) per length: the realistic set as preprocessing gives it to the
    reader, and generated lines of the same lengths in each training layout."""
    from digitseq.data import compose
    from digitseq.reading import preprocess

    rows = realistic.read_labels(folder)
    lens = np.array([len(label) for _, label, _ in rows])
    real = [digit_height(preprocess.preprocess(folder / f, line=True) > 0.5) for f, _, _ in rows]
    out = {"realistic": {int(k): float(np.nanmean(np.array(real)[lens == k])) for k in set(lens)}}
    rng = np.random.default_rng([seed, 3])
    for layout in ("seed", "natural", "touching", "spaced"):
        lines = compose.generate(pool, labels, len(rows), rng, layout, lengths=(lens.min(),
                                 lens.max()))  # fmt: skip
        got = np.array([digit_height(im[:, :w] > 127) for im, w in zip(lines.images,
                        lines.widths, strict=True)])  # fmt: skip
        out[layout] = {
            int(k): float(np.nanmean(got[lines.lengths == k])) for k in np.unique(lines.lengths)
        }
    return {name: {k: round(v, 2) for k, v in sorted(d.items())} for name, d in out.items()}


def read_scaled(predictor, folder: Path, factor: float) -> float:
    """``accuracy`` with preprocessing's target line height scaled by factor."""
    from digitseq.reading import preprocess

    height = preprocess.line_height
    preprocess.line_height = lambda h, w: min(27.0, factor * height(h, w))
    try:
        return accuracy(predictor, folder)
    finally:
        preprocess.line_height = height


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, help="run folder or weights (default: bundled model)")
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--lengths", default="9-12", help="N or LO-HI digits (default 9-12)")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--only", action="append", choices=list(FACTORS), help="these factors only")
    ap.add_argument("--heights", action="store_true", help="also: digit sizes vs training lines")
    ap.add_argument(
        "--line-scale", type=float, nargs="*", default=[],
        help="probe: also read the everything-on set with preprocessing's line height times F",
    )  # fmt: skip
    args = ap.parse_args()

    from digitseq.reading.predictor import Predictor

    val = mnist_digits("val")
    lengths = storage.parse_lengths(args.lengths)
    predictor = Predictor.load(args.model, backend="onnx")
    variants = {"everything on": P} | {
        f"no {name}": dataclasses.replace(P, **FACTORS[name]) for name in args.only or FACTORS
    }
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for i, (name, params) in enumerate(variants.items()):
            out = Path(tmp) / str(i)
            realistic.write_realistic_set(out, args.n, args.seed, val, params, lengths=lengths)
            results[name] = accuracy(predictor, out)
            print(f"{name:28s} {results[name]:6.2f}%", flush=True)
        for f in args.line_scale:  # the reader's sensitivity to the size preprocessing gives
            name = f"everything on, height x{f}"
            results[name] = read_scaled(predictor, Path(tmp) / "0", f)
            print(f"{name:28s} {results[name]:6.2f}%", flush=True)
        if args.heights:
            results["digit_height_px"] = heights(
                Path(tmp) / "0", val.test_images, val.test_labels, args.seed
            )
            for name, per_length in results["digit_height_px"].items():
                cells = " ".join(f"{k}:{v:.1f}" for k, v in per_length.items())
                print(f"digit height {name:10s} {cells}", flush=True)
    head = {"benchmark": "realistic_factors", "model": predictor.info["name"], "n": args.n}
    print(json.dumps({**head, "lengths": list(lengths), "split": "val", **results}))


if __name__ == "__main__":
    main()
