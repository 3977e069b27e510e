"""``digitseq fetch-mnist``: download (or unpack) and verify the MNIST files."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(sub) -> None:
    p = sub.add_parser("fetch-mnist", help="download (or unpack) and verify the MNIST files")
    p.add_argument(
        "--data-dir",
        type=Path,
        help="MNIST cache folder (default: $DIGITSEQ_MNIST_DIR or ~/.cache/digitseq/mnist)",
    )
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from digitseq.data import mnist

    folder = mnist.fetch(args.data_dir, progress=not args.quiet)
    print(f"MNIST verified in {folder}")
    return 0
