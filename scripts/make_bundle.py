"""Package a trained run as the bundled model (models/<name>/): calibrate the temperature on
val, store fp16 weights (<= 5 MB), evaluate on 10,000 test numbers per layout (MNIST test
digits only) and write the model card.

    .venv/bin/python scripts/make_bundle.py RUN [--name digitseq-multihead]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from digitseq.core import files
from digitseq.core.paths import bundled_models_dir, home
from digitseq.data import mnist, storage
from digitseq.models import checkpoint
from digitseq.training import calibration

LAYOUTS = ("seed", "natural")


def test_split(layout: str) -> storage.Split:
    """10,000 test numbers of one layout (seed 0), generated once under DIGITSEQ_HOME."""
    folder = home() / "datasets" / f"test-{layout}"
    if not (folder / "manifest.json").is_file():
        cfg = storage.GenerateConfig(layout=layout, counts={"test": 10_000}, seed=0)
        storage.generate_dataset(folder, cfg, overwrite=True, progress=False)
    return storage.load_split(folder, "test", verify_checksums=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("run", type=Path)
    ap.add_argument("--name", default="digitseq-multihead")
    ap.add_argument("--hardware", default="1x NVIDIA H100 80GB (lent GPU machine)")
    args = ap.parse_args()
    torch.set_num_threads(2)

    src = json.loads((args.run / "config.json").read_text())
    out = bundled_models_dir() / args.name
    out.mkdir(parents=True, exist_ok=True)
    model, _ = checkpoint.load_model(args.run / "best.pth")
    model = checkpoint.unwrap(model)
    checkpoint.save_weights(model, out / "weights.pth", half=True)

    # the shipped (fp16) weights are what gets calibrated and measured
    cfg = {k: src[k] for k in ("model", "train", "parameters", "torch")}
    files.write_json(out / "config.json", cfg)
    m = mnist.load()
    vpool, vlab, _ = mnist.split_pool(m, "val")
    from digitseq.data import loaders

    vimg, vy, _ = loaders.fixed_set(vpool, vlab, 10_000, cfg["train"]["seed"], "mixed")
    cal = calibration.calibrate_run_weights(out / "weights.pth", out / "config.json", vimg, vy)
    print("calibration", cal)

    history = json.loads((args.run / "history.json").read_text())
    best = max(history, key=lambda r: r["val_seq_acc"])
    loaded, lcfg = checkpoint.load_model(out)
    metrics = {}
    for layout in LAYOUTS:
        t0 = time.perf_counter()
        ev = metrics.evaluate(loaded, lcfg, test_split(layout))
        o = ev.metrics["overall"]
        metrics[layout] = {k: round(float(o[k]), 5) for k in ("seq_acc", "digit_acc", "cer", "ece")}
        metrics[layout]["n"] = int(o["n"])
        print(layout, metrics[layout], f"{time.perf_counter() - t0:.0f}s")
    cfg = json.loads((out / "config.json").read_text())
    cfg["test_metrics"] = metrics
    cfg["model_card"] = {
        "trained_with": "digitseq train --preset bundle --device cuda --workers 12",
        "hardware": args.hardware,
        "training_seconds": round(sum(r["seconds"] for r in history)),
        "epochs": len(history),
        "sequences_seen": len(history)
        * cfg["train"]["steps_per_epoch"]
        * cfg["train"]["batch_size"],
        "best_epoch": best["epoch"],
        "val_seq_acc": round(best["val_seq_acc"], 5),
        "val_digit_acc": round(best["val_digit_acc"], 5),
        "weights": "fp16 state_dict (loaded as fp32)",
    }
    files.write_json(out / "config.json", cfg)
    files.write_json(out / "history.json", history)
    write_card(out, cfg, metrics)
    print(f"bundled model written to {out}")


def pct(x: float) -> str:
    return f"{100 * x:.2f}%"


def write_card(out: Path, cfg: dict, metrics: dict) -> None:
    card, hp, tr = cfg["model_card"], cfg["model"]["hparams"], cfg["train"]
    rows = "\n".join(
        f"| {lay} | {m['n']:,} | {pct(m['seq_acc'])} | {pct(m['digit_acc'])} | {pct(m['cer'])} "
        f"| {m['ece']:.4f} |"
        for lay, m in metrics.items()
    )
    text = f"""# {out.name}: the bundled digitseq model

The `multihead` reader (one conv trunk over the whole 28x140 image, five 10-way heads) that
`digitseq` commands use when no `--model` is given.

| | |
|---|---|
| architecture | `multihead` {json.dumps(hp)} ({cfg["parameters"]:,} parameters) |
| command | `{card["trained_with"]}` |
| data | fresh numbers generated on the fly from MNIST training digits 0-49,999, layouts mixed half `seed` / half `natural`, batch augmentation {json.dumps(tr["augment"])} |
| model selection | best of {card["epochs"]} epochs on `val` (10,000 numbers from MNIST digits 50,000-59,999): epoch {card["best_epoch"]}, whole-number {pct(card["val_seq_acc"])}, per digit {pct(card["val_digit_acc"])} |
| training | {card["sequences_seen"]:,} numbers in {card["training_seconds"]} s on {card["hardware"]}, bf16 autocast, AdamW lr {tr["lr"]} with warm-up + cosine, label smoothing {tr["label_smoothing"]}, EMA {tr["ema_decay"]} |
| calibration | temperature {cfg["calibration"]["temperature"]} fitted on `val` (NLL {cfg["calibration"]["val_nll_before"]:.4f} -> {cfg["calibration"]["val_nll_after"]:.4f}) |
| weights | `weights.pth`: {card["weights"]}; `config.json` rebuilds the model with no flags |

## Test figures (`digitseq evaluate`, MNIST test digits only, never seen in training or selection)

| layout | numbers | whole-number | per digit | CER | ECE |
|---|---|---|---|---|---|
{rows}

Reproduce: `digitseq generate DIR --layout seed --train 0 --val 0 --test 10000` (and
`--layout natural`), then `digitseq evaluate --data DIR`. About 0.75% of random test numbers
hold one of MNIST's ~15 mislabelled test digits, which caps honest whole-number accuracy near
99.25%.
"""
    (out / "README.md").write_text(text)


if __name__ == "__main__":
    main()
