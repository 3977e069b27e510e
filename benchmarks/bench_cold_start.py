"""Cold start of ``digitseq predict one.png`` (a new process, bundled model, default onnx backend)
and the install that reading needs: ``pip install digitseq`` without extras, torch absent.

Figures, each the median of --runs whole-process runs after one warm-up:
- ``onnx``: the bundled model's ``model.onnx`` (what ``digitseq predict`` does by default);
  ``onnx_one_job`` the same with ``-j 1`` (no pool of preprocessing processes to start);
- ``weights_only``: the same model without ``model.onnx`` (torch loads the weights and the
  cached ONNX export runs them): how every reading started before the model shipped its
  ``model.onnx``;
- ``reading_only_venv``: a fresh venv holding ``pip install -c constraints.txt REPO`` (no extras),
  its size on disk and install time, ``predict`` in it, and the check that torch is absent.
Last stdout line: one JSON object.

    .venv/bin/python benchmarks/bench_cold_start.py
    .venv/bin/python benchmarks/bench_cold_start.py --runs 20 --no-venv
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
IMAGE = REPO / "examples" / "seed-samples" / "101.png"
EXPECTED = "49512"
TARGET_S = 0.6


def model_folder(tmp: Path) -> Path:
    """The bundled model folder with its model.onnx (exported here when it does not ship one)."""
    from digitseq.core.paths import bundled_model_dir

    bundled = bundled_model_dir()
    if (bundled / "model.onnx").is_file():
        return bundled
    from digitseq.models.onnx_export import export_onnx

    folder = tmp / "models" / bundled.name
    shutil.copytree(bundled, folder, ignore=shutil.ignore_patterns("*.pth"))
    export_onnx(bundled, folder / "model.onnx")
    print(f"(the bundled model has no model.onnx: exported one to {folder})", file=sys.stderr)
    return folder


def weights_only(folder: Path, tmp: Path) -> Path:
    from digitseq.core.paths import bundled_model_dir

    out = tmp / "weights-only" / folder.name
    shutil.copytree(bundled_model_dir(), out, ignore=shutil.ignore_patterns("*.onnx", "*.onnx.*"))
    return out


def time_runs(cmd: list[str], env: dict, runs: int) -> dict:
    """Wall and CPU seconds of ``cmd`` as a whole process: median, min, max over ``runs``."""

    def once() -> tuple[float, float]:
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t = time.perf_counter()
        done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
        wall = time.perf_counter() - t
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if done.returncode != 0 or EXPECTED not in done.stdout:
            raise SystemExit(f"{' '.join(cmd)} failed: {done.stdout}{done.stderr[-2000:]}")
        return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)

    once()  # warm-up: file cache, the ONNX export cache of the weights-only case
    walls, cpus = zip(*(once() for _ in range(runs)), strict=True)
    return {
        "wall_s_median": round(statistics.median(walls), 3),
        "wall_s_min": round(min(walls), 3),
        "wall_s_max": round(max(walls), 3),
        "cpu_s_median": round(statistics.median(cpus), 3),
    }


def du_mb(path: Path) -> float:
    total = sum(f.lstat().st_size for f in path.rglob("*") if f.is_file() or f.is_symlink())
    return round(total / 2**20, 1)


def reading_only_venv(tmp: Path, env: dict, runs: int) -> dict:
    """``pip install digitseq`` (no extras) into a fresh venv; its size; predict in it."""
    venv = tmp / "venv"
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q"]
    subprocess.run([*pip, "-c", str(REPO / "constraints.txt"), str(REPO)], check=True)
    install_s = time.perf_counter() - t
    py = str(venv / "bin" / "python")
    listed = subprocess.run(
        [py, "-m", "pip", "list", "--format", "json"], capture_output=True, text=True, check=True
    )
    packages = sorted(p["name"] for p in json.loads(listed.stdout))
    torch = subprocess.run([py, "-c", "import torch"], capture_output=True)
    train = subprocess.run(
        [str(venv / "bin" / "digitseq"), "train", "--preset", "tiny"],
        capture_output=True,
        text=True,
        env=env,
    )
    return {
        "install_s": round(install_s, 1),
        "size_mb": du_mb(venv),
        "site_packages_mb": du_mb(next((venv / "lib").glob("python3*/site-packages"))),
        "packages": packages,
        "torch_importable": torch.returncode == 0,
        "train_error": train.stderr.strip(),
        "predict": time_runs([str(venv / "bin" / "digitseq"), "predict", str(IMAGE)], env, runs),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--no-venv", action="store_true", help="skip the reading-only venv")
    args = parser.parse_args()
    digitseq = str(Path(sys.executable).with_name("digitseq"))
    with tempfile.TemporaryDirectory(prefix="bench-cold-") as tmp_name:
        tmp = Path(tmp_name)
        folder = model_folder(tmp)
        env = {
            **os.environ,
            "DIGITSEQ_MODELS_DIR": str(folder.parent),
            "DIGITSEQ_HOME": str(tmp / "home"),
            "OMP_NUM_THREADS": "1",
        }
        result = {
            "benchmark": "cold_start",
            "command": "digitseq predict one.png",
            "runs": args.runs,
            "cpus": len(os.sched_getaffinity(0)),
            "target_s": TARGET_S,
            "onnx": time_runs([digitseq, "predict", str(IMAGE)], env, args.runs),
        }
        # one process: no pool of --jobs workers to start for a single image
        result["onnx_one_job"] = time_runs(
            [digitseq, "predict", "-j", "1", str(IMAGE)], env, args.runs
        )
        wo = weights_only(folder, tmp)
        result["weights_only"] = time_runs(
            [digitseq, "predict", "--model", str(wo), str(IMAGE)], env, args.runs
        )
        if not args.no_venv:
            result["reading_only_venv"] = reading_only_venv(tmp, env, args.runs)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
