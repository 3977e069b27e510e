"""The ``digitseq`` command line. Each subcommand parses its options here and hands them to
its module's ``cli_main(args) -> int``; heavy modules (torch, streamlit) import lazily."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from pathlib import Path

from digitseq import __version__
from digitseq.config import DigitseqError

log = logging.getLogger("digitseq")


def positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {value}")
    return value


def count(text: str) -> int:
    try:
        value = int(text.replace("_", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def probability(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="digitseq", description="Read handwritten 5-digit numbers with a CNN trained on MNIST."
    )
    parser.add_argument("--version", action="version", version=f"digitseq {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output")
    parser.add_argument("-q", "--quiet", action="store_true", help="errors only, no progress bars")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("fetch-mnist", help="download (or unpack) and verify the MNIST files")
    p.add_argument(
        "--data-dir",
        type=Path,
        help="MNIST cache folder (default: $DIGITSEQ_MNIST_DIR or ~/.cache/digitseq/mnist)",
    )
    p.set_defaults(handler="digitseq.cli:cmd_fetch")

    p = sub.add_parser("generate", help="generate a dataset of 5-digit number images")
    p.add_argument("out_dir", type=Path, metavar="OUT_DIR")
    p.add_argument("--layout", choices=["seed", "natural", "mixed"], default="mixed")
    p.add_argument("--train", type=count, default=100_000, help="train sequences (0 skips)")
    p.add_argument("--val", type=count, default=10_000, help="val sequences (0 skips)")
    p.add_argument("--test", type=count, default=10_000, help="test sequences (0 skips)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--leading-zero",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="allow a leading 0 (default); --no-leading-zero as the original project",
    )
    p.add_argument("--png", action="store_true", help="also write NNNNNN.png files + labels.csv")
    p.add_argument("--overwrite", action="store_true", help="replace an existing dataset")
    p.add_argument("--data-dir", type=Path, help="MNIST cache folder")
    p.set_defaults(handler="digitseq.cli:cmd_generate")

    p = sub.add_parser("train", help="train a model; writes a run folder")
    p.add_argument("--preset", default="default", help="tiny | demo | default | bundle")
    p.add_argument("--arch", help="model architecture (see --list-models)")
    p.add_argument("--list-models", action="store_true", help="list architectures and exit")
    p.add_argument("--out", type=Path, help="run folder (default: $DIGITSEQ_HOME/runs/<time>)")
    p.add_argument("--data", type=Path, help="train on a stored dataset instead of on-the-fly")
    p.add_argument("--layout", choices=["seed", "natural", "mixed"])
    p.add_argument("--epochs", type=positive_int)
    p.add_argument("--steps-per-epoch", type=positive_int)
    p.add_argument("--batch-size", type=positive_int)
    p.add_argument("--lr", type=float)
    p.add_argument("--val-size", type=positive_int, help="val sequences for model selection")
    p.add_argument("--time-limit", type=float, help="stop after this many minutes")
    p.add_argument("--patience", type=int, help="early stopping: epochs without val gain")
    p.add_argument("--ema", action=argparse.BooleanOptionalAction, default=None)
    p.add_argument("--seed", type=int)
    p.add_argument("--deterministic", action="store_true")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--compile", action="store_true", help="torch.compile the model")
    p.add_argument("--workers", type=int, help="data-loader worker processes")
    p.add_argument("--resume", action="store_true", help="continue the run in --out")
    p.add_argument("--data-dir", type=Path, help="MNIST cache folder")
    p.set_defaults(handler="digitseq.train:cli_main")

    p = sub.add_parser("evaluate", help="evaluate runs on a stored test split; writes a report")
    p.add_argument("models", nargs="*", metavar="RUN_OR_WEIGHTS", help="default: bundled model")
    p.add_argument("--data", type=Path, help="dataset folder (default: the default dataset)")
    p.add_argument("--split", default="test")
    p.add_argument("--out", type=Path, help="report folder (default: RUN/eval)")
    p.add_argument("--compare", action="store_true", help="side-by-side table of several runs")
    p.add_argument("--limit", type=positive_int, help="evaluate the first N sequences only")
    p.add_argument("--batch-size", type=positive_int, default=512)
    p.set_defaults(handler="digitseq.evalreport:cli_main")

    p = sub.add_parser("predict", help="read the number in image files")
    p.add_argument("inputs", nargs="+", metavar="IMAGE_OR_FOLDER")
    p.add_argument("--model", type=Path, help="run folder or weights (default: bundled model)")
    p.add_argument("--format", choices=["text", "jsonl"], default="text")
    p.add_argument("--min-confidence", type=probability, help="abstain below this confidence")
    p.add_argument("--backend", choices=["torch", "onnx"], default="torch")
    p.add_argument("--batch-size", type=positive_int, default=64)
    p.set_defaults(handler="digitseq.predict:cli_main")

    p = sub.add_parser("export", help="export a model (ONNX)")
    p.add_argument("model", nargs="?", type=Path, metavar="RUN_OR_WEIGHTS")
    p.add_argument("--format", choices=["onnx"], default="onnx")
    p.add_argument("-o", "--output", type=Path, required=True)
    p.set_defaults(handler="digitseq.export:cli_main")

    p = sub.add_parser("report", help="write the plots and report.html of a run")
    p.add_argument("run", type=Path, metavar="RUN")
    p.add_argument("--data", type=Path, help="dataset folder for the evaluation")
    p.add_argument("--out", type=Path, help="report folder (default: RUN/report)")
    p.set_defaults(handler="digitseq.report:cli_main")

    p = sub.add_parser("app", help="start the Streamlit web app")
    p.add_argument("--port", type=int, default=8501)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--runs-dir", type=Path, help="where to look for run folders")
    p.set_defaults(handler="digitseq.cli:cmd_app")

    p = sub.add_parser("serve", help="start the HTTP reading service")
    p.add_argument(
        "--host",
        default="127.0.0.1",
        help="bind address (default 127.0.0.1; 0.0.0.0 exposes it to the network)",
    )
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--model", type=Path)
    p.add_argument("--workers", type=positive_int, default=1)
    p.set_defaults(handler="digitseq.serve:cli_main")
    return parser


def cmd_fetch(args: argparse.Namespace) -> int:
    from digitseq import mnist

    folder = mnist.fetch(args.data_dir, progress=not args.quiet)
    print(f"MNIST verified in {folder}")
    return 0


def cmd_generate(args: argparse.Namespace) -> int:
    from digitseq import storage

    cfg = storage.GenerateConfig(
        layout=args.layout,
        counts={"train": args.train, "val": args.val, "test": args.test},
        seed=args.seed,
        leading_zero=args.leading_zero,
        png=args.png,
    )
    out = storage.generate_dataset(
        args.out_dir,
        cfg,
        overwrite=args.overwrite,
        mnist_dir=args.data_dir,
        progress=not args.quiet,
    )
    counts = ", ".join(f"{k} {v:,}" for k, v in cfg.counts.items() if v)
    print(f"dataset written to {out} ({counts}; layout {cfg.layout})")
    return 0


def cmd_app(args: argparse.Namespace) -> int:
    import os
    import subprocess

    from digitseq.appview import streamlit_command

    env = dict(os.environ)
    if args.runs_dir:
        env["DIGITSEQ_RUNS_DIR"] = str(args.runs_dir)
    print(f"digitseq app on http://{args.host}:{args.port}")
    return subprocess.call(streamlit_command(args.port, args.host, headless=False), env=env)


def resolve_handler(spec: str):
    module, func = spec.split(":")
    return getattr(importlib.import_module(module), func)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.ERROR if args.quiet else (logging.DEBUG if args.verbose else logging.INFO)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    try:
        return resolve_handler(args.handler)(args) or 0
    except DigitseqError as e:
        print(f"digitseq: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("digitseq: interrupted", file=sys.stderr)
        return 130
    except (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError) as e:
        print(f"digitseq: error: {e.strerror}: {e.filename}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
