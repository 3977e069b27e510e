"""``digitseq train``: train a model; writes a run folder."""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import replace
from pathlib import Path

from digitseq.apps.cli.options import positive_int
from digitseq.core.constants import LAYOUTS
from digitseq.core.errors import DigitseqError
from digitseq.core.paths import runs_dir

# Options that map onto TrainConfig fields one to one: (field, type, help). Everything else in
# TrainConfig (hparams, augment, ...) comes from the preset; resume reads the run's own config.
OPTION_HELP = {
    "arch": "model architecture (see --list-models)",
    "layout": "layout of the on-the-fly training numbers",
    "epochs": "epochs",
    "steps_per_epoch": "optimizer steps per epoch",
    "batch_size": "numbers per batch",
    "lr": "peak learning rate",
    "warmup": "share of the run (steps or time budget) the LR warms up over",
    "val_size": "val numbers for model selection",
    "time_limit": "a time budget in minutes: the LR schedule anneals within it, then the run stops",
    "precision": "auto (bf16 where the CPU/GPU has it) | bf16 | fp32",
    "patience": "early stopping: epochs without val gain",
    "seed": "random seed",
    "workers": "data-loader worker processes",
    "ema": "keep an exponential moving average of the weights",
    "init": "start from the weights of this run or model folder (fine-tuning)",
    "teacher": "distillation: also learn this CTC reader's (or ensemble's) frame posteriors",
    "distill": "with --teacher: weight of the distillation loss beside CTC",
    "p_drawn": "share of training digits redrawn with one round pen, as the app's canvas draws",
    "p_font": "share of training digits drawn in the training handwriting fonts",
    "p_pen": "share of training digits drawn from synthetic pen trajectories",
    "p_format": "share of training lines that are formatted numbers with separators (amounts, "
    "dates, times, phones, IDs); needs a text reader (--preset text-tiny, or hparams alphabet "
    "text)",
}


def add_parser(sub) -> None:
    from dataclasses import fields

    from digitseq.training.config import PRESETS, TrainConfig

    p = sub.add_parser("train", help="train a model; writes a run folder")
    p.add_argument("--preset", default="default", help=" | ".join(PRESETS))
    p.add_argument("--list-models", action="store_true", help="list architectures and exit")
    p.add_argument("--out", type=Path, help="run folder (default: $DIGITSEQ_HOME/runs/<time>)")
    p.add_argument("--data", type=Path, help="train on a stored dataset instead of on-the-fly")
    types = {f.name: f.type for f in fields(TrainConfig)}
    for name, text in OPTION_HELP.items():
        flag = "--" + name.replace("_", "-")
        kind = types[name]
        if kind == "bool":
            p.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=text)
        elif name == "layout":
            p.add_argument(flag, choices=LAYOUTS, help=text)
        elif name == "precision":
            p.add_argument(flag, choices=("auto", "bf16", "fp32"), help=text)
        else:
            convert = {"int": positive_int, "float": float, "str": str, "str | None": str}[kind]
            if name in ("patience", "seed", "workers"):
                convert = int
            p.add_argument(flag, type=convert, help=text)
    p.add_argument(
        "--hparams",
        type=json_object,
        help="model hyper-parameters as JSON, e.g. '{\"hidden\": 320}'",
    )
    p.add_argument("--deterministic", action="store_true")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--compile", action="store_true", help="torch.compile the model")
    p.add_argument("--resume", action="store_true", help="continue the run in --out")
    p.add_argument("--data-dir", type=Path, help="MNIST cache folder")
    p.set_defaults(handler=run)


def json_object(text: str) -> dict:
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        raise argparse.ArgumentTypeError(f"not valid JSON: {text!r}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object, got {text!r}")
    return value


def config_from_args(args: argparse.Namespace):
    """The preset named by --preset with the options given on the command line applied."""
    from digitseq.models import checkpoint, registry
    from digitseq.training.config import PRESETS

    if args.preset not in PRESETS:
        raise DigitseqError(f"unknown preset {args.preset!r}; choose one of {', '.join(PRESETS)}")
    cfg = PRESETS[args.preset]
    overrides = {k: getattr(args, k) for k in OPTION_HELP if getattr(args, k, None) is not None}
    if args.arch and args.arch != cfg.arch:
        overrides["hparams"] = {}  # another architecture: its own defaults
    if args.init:  # fine-tuning: the architecture of the weights we start from
        init_cfg = json.loads(checkpoint.resolve(args.init)[1].read_text())["model"]
        overrides.update(arch=init_cfg["arch"], hparams=init_cfg["hparams"], init=str(args.init))
    if args.hparams:
        overrides["hparams"] = {**overrides.get("hparams", cfg.hparams), **args.hparams}
    if args.data:
        overrides["data"] = str(args.data)
    cfg = replace(
        cfg,
        **overrides,
        deterministic=args.deterministic or cfg.deterministic,
        compile=args.compile or cfg.compile,
    )
    if cfg.arch not in registry.MODELS:
        raise DigitseqError(
            f"unknown architecture {cfg.arch!r}; choose one of {', '.join(registry.list_models())}"
        )
    return cfg


def run(args: argparse.Namespace) -> int:
    import torch

    from digitseq.models import registry
    from digitseq.training.config import TrainConfig
    from digitseq.training.fit import fit

    if args.list_models:
        for name in registry.list_models():
            print(name, registry.DEFAULTS[name])
        return 0
    if args.resume:
        if not args.out:
            raise DigitseqError("--resume needs --out RUN_FOLDER")
        cfg_path = args.out / "config.json"
        if not cfg_path.is_file():
            raise DigitseqError(f"nothing to resume: {cfg_path} does not exist")
        cfg = TrainConfig.from_dict(json.loads(cfg_path.read_text())["train"])
    else:
        cfg = config_from_args(args)
    out = args.out or runs_dir() / time.strftime("%Y%m%d-%H%M%S")
    torch.set_num_threads(max(1, torch.get_num_threads()))
    fit(
        cfg,
        out,
        resume=args.resume,
        device=args.device,
        mnist_dir=args.data_dir,
        progress=not args.quiet,
    )
    if int(os.environ.get("RANK", "0")) == 0:
        hist = json.loads((out / "history.json").read_text())
        best = max(hist, key=lambda r: r["val_seq_acc"])
        print(
            f"run written to {out} (best val: whole-number {best['val_seq_acc']:.4f}, "
            f"per digit {best['val_digit_acc']:.4f} at epoch {best['epoch']})"
        )
    return 0
