"""``digitseq predict``: read the numbers in image files and folders."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from digitseq.apps.cli.options import positive_int, probability
from digitseq.reading.predictor import Predictor, Reading, expand_inputs


def add_parser(sub) -> None:
    p = sub.add_parser("predict", help="read the number in image files")
    p.add_argument("inputs", nargs="+", metavar="IMAGE_OR_FOLDER")
    p.add_argument("--model", type=Path, help="run folder or weights (default: bundled model)")
    p.add_argument("--format", choices=["text", "jsonl"], default="text")
    p.add_argument("--min-confidence", type=probability, help="abstain below this confidence")
    p.add_argument("--backend", choices=["torch", "onnx"], default="torch")
    p.add_argument("--batch-size", type=positive_int, default=64)
    p.set_defaults(handler=run)


def text_line(r: Reading) -> str:
    """``PATH<TAB>DIGITS<TAB>CONFIDENCE``; DIGITS is ``-`` when unread (error or abstained),
    and the third field is then ``error: MESSAGE`` or the confidence that was too low."""
    if r.error is not None:
        return f"{r.file}\t-\terror: {r.error}"
    return f"{r.file}\t{r.digits or '-'}\t{r.confidence:.4f}"


def run(args: argparse.Namespace) -> int:
    predictor = Predictor.load(args.model, backend=args.backend)
    items = expand_inputs(args.inputs)
    include_abstained = args.min_confidence is not None
    failed = 0
    for start in range(0, len(items), args.batch_size):
        chunk = items[start : start + args.batch_size]
        paths = [i for i in chunk if isinstance(i, Path)]
        read = iter(predictor.predict(paths, args.min_confidence, args.batch_size))
        for item in chunk:
            r = item if isinstance(item, Reading) else next(read)
            if isinstance(item, Path):
                r.file = str(item)
            failed += r.error is not None
            if args.format == "jsonl":
                print(json.dumps(r.to_json(include_abstained)))
            else:
                print(text_line(r))
        sys.stdout.flush()
    if failed and not getattr(args, "quiet", False):
        print(f"digitseq: {failed} of {len(items)} inputs could not be read", file=sys.stderr)
    return 1 if failed else 0
