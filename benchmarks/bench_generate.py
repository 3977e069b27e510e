"""Generation throughput: sequences/s to memory for the seed and natural layouts, side by side
with a naive per-sample Python loop measured in the same run, and to disk with
``generate_dataset``. The last stdout line is one JSON object with every figure.

    python benchmarks/bench_generate.py            # ~1 minute
    python benchmarks/bench_generate.py --quick    # a few seconds (smoke test)
    python benchmarks/bench_generate.py --rss      # also: peak RAM of a 1,000,000-sequence run

Targets (2-core machine): seed >= 200,000 seq/s and >= 100x the naive loop; natural >= 20,000.
Two naive loops are timed: a sensible one (per-class index lists; the headline ratio) and the
textbook one that searches the labels with np.where for every digit.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from digitseq.data import compose, mnist, storage

TARGETS = {"seed_seq_per_s": 200_000, "seed_vs_naive": 100, "natural_seq_per_s": 20_000}


def timed(fn, reps: int) -> tuple[float, float]:
    """(best, median) seconds of ``reps`` calls after one warm-up call."""
    fn()
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times), statistics.median(times)


def naive_loop(images: np.ndarray, by_class: list[np.ndarray], n: int, rng) -> np.ndarray:
    """The per-sample way, done sensibly: pick 5 digits, an image of each from precomputed
    per-class index lists, np.hstack. The same sampling as compose.generate_fixed."""
    out = []
    for _ in range(n):
        digits = rng.integers(0, 10, size=5)
        picks = [by_class[d][rng.integers(len(by_class[d]))] for d in digits]
        out.append(np.hstack([images[i] for i in picks]))
    return np.stack(out)


def naive_where_loop(images: np.ndarray, labels: np.ndarray, n: int, rng) -> np.ndarray:
    """The textbook per-sample way: search the labels for each digit (np.where), then hstack."""
    out = []
    for _ in range(n):
        digits = rng.integers(0, 10, size=5)
        out.append(np.hstack([images[rng.choice(np.where(labels == d)[0])] for d in digits]))
    return np.stack(out)


def throughput(n: int, best: float, median: float) -> dict:
    return {"n": n, "best_seq_per_s": round(n / best), "median_seq_per_s": round(n / median)}


def bench_memory(images, labels, sizes: dict[str, int], reps: int) -> dict:
    """Each figure: ``sizes[name]`` sequences per timed rep, made in calls of ``storage.CHUNK``
    (how generate_dataset and the training loop call compose.generate_fixed)."""
    import torch

    index = compose.class_index(labels)
    rng = np.random.default_rng(0)
    results = {}
    threads = torch.get_num_threads()

    def run(layout, n):
        for start in range(0, n, storage.CHUNK):
            k = min(storage.CHUNK, n - start)
            compose.generate_fixed(images, labels, k, rng, layout=layout, index=index)

    results["seed"] = throughput(sizes["seed"], *timed(lambda: run("seed", sizes["seed"]), reps))
    # The natural warp runs in torch: with other processes on the cores, torch's intra-op
    # threads can collapse (see ENVIRONMENT.md), so time it with 1 thread and with the default.
    for t in sorted({1, threads}):
        torch.set_num_threads(t)
        n = sizes["natural"]
        results[f"natural_{t}thread"] = throughput(n, *timed(lambda n=n: run("natural", n), reps))
    torch.set_num_threads(threads)
    best = max((k for k in results if k.startswith("natural_")),
               key=lambda k: results[k]["best_seq_per_s"])  # fmt: skip
    results["natural"] = {**results[best], "config": best}
    by_class = [np.flatnonzero(labels == d) for d in range(10)]
    n = sizes["naive"]
    results["naive"] = throughput(n, *timed(lambda: naive_loop(images, by_class, n, rng), reps))
    n = sizes["naive_where"]
    results["naive_where"] = throughput(
        n, *timed(lambda: naive_where_loop(images, labels, n, rng), max(1, reps // 2))
    )
    return results


def bench_disk(sizes: dict[str, int], root: Path) -> dict:
    results = {}
    for layout in ("seed", "mixed"):
        n = sizes[f"disk_{layout}"]
        cfg = storage.GenerateConfig(layout=layout, counts={"train": n, "val": 0, "test": 0})
        out = root / layout
        start = time.perf_counter()
        storage.generate_dataset(out, cfg, progress=False)
        seconds = time.perf_counter() - start
        results[layout] = {"n": n, "seq_per_s": round(n / seconds), "seconds": round(seconds, 2)}
        shutil.rmtree(out)
    return results


RSS_CHILD = """
import resource, sys, time
from digitseq.data import storage
cfg = storage.GenerateConfig(layout="mixed", counts={"train": 1_000_000, "val": 0, "test": 0})
start = time.perf_counter()
storage.generate_dataset(sys.argv[1], cfg, progress=False)
print(time.perf_counter() - start)
"""


def bench_rss(root: Path) -> dict:
    """Peak resident memory of generating 1,000,000 mixed sequences to disk, in a child."""
    out = root / "rss"
    proc = subprocess.run(
        [sys.executable, "-c", RSS_CHILD, str(out)], capture_output=True, text=True, check=True
    )
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # KiB on Linux
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    shutil.rmtree(out)
    return {
        "n": 1_000_000,
        "layout": "mixed",
        "peak_rss_mib": round(peak_kib / 1024),
        "seconds": round(float(proc.stdout.strip().splitlines()[-1]), 1),
        "dataset_gib": round(size / 2**30, 2),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke test")
    parser.add_argument("--reps", type=int, default=None, help="timed repetitions per figure")
    parser.add_argument("--rss", action="store_true", help="measure 1,000,000 sequences' RAM")
    parser.add_argument("--tmp", type=Path, help="scratch folder for the disk runs")
    args = parser.parse_args(argv)

    if args.quick:
        sizes = dict(seed=16_384, natural=2_048, naive=500, naive_where=50)
        sizes.update(disk_seed=20_000, disk_mixed=5_000)
    else:
        sizes = dict(seed=98_304, natural=16_384, naive=5_000, naive_where=500)
        sizes.update(disk_seed=200_000, disk_mixed=100_000)
    reps = args.reps or (2 if args.quick else 5)

    import torch  # the natural layout warps with torch; say how many threads it had

    data = mnist.load(progress=True)
    images, labels, _ = mnist.split_pool(data, "train")
    print(f"MNIST train pool: {len(images):,} digits; torch threads {torch.get_num_threads()}")

    memory = bench_memory(images, labels, sizes, reps)
    seed, natural, naive = memory["seed"], memory["natural"], memory["naive"]
    ratio = seed["best_seq_per_s"] / naive["best_seq_per_s"]
    ratio_where = seed["best_seq_per_s"] / memory["naive_where"]["best_seq_per_s"]
    print(f"{'to memory':<12}{'best seq/s':>14}{'median seq/s':>16}{'n':>10}")
    for name, r in memory.items():
        print(f"{name:<12}{r['best_seq_per_s']:>14,}{r['median_seq_per_s']:>16,}{r['n']:>10,}")
    nat_ratio = natural["best_seq_per_s"] / naive["best_seq_per_s"]
    print(f"seed / naive loop: {ratio:,.1f}x;  seed / naive np.where loop: {ratio_where:,.0f}x;  "
          f"natural / naive loop: {nat_ratio:,.2f}x")  # fmt: skip

    scratch = Path(tempfile.mkdtemp(prefix="digitseq-bench-", dir=args.tmp))
    try:
        disk = bench_disk(sizes, scratch)
        for name, r in disk.items():
            print(
                f"to disk, {name:<6} {r['seq_per_s']:>10,} seq/s  ({r['n']:,} in {r['seconds']} s)"
            )
        rss = bench_rss(scratch) if args.rss else None
        if rss:
            print(f"1,000,000 mixed to disk: peak RSS {rss['peak_rss_mib']:,} MiB, "
                  f"{rss['seconds']} s, {rss['dataset_gib']} GiB on disk")  # fmt: skip
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    figures = {
        "seed_seq_per_s": seed["best_seq_per_s"],
        "natural_seq_per_s": natural["best_seq_per_s"],
        "seed_vs_naive": round(ratio, 1),
        "seed_vs_naive_where": round(ratio_where, 1),
    }
    met = {k: bool(figures[k] >= v) for k, v in TARGETS.items()}
    print("targets: " + ", ".join(f"{k} >= {v:,} {'ok' if met[k] else 'MISSED'}"
                                  for k, v in TARGETS.items()))  # fmt: skip
    result = {
        "benchmark": "generate",
        **figures,
        "naive_seq_per_s": naive["best_seq_per_s"],
        "naive_where_seq_per_s": memory["naive_where"]["best_seq_per_s"],
        "memory": memory,
        "disk": disk,
        "rss_1m": rss,
        "targets": TARGETS,
        "targets_met": met,
        "reps": reps,
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "load_avg_1m": round(os.getloadavg()[0], 2),
        "python": platform.python_version(),
        "numpy": np.__version__,
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
