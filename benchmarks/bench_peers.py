"""digitseq beside a production OCR engine (RapidOCR 3.10, PP-OCR recognition, offline) on the
same images: held-out sets of people's writing (``people_sets.py``: close-written, pen drawings,
handwriting fonts, small writing) and the MNIST sets (seed strips, natural, touching, realistic
paper, canvas drawings), numbers of 1-12 digits (canvas 1-8, pen 1-10).

digitseq reads each PNG through its normal predictor path (preprocessing + the ONNX reader, one
thread). RapidOCR reads the whole line with recognition only (its detector splits widely spaced
digits), the image flattened onto white with a 16-px margin, every class but blank and the ten
digits masked before its CTC decoding (a digits-only reading); one onnxruntime thread. Prints
whole-number accuracy and ms per image per set for both, and, for digitseq, the lost-digit
errors read at or above the app's "not sure" line, the calibration error (ECE) and the share
of readings kept at 99.5% accuracy (most confident first). The last stdout line is one JSON
object.

    pip install -e '.[bench]'                       # RapidOCR, only for this benchmark
    .venv/bin/python benchmarks/bench_peers.py --split val --n 1000   # for choosing a reader
    .venv/bin/python benchmarks/bench_peers.py --split test           # for reporting
    .venv/bin/python benchmarks/bench_peers.py --no-peer --model RUN  # digitseq only

Built sets are kept under $DIGITSEQ_HOME/bench/peers (``--cache``) and read back next time.
"""

from __future__ import annotations

import argparse
import functools
import io
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import people_sets
from PIL import Image

MNIST_SETS = ("seed", "natural", "touching", "realistic", "canvas")
ALL_SETS = people_sets.SETS + MNIST_SETS
NOT_SURE = 0.968  # the app's "not sure" line (a reading below it is flagged)


def mnist_set(name: str, split: str, n: int, seed: int) -> list[tuple[bytes, str]]:
    """The MNIST sets, composed from the split's digits (test digits for ``test``)."""
    import bench_canvas
    import bench_realistic

    from digitseq.data import compose, realistic

    data = bench_realistic.mnist_digits(split)
    rng = np.random.default_rng([seed, 201, ALL_SETS.index(name), split == "test"])
    if name == "realistic":
        out = Path(tempfile.mkdtemp(prefix="peers.")) / "set"
        realistic.write_realistic_set(out, n, seed, data, lengths=(1, 12))
        return [((out / f).read_bytes(), label) for f, label, _ in realistic.read_labels(out)]
    if name == "canvas":
        digits, lens, idx = compose.sample_numbers(data.test_labels, n, rng, (1, 8))
        texts = compose.labels_to_strings(digits, lens)
        return [(bench_canvas.draw_number(data.test_images[idx[i, : lens[i]]], rng)[0], t)
                for i, t in enumerate(texts)]  # fmt: skip
    digits, lens, idx = compose.sample_numbers(data.test_labels, n, rng, (1, 12))
    lay = np.full(n, compose.LAYOUT_IDS[name], np.uint8)
    images, widths = compose.compose_lines(data.test_images, idx, lens, lay, rng)
    texts = compose.labels_to_strings(digits, lens)
    return [(bench_realistic.png_bytes(images[i, :, : widths[i]]), t) for i, t in enumerate(texts)]


def build(name: str, split: str, n: int, seed: int, cache: Path | None) -> list[tuple[bytes, str]]:
    """A set's (PNG bytes, label) pairs, read from ``cache`` when it was built there before."""
    folder = cache / f"{split}-n{n}-seed{seed}" / name if cache else None
    if folder is not None and (folder / "labels.csv").is_file():
        return people_sets.load(folder)
    if name in people_sets.SETS:
        pairs = people_sets.build(name, split, n, seed)
    else:
        pairs = mnist_set(name, split, n, seed)
    if folder is not None:
        people_sets.save(pairs, folder)
    return pairs


def on_white(data: bytes, margin: int = 16) -> np.ndarray:
    """PNG bytes -> RGB uint8 with any transparency flattened onto white, cropped to the ink
    (Otsu) with a white ``margin``: the line as RapidOCR's recognizer wants it (it scales the
    whole image to 48 px tall, so blank paper around the number would shrink the digits)."""
    import cv2

    im = Image.open(io.BytesIO(data))
    if im.mode in ("RGBA", "LA", "P"):
        im = im.convert("RGBA")
        bg = Image.new("RGBA", im.size, (255, 255, 255, 255))
        bg.alpha_composite(im)
        im = bg
    rgb = np.asarray(im.convert("RGB"))
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    _, ink = cv2.threshold(grey, 0, 255, cv2.THRESH_BINARY_INV + cv2.THRESH_OTSU)
    rows, cols = np.flatnonzero(ink.any(1)), np.flatnonzero(ink.any(0))
    if rows.size:
        rgb = rgb[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    return np.pad(rgb, ((margin, margin), (margin, margin), (0, 0)), constant_values=255)


@functools.cache
def rapidocr_reader():
    """A function PNG bytes -> digit string (one engine per process): RapidOCR's recognizer on
    the whole line with every class but blank and the digits masked before CTC decoding."""
    from rapidocr import RapidOCR

    engine = RapidOCR(
        params={
            "EngineConfig.onnxruntime.intra_op_num_threads": 1,
            "EngineConfig.onnxruntime.inter_op_num_threads": 1,
        }
    )
    engine(
        on_white(people_sets.png(np.full((32, 64), 255, np.uint8))),
        use_det=False,
        use_cls=False,
        use_rec=True,
    )  # fmt: skip  (loads the recognizer)
    post = engine.text_rec.postprocess_op
    keep = np.array([i == 0 or c in "0123456789" for i, c in enumerate(post.character)])
    original = post.__call__

    class DigitsOnly:
        def __call__(self, preds, *args, **kwargs):
            return original(np.where(keep, preds, 0.0), *args, **kwargs)

        def __getattr__(self, name):
            return getattr(post, name)

    engine.text_rec.postprocess_op = DigitsOnly()

    def read(data: bytes) -> str:
        out = engine(on_white(data), use_det=False, use_cls=False, use_rec=True)
        txts = getattr(out, "txts", None) or ("",)
        return "".join(ch for ch in "".join(t or "" for t in txts) if ch.isdigit())

    return read


def coverage_at(conf: np.ndarray, right: np.ndarray, accuracy: float = 0.995) -> float:
    """The largest share of readings, most confident first, that are still ``accuracy`` right."""
    order = np.argsort(-conf, kind="stable")
    running = np.cumsum(right[order]) / np.arange(1, len(order) + 1)
    ok = np.flatnonzero(running >= accuracy)
    return round(float((ok[-1] + 1) / len(conf)) if ok.size else 0.0, 4)


def default_cache() -> Path:
    from digitseq.core.paths import home

    return home() / "bench" / "peers"


def peer_readings(peer, pairs, args, name: str) -> tuple[list[str], float]:
    """RapidOCR's readings of a set and its ms per image, kept beside a cached set (the peer
    does not change between runs; digitseq's readers do)."""
    path = args.cache / f"{args.split}-n{args.n}-seed{args.seed}" / name / "rapidocr.json"
    if path.is_file():
        kept = json.loads(path.read_text())
        if len(kept["readings"]) == len(pairs):
            return kept["readings"], kept["ms"]
    read = peer()
    t0 = time.perf_counter()
    readings = [read(data) for data, _ in pairs]
    ms = round(1000 * (time.perf_counter() - t0) / len(pairs), 2)
    if args.cache:
        path.write_text(json.dumps({"readings": readings, "ms": ms}))
    return readings, ms


def score(pred: list[str | None], truth: list[str]) -> float:
    return round(100 * float(np.mean([p == t for p, t in zip(pred, truth, strict=True)])), 2)


NAMES = {
    "close": "close-written (MNIST digits, ink gaps -5..25% of the height)",
    "pen": "pen drawings on the app canvas (synthetic trajectories; 1-10 digits)",
    "fonts": "handwriting fonts (12 held-out families)",
    "small": "small writing (digits 8-14 px, some scanned coarsely)",
    "seed": "MNIST strips (`seed`)",
    "natural": "MNIST on a form (`natural`)",
    "touching": "MNIST, touching digits",
    "realistic": "MNIST on photographed paper",
    "canvas": "MNIST redrawn with a thick pen on the canvas (1-8 digits)",
}


def markdown(results: dict) -> str:
    """The README's table: whole-number accuracy of both readers, and their ms per image."""
    rows = ["| 1,000 numbers of 1-12 digits each | digitseq | RapidOCR | ms digitseq / RapidOCR |",
            "|---|---:|---:|---:|"]  # fmt: skip
    for name, r in results.items():
        peer = f"{r['rapidocr']:.1f}%" if "rapidocr" in r else "-"
        ms = f"{r['digitseq_ms']:.0f} / {r['rapidocr_ms']:.0f}" if "rapidocr_ms" in r else "-"
        rows.append(f"| {NAMES.get(name, name)} | {r['digitseq']:.1f}% | {peer} | {ms} |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, help="run or model folder (default: bundled reader)")
    ap.add_argument("--split", choices=["val", "test"], default="test")
    ap.add_argument("--n", type=int, default=1000, help="numbers per set")
    ap.add_argument(
        "--sets", default=",".join(ALL_SETS), help="comma-separated: " + ",".join(ALL_SETS)
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-peer", action="store_true", help="digitseq only (no RapidOCR)")
    ap.add_argument("--cache", type=Path, default=default_cache(),
                    help="keep each built set here and read it back next time (default: "
                         "$DIGITSEQ_HOME/bench/peers)")  # fmt: skip
    args = ap.parse_args(argv)

    from digitseq.evaluation import metrics
    from digitseq.reading.predictor import Predictor

    predictor = Predictor.load(args.model, backend="onnx", threads=1)
    peer = None if args.no_peer else rapidocr_reader  # started when a set needs it
    results = {}
    for name in args.sets.split(","):
        pairs = build(name, args.split, args.n, args.seed, args.cache)
        truth = [t for _, t in pairs]
        t0 = time.perf_counter()
        readings = [predictor.read(data) for data, _ in pairs]
        ours_ms = 1000 * (time.perf_counter() - t0) / len(pairs)
        ours = [r.digits for r in readings]
        wrong = [(r, t) for r, t in zip(readings, truth, strict=True) if r.digits != t]
        lost = [r for r, t in wrong if r.digits is not None and len(r.digits) < len(t)]
        conf = np.array([r.confidence or 0.0 for r in readings])
        right = np.array([r.digits == t for r, t in zip(readings, truth, strict=True)])
        row = {
            "digitseq": score(ours, truth),
            "ece": round(metrics.calibration(conf, right)[0], 4),
            "coverage_at_99.5": coverage_at(conf, right),
            "digitseq_ms": round(ours_ms, 2),
            "errors": len(wrong),
            "lost_digit": len(lost),
            "lost_digit_sure": sum((r.confidence or 0) >= NOT_SURE for r in lost),
            "errors_sure": sum((r.confidence or 0) >= NOT_SURE for r, _ in wrong),
        }
        if peer is not None:
            theirs, row["rapidocr_ms"] = peer_readings(peer, pairs, args, name)
            row["rapidocr"] = score(theirs, truth)
            row["lead"] = round(row["digitseq"] - row["rapidocr"], 2)
        results[name] = row
        print(name, json.dumps(row), flush=True)

    print(f"\nmodel {predictor.info['name']}, {args.n} numbers per set, MNIST {args.split} digits")
    print(f"{'set':12s}{'digitseq %':>11s}{'RapidOCR %':>11s}{'lead':>7s}{'ms ours':>9s}"
          f"{'ms peer':>9s}{'lost':>6s}{'lost>=0.968':>12s}{'ECE':>8s}{'cov@99.5':>9s}"
    )  # fmt: skip
    for name, r in results.items():
        cells = [f"{r['digitseq']:>11.2f}", f"{r.get('rapidocr', float('nan')):>11.2f}",
                 f"{r.get('lead', float('nan')):>7.2f}", f"{r['digitseq_ms']:>9.2f}",
                 f"{r.get('rapidocr_ms', float('nan')):>9.2f}", f"{r['lost_digit']:>6d}",
                 f"{r['lost_digit_sure']:>12d}", f"{r['ece']:>8.4f}",
                 f"{r['coverage_at_99.5']:>9.1%}"]  # fmt: skip
        print(f"{name:12s}" + "".join(cells))
    print("\n" + markdown(results))
    summary = {"benchmark": "peers", "model": predictor.info["name"], "split": args.split,
               "n": args.n, "sets": results}  # fmt: skip
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
