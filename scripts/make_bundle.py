"""Package a trained CTC run as the bundled model (models/<name>/): fp16 weights, the
temperature calibrated on val, a calibrated ONNX file (dynamic batch and width) for reading
without torch, the test figures of benchmarks/bench_accuracy.py and the model card.

    .venv/bin/python scripts/make_bundle.py RUN [--name digitseq-ctc] [--hardware "..."]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from digitseq.core import files
from digitseq.core.paths import bundled_models_dir
from digitseq.data import drawn, fonts, loaders, mnist, sources
from digitseq.evaluation.accuracy import accuracy_report
from digitseq.models import checkpoint
from digitseq.models.onnx_export import export_onnx
from digitseq.training import calibration


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("run", type=Path)
    ap.add_argument("--name", default="digitseq-ctc")
    ap.add_argument("--hardware", default="1x NVIDIA H200 (lent GPU machine)")
    ap.add_argument(
        "--trained-with",
        default="scripts/gpu_bundle.sh (digitseq train --preset bundle --device cuda)",
        help="the command, for the model card",
    )
    ap.add_argument("--before", default="", help="for the card: what the run started from")
    ap.add_argument(
        "--selection",
        default="",
        help="for the card: how the weights were chosen (default: the run's best val epoch)",
    )
    ap.add_argument("--n5", type=int, default=10_000)
    ap.add_argument("--n-len", type=int, default=1000)
    args = ap.parse_args()
    torch.set_num_threads(2)

    src = json.loads((args.run / "config.json").read_text())
    out = bundled_models_dir() / args.name
    out.mkdir(parents=True, exist_ok=True)
    model, _ = checkpoint.load_model(args.run / "best.pth")
    checkpoint.save_weights(checkpoint.unwrap(model), out / "weights.pth", half=True)

    # the shipped (fp16) weights are what gets calibrated, exported and measured
    cfg = {k: src[k] for k in ("model", "train", "parameters", "torch")}
    cfg["model"]["kind"] = "ctc"
    files.write_json(out / "config.json", cfg)
    m = mnist.load()
    vpool, vlab, _ = mnist.split_pool(m, "val")
    tr = cfg["train"]
    # calibrated on val numbers with the run's own kinds of digits: MNIST val digits, and (as
    # the run trained) some redrawn with a round pen, in training fonts and from pen
    # trajectories, all drawn afresh (other seeds than training's), none from a held-out set
    spec = sources.DataSpec(
        lines=True, p_drawn=tr.get("p_drawn", 0.0), p_font=tr.get("p_font", 0.0),
        p_pen=tr.get("p_pen", 0.0), seed=tr["seed"] + 1000,
    )  # fmt: skip
    vpool, vlab = sources.digit_pool(vpool, vlab, spec)
    val = loaders.line_set(vpool, vlab, 10_000, tr["seed"], tr["layout"], tuple(tr["lengths"]))
    cal = calibration.calibrate_weights(out / "weights.pth", out / "config.json", val)
    print("calibration", cal)
    sidecar = export_onnx(out, out / "model.onnx")
    print("onnx", sidecar["check_max_abs_diff"])

    history = json.loads((args.run / "history.json").read_text())
    best = max(history, key=lambda r: r["val_seq_acc"])
    report = accuracy_report(out, bundled_models_dir() / "digitseq-multihead", args.n5, args.n_len)
    cfg = json.loads((out / "config.json").read_text())
    cfg["test_metrics"] = report
    cfg["model_card"] = {
        "trained_with": args.trained_with,
        "started_from": args.before,
        "hardware": args.hardware,
        "training_seconds": round(sum(r["seconds"] for r in history)),
        "epochs": len(history),
        "numbers_seen": sum(
            r.get("numbers", tr["steps_per_epoch"] * tr["batch_size"]) for r in history
        ),  # fmt: skip
        "best_epoch": best["epoch"],
        "val_seq_acc": round(best["val_seq_acc"], 5),
        "val_digit_acc": round(best["val_digit_acc"], 5),
        "weights": "fp16 state_dict (loaded as fp32); model.onnx: fp32, calibrated",
        "selection": args.selection,
    }
    files.write_json(out / "config.json", cfg)
    files.write_json(out / "history.json", history)
    write_card(out, cfg)
    print(f"bundled model written to {out}")


def drawn_note(tr: dict) -> str:
    notes = []
    if tr.get("p_drawn"):
        lo, hi = drawn.PEN_RATIO
        notes.append(f"{tr['p_drawn']:.0%} of the training digits redrawn with one round pen "
                     f"(`digitseq.data.drawn`: their centre line, a pen {100 * lo:.0f}-{hi:.0%} "
                     "of the digit's height, brought back to MNIST's stroke range as "
                     "preprocessing does)")  # fmt: skip
    if tr.get("p_font"):
        notes.append(f"{tr['p_font']:.0%} drawn in the {len(fonts.FAMILIES)} training "
                     "handwriting fonts (`digitseq.data.fonts`, npm @fontsource)")  # fmt: skip
    if tr.get("p_pen"):
        notes.append(f"{tr['p_pen']:.0%} drawn from synthetic pen trajectories "
                     "(`digitseq.data.strokes`)")  # fmt: skip
    if tr.get("augment", {}).get("p_lowres"):
        notes.append(f"{tr['augment']['p_lowres']:.0%} of the lines written small "
                     "(down to 30-60% of their size and back up)")  # fmt: skip
    return "".join("; " + n for n in notes)


def pct(x: float) -> str:
    return f"{100 * x:.2f}%"


def write_card(out: Path, cfg: dict) -> None:
    card, hp, tr, rep = (
        cfg["model_card"],
        cfg["model"]["hparams"],
        cfg["train"],
        cfg["test_metrics"],
    )
    five = "\n".join(
        f"| {lay} | {s['n']:,} | {pct(s['seq_acc'])} | {pct(s['digit_acc'])} | "
        + (f"{pct(s['multihead']['seq_acc'])} / {pct(s['multihead']['digit_acc'])}" if "multihead" in s else "-")
        + " |"
        for lay, s in rep["five_digits"].items()
    )  # fmt: skip
    per_len = "\n".join(
        f"| {r['length']} | {r['n']:,} | {pct(r['seq_acc'])} | {pct(r['target'])} | "
        f"{pct(r['cer'])} | {pct(r['wrong_length'])} | {r['ece']:.4f} |"
        for r in rep["per_length_natural"]
    )
    abst = "\n".join(
        f"| {k} | {a['threshold']:.4f} | {pct(a['val_coverage'])} | {pct(a['test_coverage'])} | "
        f"{pct(a['test_accuracy'])} |"
        for k, a in rep["abstention"].items()
    )
    selection = card.get("selection") or (
        f"best of {card['epochs']} epochs on `val` (numbers from MNIST digits 50,000-59,999): "
        f"epoch {card['best_epoch']}, whole-number {pct(card['val_seq_acc'])}, "
        f"1 - CER {pct(card['val_digit_acc'])}"
    )
    text = f"""# {out.name}: the bundled digitseq reader

A segmentation-free CTC line reader (`ctc`): a conv trunk over a 28-px line of any width, one
frame per 4 columns, a 1-D conv context, 11 outputs per frame (blank + 10 digits). It reads
numbers of any length without being told the length; `--digits N|A-B` asks for the most
probable number of that length instead. Used by every command when no `--model` is given;
`model.onnx` (calibrated, dynamic batch and width) lets `digitseq predict` run without torch.

| | |
|---|---|
| architecture | `ctc` {json.dumps(hp)} ({cfg["parameters"]:,} parameters) |
| command | `{card["trained_with"]}` |
| data | fresh numbers of 1-12 digits generated on the fly from MNIST training digits 0-49,999, layout `{tr["layout"]}` (`digitseq.data.compose.LAYOUT_MIXES`), batches of one length padded to a multiple of {tr["pad_to"]} px{drawn_note(tr)}; batch augmentation {json.dumps(tr["augment"])} |
| model selection | {selection} |
| training | {card["numbers_seen"]:,} numbers in {card["training_seconds"]} s on {card["hardware"]}, bf16 autocast, CTC loss in fp32, AdamW lr {tr["lr"]} with warm-up + cosine, EMA {tr["ema_decay"]}{"; started from " + card["started_from"] if card.get("started_from") else ""} |
| calibration | temperature {cfg["calibration"]["temperature"]} fitted on `val` (CTC NLL {cfg["calibration"]["val_nll_before"]:.4f} -> {cfg["calibration"]["val_nll_after"]:.4f}); the confidence of a reading is the calibrated probability of the whole string |
| weights | `weights.pth`: {card["weights"]}; `config.json` rebuilds the model with no flags |

## Test figures (MNIST test digits only; `.venv/bin/python benchmarks/bench_accuracy.py`)

5-digit numbers, read without being told the length (the 5-digit `multihead` baseline on the
same numbers; it cannot read touching digits' variable widths):

| layout | numbers | whole-number | per digit (1 - CER) | multihead whole / per digit |
|---|---|---|---|---|
{five}

Every length on `natural` numbers:

| digits | numbers | whole-number | target 0.997^L | CER | wrong length | ECE |
|---|---|---|---|---|---|---|
{per_len}

Abstention (`--min-confidence`): thresholds chosen on val numbers (1-12 digits, mixed
layouts), coverage measured on test numbers:

| accuracy on val | threshold | val coverage | test coverage | test accuracy |
|---|---|---|---|---|
{abst}

About 0.15% of MNIST test digits are mislabelled or ambiguous (~15 of 10,000), which caps
honest whole-number accuracy near 0.9985^L.
"""
    (out / "README.md").write_text(text)


if __name__ == "__main__":
    main()
