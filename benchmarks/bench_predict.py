"""Latency and throughput of reading numbers, torch vs onnxruntime, side by side.

Single image: median and p95 over --repeats calls, (a) end to end from a file on disk to the
digits (decode + preprocess + model) for a seed-format PNG and for a realistic photo-like JPEG,
(b) the model alone on a ready 28x140 input (decoding included for line readers).
Batch: images/s for --batch inputs, model alone and end to end from files. One thread each
(as the tests). Last stdout line: one JSON object. Targets (issue 10): a 28x140 PNG file ->
digits <= 5 ms, a photo-like JPEG <= 10 ms (onnxruntime).

    .venv/bin/python benchmarks/bench_predict.py                  # bundled model
    .venv/bin/python benchmarks/bench_predict.py --model RUN_DIR --repeats 100
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def timings(fn, repeats: int, warmup: int = 5) -> dict:
    for _ in range(warmup):
        fn()
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    ms = np.array(ts) * 1000
    return {
        "median_ms": round(float(np.median(ms)), 3),
        "p95_ms": round(float(np.percentile(ms, 95)), 3),
    }


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, help="run folder or weights (default: bundled model)")
    ap.add_argument("--repeats", type=int, default=200)
    ap.add_argument("--batch", type=int, default=256)
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(1)
    from PIL import Image

    from digitseq.data import mnist, realistic
    from digitseq.models import onnx_export
    from digitseq.models.checkpoint import load_model
    from digitseq.reading.predictor import Predictor

    tmp = Path(tempfile.mkdtemp(prefix="bench_predict."))
    model, _ = load_model(args.model)
    onnx_file = tmp / "model.onnx"
    onnx_file.write_bytes(onnx_export.onnx_bytes(model))
    predictors = {
        "torch": Predictor.load(args.model, backend="torch"),
        "onnx": Predictor.load(onnx_file, backend="onnx"),
    }

    seed_png = REPO / "examples" / "seed-samples" / "5.png"
    photos = realistic.write_realistic_set(tmp / "realistic", n=args.batch, seed=1)
    photo_files = sorted(photos.glob("*.jpg")) + sorted(photos.glob("*.png"))
    data = mnist.load()
    from digitseq.data import compose

    rng = np.random.default_rng(0)
    imgs, *_ = compose.generate_fixed(data.test_images, data.test_labels, args.batch, rng)
    pngs = []
    for i, img in enumerate(imgs):
        pngs.append(tmp / f"seed{i:04d}.png")
        Image.fromarray(img).save(pngs[-1])
    x1 = np.asarray(Image.open(seed_png), np.float32)[None] / 255.0
    xb = imgs.astype(np.float32) / 255.0

    results: dict = {}
    for name, p in predictors.items():
        r = {
            "single_file_to_digits_seed_png": timings(lambda p=p: p.read(seed_png), args.repeats),
            "single_file_to_digits_photo_jpg": timings(
                lambda p=p: p.read(photo_files[0]), max(20, args.repeats // 4)
            ),
            "single_model_only": timings(lambda p=p: p.outputs([x1[0]]), args.repeats),
        }
        t = time.perf_counter()
        p.outputs(list(xb), batch_size=args.batch)
        r["batch_model_only_img_per_s"] = round(args.batch / (time.perf_counter() - t), 1)
        t = time.perf_counter()
        p.predict(pngs, batch_size=args.batch)
        r["batch_files_seed_png_img_per_s"] = round(args.batch / (time.perf_counter() - t), 1)
        t = time.perf_counter()
        p.predict(photo_files, batch_size=args.batch)
        r["batch_files_photo_img_per_s"] = round(len(photo_files) / (time.perf_counter() - t), 1)
        results[name] = r

    print(f"{'':36s}{'torch':>14s}{'onnxruntime':>14s}")
    for key in results["torch"]:
        a, b = results["torch"][key], results["onnx"][key]
        if isinstance(a, dict):
            cell = [f"{v['median_ms']:.2f}/{v['p95_ms']:.2f} ms" for v in (a, b)]
        else:
            cell = [f"{v:.0f} img/s" for v in (a, b)]
        print(f"{key:36s}{cell[0]:>14s}{cell[1]:>14s}")
    print("(single: median/p95 over repeats; one thread)")
    summary = {
        "benchmark": "predict",
        "model": predictors["torch"].info["name"],
        "threads": 1,
        "batch": args.batch,
        "machine": platform.processor() or platform.machine(),
        **results,
        "target_onnx_png_file_to_digits_under_5ms": results["onnx"][
            "single_file_to_digits_seed_png"
        ]["median_ms"]
        <= 5,
        "target_onnx_photo_jpg_to_digits_under_10ms": results["onnx"][
            "single_file_to_digits_photo_jpg"
        ]["median_ms"]
        <= 10,
    }
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
