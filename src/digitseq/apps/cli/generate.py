"""``digitseq generate``: write a dataset of number images."""

from __future__ import annotations

import argparse
from pathlib import Path

from digitseq.apps.cli.options import count
from digitseq.core.constants import LAYOUTS


def add_parser(sub) -> None:
    p = sub.add_parser("generate", help="generate a dataset of number images")
    p.add_argument("out_dir", type=Path, metavar="OUT_DIR")
    p.add_argument(
        "--layout",
        choices=LAYOUTS,
        default="mixed",
        help="mixed = half seed, half natural; mix3 = seed 30%%, natural 40%%, touching 30%%; "
        "mix4 = seed 25%%, natural 30%%, touching 25%%, spaced (by ink, gaps -2..8 px) 20%%",
    )
    p.add_argument(
        "--lengths",
        default="5",
        metavar="N|LO-HI",
        help="digits per number, drawn uniformly in LO-HI (default 5: the 5-digit format; "
        "e.g. 1-12 for numbers of any length)",
    )
    p.add_argument("--train", type=count, default=100_000, help="train sequences (0 skips)")
    p.add_argument("--val", type=count, default=10_000, help="val sequences (0 skips)")
    p.add_argument("--test", type=count, default=10_000, help="test sequences (0 skips)")
    p.add_argument("--seed", type=int, default=0, help="a whole number >= 0")
    p.add_argument(
        "--leading-zero",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="allow a leading 0 (default); --no-leading-zero as the original project",
    )
    p.add_argument("--png", action="store_true", help="also write NNNNNN.png files + labels.csv")
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an existing dataset (never a folder holding anything else)",
    )
    p.add_argument("--data-dir", type=Path, help="MNIST cache folder")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from digitseq.data import storage

    lengths = storage.parse_lengths(args.lengths)  # one line on a bad value, before any work
    cfg = storage.GenerateConfig(
        layout=args.layout,
        counts={"train": args.train, "val": args.val, "test": args.test},
        seed=args.seed,
        leading_zero=args.leading_zero,
        png=args.png,
        lengths=lengths,
    )
    out = storage.generate_dataset(
        args.out_dir,
        cfg,
        overwrite=args.overwrite,
        mnist_dir=args.data_dir,
        progress=not args.quiet,
    )
    counts = ", ".join(f"{k} {v:,}" for k, v in cfg.counts.items() if v)
    lo, hi = lengths
    digits = f"{lo} digits" if lo == hi else f"{lo}-{hi} digits"
    print(f"dataset written to {out} ({counts}; layout {cfg.layout}; {digits})")
    return 0
