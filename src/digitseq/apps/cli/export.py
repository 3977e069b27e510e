"""``digitseq export``: export a model to ONNX."""

from __future__ import annotations

import argparse
from pathlib import Path

from digitseq.core.errors import DigitseqError


def add_parser(sub) -> None:
    p = sub.add_parser("export", help="export a model (ONNX)")
    p.add_argument("model", nargs="?", type=Path, metavar="RUN_OR_WEIGHTS")
    p.add_argument("--format", choices=["onnx"], default="onnx")
    p.add_argument("-o", "--output", type=Path, required=True)
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    if args.format != "onnx":
        raise DigitseqError(f"unknown export format {args.format!r} (only onnx)")
    if args.output.is_dir():
        raise DigitseqError(f"{args.output} is a folder; give a file name such as model.onnx")
    from digitseq.models.onnx_export import export_onnx  # torch: only when exporting

    sidecar = export_onnx(args.model, args.output)
    size = args.output.stat().st_size / 1e6
    print(
        f"exported {sidecar['model']['arch']} to {args.output} ({size:.1f} MB; "
        f"max |torch - onnxruntime| = {sidecar['check_max_abs_diff']:.1e}) "
        f"and {args.output.name}.json"
    )
    return 0
