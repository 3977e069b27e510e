"""``digitseq report``: evaluate a run and write its plots and self-contained report.html."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(sub) -> None:
    p = sub.add_parser("report", help="write the plots and report.html of a run")
    p.add_argument("run", type=Path, metavar="RUN")
    p.add_argument("--data", type=Path, help="dataset folder for the evaluation")
    p.add_argument("--out", type=Path, help="report folder (default: RUN/report)")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """``digitseq report RUN [--data D] [--out O]``."""
    from digitseq.evaluation import stored_lines, summary  # torch, matplotlib: when reporting
    from digitseq.evaluation.report import make_report

    ev, path = make_report(args.run, args.data, args.out, progress=not args.quiet)
    lines = isinstance(ev, stored_lines.LineEvaluation)
    print(stored_lines.summary_text(ev) if lines else summary.summary_text(ev))
    print(f"report written to {path}")
    return 0
