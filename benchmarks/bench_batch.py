"""Reading many files: ``predict --jobs 2`` vs ``--jobs 1``, memory over 100,000 files, and
Ray Data on a local 2-CPU cluster vs ``--jobs 2``.

Images are built from MNIST *test* digits: 28x140 strips (five digits side by side, PNG) and
realistic photos of paper (~1,000 px, JPEG/PNG; ``digitseq.data.realistic``). Throughput is
measured in this process through the same engine ``predict`` uses (the bundled model, its
default backend; with --jobs 2 the pool start-up and the workers' model loading are
included). Memory: ``digitseq predict --output`` as a subprocess over ``--files`` files (hard
links to the strips), the whole process tree (main + workers) sampled every 0.25 s: the sum of
RSS (counts shared library pages once per process) and of PSS (shares them out: the tree's real
footprint). Last stdout line: one JSON object.

    .venv/bin/python benchmarks/bench_batch.py                    # the full run (~15 min)
    .venv/bin/python benchmarks/bench_batch.py --quick            # smaller counts
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]


def make_strips(folder: Path, n: int, data, seed: int = 0) -> None:
    from digitseq.data import compose

    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(data.test_images), size=(n, 5))
    images = compose.compose_seed(data.test_images[idx])  # (n, 28, 140)
    for i, img in enumerate(images):
        Image.fromarray(img).save(folder / f"{i:06d}.png")


def cpu_seconds() -> float:
    """User + system CPU time of this process and its finished children."""
    me, kids = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def throughput(folder: Path, jobs: int) -> tuple[float, float]:
    """(images/s, images per CPU-second) of the local engine over every file of ``folder``
    (bundled model, default backend; --jobs 1 reuses this process's loaded reader). The second
    figure does not depend on what else runs on the machine: a pool that wastes nothing reads
    as many images per CPU-second as one process."""
    from digitseq.apps.batch.inputs import iter_items
    from digitseq.apps.batch.local import read_all
    from digitseq.apps.batch.work import ReaderSpec

    t, c = time.perf_counter(), cpu_seconds()
    n = sum(1 for r in read_all(iter_items([folder]), ReaderSpec(), jobs) if r.error is None)
    return n / (time.perf_counter() - t), n / (cpu_seconds() - c)


def ray_throughput(folder: Path) -> float:
    from digitseq.apps.batch import ray_engine

    t = time.perf_counter()
    rows = ray_engine.read([str(folder)], None, "onnx", False, None, False, 256)
    n = sum(1 for r in rows if r["error"] is None)
    return n / (time.perf_counter() - t)


def tree_memory(pid: int) -> tuple[int, int]:
    """(sum of RSS, sum of PSS) of a process and its descendants, bytes."""
    import psutil

    try:
        me = psutil.Process(pid)
        procs = [me, *me.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0, 0
    rss = pss = 0
    for p in procs:
        try:
            m = p.memory_full_info()
            rss, pss = rss + m.rss, pss + m.pss
        except psutil.Error:
            pass
    return rss, pss


def lines(path: Path) -> int:
    with open(path, "rb") as f:
        return sum(block.count(b"\n") for block in iter(lambda: f.read(1 << 20), b""))


def memory_run(work: Path, strips: Path, n_files: int) -> dict:
    """RSS of ``digitseq predict --jobs 2 --output`` after n/10 and n files."""
    many = work / "many"
    many.mkdir()
    sources = sorted(strips.iterdir())
    for i in range(n_files):
        os.link(sources[i % len(sources)], many / f"{i:07d}.png")
    out = work / "many.jsonl"
    cmd = [sys.executable, "-m", "digitseq", "-q", "predict", "--jobs", "2", "--output", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    t = time.perf_counter()
    proc = subprocess.Popen([*cmd, str(many)], env=env)
    peak, at_tenth = (0, 0), None
    while proc.poll() is None:
        now = tree_memory(proc.pid)
        peak = (max(peak[0], now[0]), max(peak[1], now[1]))
        if at_tenth is None and out.exists() and lines(out) >= n_files // 10:
            at_tenth = now
        time.sleep(0.25)
    seconds = time.perf_counter() - t
    written = lines(out)
    return {
        "files": n_files,
        "lines_written": written,
        "exit": proc.returncode,
        "seconds": round(seconds, 1),
        "images_per_s": round(written / seconds, 1),
        "rss_mb_after_tenth": round((at_tenth or (0, 0))[0] / 2**20),
        "pss_mb_after_tenth": round((at_tenth or (0, 0))[1] / 2**20),
        "rss_mb_peak": round(peak[0] / 2**20),
        "pss_mb_peak": round(peak[1] / 2**20),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--strips", type=int, default=4000)
    ap.add_argument("--photos", type=int, default=400)
    ap.add_argument("--files", type=int, default=100_000, help="files for the memory run")
    ap.add_argument("--quick", action="store_true", help="1,000 strips, 100 photos, 10k files")
    ap.add_argument("--no-ray", action="store_true")
    args = ap.parse_args()
    if args.quick:
        args.strips, args.photos, args.files = 1000, 100, 10_000
    os.environ.setdefault("OMP_NUM_THREADS", "1")

    from digitseq.data import mnist, realistic
    from digitseq.reading.predictor import Predictor

    data = mnist.load()
    predictor = Predictor.load()  # bundled model, default backend (for its name only)
    result = {
        "benchmark": "batch",
        "load_average_at_start": round(os.getloadavg()[0], 1),
        "cores": os.cpu_count(),
        "backend": predictor.backend.name,
        "model_kind": getattr(predictor, "kind", "fixed"),
    }
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        kinds = {"strips": work / "strips", "photos": work / "photos"}
        make_strips(kinds["strips"], args.strips, data)
        realistic.write_realistic_set(kinds["photos"], args.photos, seed=1, data=data)
        (kinds["photos"] / "labels.csv").unlink()
        for kind, folder in kinds.items():
            throughput(folder, 1)  # warm: page cache, this process's reader
            # best of two: the cores are shared, and a neighbour's burst is noise
            one = max(throughput(folder, 1), throughput(folder, 1))
            two = max(throughput(folder, 2), throughput(folder, 2))
            result[kind] = {
                "images": len(list(folder.iterdir())),
                "jobs1_images_per_s": round(one[0], 1),
                "jobs2_images_per_s": round(two[0], 1),
                "jobs2_per_core": round(two[0] / 2, 1),
                "speedup": round(two[0] / one[0], 2),
                "jobs1_images_per_cpu_s": round(one[1], 1),
                "jobs2_images_per_cpu_s": round(two[1], 1),
                "cpu_efficiency_jobs2": round(two[1] / one[1], 2),
            }
            print(kind, result[kind], flush=True)
        if not args.no_ray:
            import ray

            ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
            try:
                for kind, folder in kinds.items():
                    ray_throughput(folder)  # warm: worker processes, imports
                    r = max(ray_throughput(folder), ray_throughput(folder))
                    result[kind]["ray_images_per_s"] = round(r, 1)
                    result[kind]["ray_vs_jobs2"] = round(r / result[kind]["jobs2_images_per_s"], 2)
                    print(kind, "ray", result[kind]["ray_images_per_s"], flush=True)
            finally:
                ray.shutdown()
        result["memory"] = memory_run(work, kinds["strips"], args.files)
        print("memory", result["memory"], flush=True)
    result["load_average_at_end"] = round(os.getloadavg()[0], 1)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
