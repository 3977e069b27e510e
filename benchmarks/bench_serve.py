"""Load benchmark of ``digitseq serve`` on loopback.

Starts the server in a subprocess on 127.0.0.1, posts real test images (5-digit numbers composed
from MNIST *test* digits, as PNG bytes, one image per request) from a bounded asyncio httpx
client, and measures requests/s, p50/p99 latency and the error rate at concurrency 1, 8 and 32;
the server's resident memory after 100 requests and after --memory-requests (default 10,000);
and the throughput at concurrency 32 with batching off (max batch 1) for the batched/unbatched
ratio. The last stdout line is one JSON object.

    .venv/bin/python benchmarks/bench_serve.py                  # full run (a few minutes)
    .venv/bin/python benchmarks/bench_serve.py --requests 200 --memory-requests 1000   # quick
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import io
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from procs import Server, rss_mb

from digitseq.core import files


def test_images(n: int, seed: int = 0) -> tuple[list[bytes], list[str]]:
    """n PNGs of numbers built from MNIST test digits (mixed layouts) and their labels."""
    from PIL import Image

    from digitseq.data import compose, mnist

    images, labels, _ = mnist.split_pool(mnist.load(), "test")
    imgs, digits, _, _ = compose.generate_fixed(images, labels, n, np.random.default_rng(seed))
    pngs = []
    for img in imgs:
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, format="PNG")
        pngs.append(buf.getvalue())
    return pngs, ["".join(map(str, d)) for d in digits]


def untrained_model(folder: Path) -> Path:
    import torch

    from digitseq.models import checkpoint, registry

    torch.manual_seed(0)
    checkpoint.save_weights(registry.build_model("multihead"), folder / "weights.pth")
    config = {"model": checkpoint.model_config("multihead", {})}
    files.write_json(folder / "config.json", config)
    return folder


async def load(
    url: str, pngs: list[bytes], labels: list[str], n: int, concurrency: int, start: int = 0
) -> dict:
    """n requests (one image each) by ``concurrency`` clients; latency per request."""
    import httpx

    latencies, errors, correct = [], 0, 0
    counter = iter(range(start, start + n))

    async def client(http: httpx.AsyncClient):
        nonlocal errors, correct
        for i in counter:
            k = i % len(pngs)
            t0 = time.perf_counter()
            try:
                r = await http.post("/v1/read", files={"files": (f"{k}.png", pngs[k], "image/png")})
                ok = r.status_code == 200 and r.json()["results"][0]["error"] is None
                correct += ok and r.json()["results"][0]["digits"] == labels[k]
            except httpx.HTTPError:
                ok = False
            latencies.append(time.perf_counter() - t0)
            errors += not ok

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30) as http:
        t0 = time.perf_counter()
        await asyncio.gather(*(client(http) for _ in range(concurrency)))
        wall = time.perf_counter() - t0
    lat = np.array(latencies) * 1000
    return {
        "concurrency": concurrency,
        "requests": n,
        "requests_per_s": round(n / wall, 1),
        "p50_ms": round(float(np.percentile(lat, 50)), 2),
        "p99_ms": round(float(np.percentile(lat, 99)), 2),
        "error_rate": round(errors / n, 4),
        "accuracy": round(correct / n, 4),
    }


async def health(url: str) -> dict:
    import httpx

    async with httpx.AsyncClient(base_url=url) as http:
        return (await http.get("/healthz")).json()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--requests", type=int, default=2000, help="requests per concurrency level")
    ap.add_argument(
        "--memory-requests",
        type=int,
        default=10_000,
        help="total requests before the second memory reading",
    )
    ap.add_argument("--images", type=int, default=300, help="distinct test images")
    ap.add_argument("--model", type=Path, help="default: the bundled model (else an untrained one)")
    ap.add_argument("--concurrency", default="1,8,32")
    args = ap.parse_args(argv)

    from digitseq.core.paths import bundled_model_dir

    tmp = Path(tempfile.mkdtemp(prefix="bench-serve-"))
    model, model_note = args.model, "given"
    if model is None:
        model, model_note = bundled_model_dir(), "bundled"
        if not (model / "config.json").is_file():
            model, model_note = untrained_model(tmp), "untrained (bundled model missing)"
    pngs, labels = test_images(args.images)
    levels = [int(c) for c in args.concurrency.split(",")]
    fast = all(importlib.util.find_spec(m) for m in ("httptools", "uvloop"))
    out = {
        "bench": "serve",
        "model": model_note,
        "http": "uvicorn httptools+uvloop" if fast else "uvicorn h11+asyncio",
        "load_average_at_start": os.getloadavg()[0],
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "images": len(pngs),
    }

    server = Server(
        tmp / "server-batched.log", ["--model", str(model)], {"DIGITSEQ_SERVE_MAX_BATCH": "64"}
    )
    try:
        # warm-up at the top concurrency (every batch size seen), also the first 100
        asyncio.run(load(server.url, pngs, labels, 100, max(levels)))
        rss = {100: round(rss_mb(server.proc.pid), 1)}
        done = 100
        out["batched"] = []
        for c in levels:
            res = asyncio.run(load(server.url, pngs, labels, args.requests, c, done))
            done += args.requests
            rss[done] = round(rss_mb(server.proc.pid), 1)
            out["batched"].append(res)
            print(json.dumps(res), flush=True)
        if done < args.memory_requests:
            asyncio.run(load(server.url, pngs, labels, args.memory_requests - done, 32, done))
            done = args.memory_requests
            rss[done] = round(rss_mb(server.proc.pid), 1)
        out["rss_mb_by_requests"] = rss
        out["rss_growth_mb"] = round(rss[done] - rss[100], 1)
        out["batching_stats"] = asyncio.run(health(server.url))["batching"]
    finally:
        server.stop()

    server = Server(
        tmp / "server-unbatched.log", ["--model", str(model)], {"DIGITSEQ_SERVE_MAX_BATCH": "1"}
    )
    try:
        top = max(levels)
        asyncio.run(load(server.url, pngs, labels, 100, top))
        res = asyncio.run(load(server.url, pngs, labels, args.requests, top))
        out["unbatched"] = res
        print(json.dumps({"unbatched": res}), flush=True)
    finally:
        server.stop()
    batched_top = next(r for r in out["batched"] if r["concurrency"] == top)
    out[f"batched_over_unbatched_at_{top}"] = round(
        batched_top["requests_per_s"] / res["requests_per_s"], 2
    )
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
