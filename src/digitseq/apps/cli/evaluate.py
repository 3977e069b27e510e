"""``digitseq evaluate``: evaluate models on a stored split; writes metrics, plots and report.md."""

from __future__ import annotations

import argparse
from pathlib import Path

from digitseq.apps.cli.options import positive_int


def add_parser(sub) -> None:
    p = sub.add_parser("evaluate", help="evaluate runs on a stored test split; writes a report")
    p.add_argument("models", nargs="*", metavar="RUN_OR_WEIGHTS", help="default: bundled model")
    p.add_argument("--data", type=Path, help="dataset folder (default: the default dataset)")
    p.add_argument("--split", default="test")
    p.add_argument("--out", type=Path, help="report folder (default: RUN/eval)")
    p.add_argument("--compare", action="store_true", help="side-by-side table of several runs")
    p.add_argument("--limit", type=positive_int, help="evaluate the first N sequences only")
    p.add_argument("--batch-size", type=positive_int, default=512)
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """``digitseq evaluate [RUN_OR_WEIGHTS ...]``."""
    # torch comes in here, not at import: `digitseq serve --workers N`'s parent and
    # `digitseq --help` never load it.
    from digitseq.evaluation.metrics import evaluate_model
    from digitseq.evaluation.stored_lines import open_any_split
    from digitseq.evaluation.summary import (
        compare_markdown,
        default_out,
        summary_text,
        write_evaluation,
    )
    from digitseq.models import checkpoint

    split = open_any_split(args.data, args.split)
    loaded = [checkpoint.load_model(p) for p in (args.models or [None])]  # fail before work
    if not split.fixed:  # numbers of any length: line readers, metrics per length
        return run_lines(args, split, loaded)
    several = len(loaded) > 1
    evs, outs = [], []
    for i, (model, cfg) in enumerate(loaded):
        ev = evaluate_model(model, cfg, split, args.limit, args.batch_size, not args.quiet)
        out = default_out(cfg, args.split) if args.out is None else args.out
        if several and args.out is not None:
            out = args.out / (ev.name if ev.name not in [e.name for e in evs] else f"{ev.name}-{i}")
        write_evaluation(ev, out)
        evs.append(ev)
        outs.append(out)
        print(summary_text(ev))
        print(f"wrote {out / 'metrics.json'}, {out / 'report.md'} and plots\n")
    if args.compare or several:
        write_comparison(args, evs, outs, compare_markdown(evs))
    return 0


def run_lines(args: argparse.Namespace, split, loaded: list) -> int:
    """``digitseq evaluate`` on a split of numbers of any length (dataset format version 2)."""
    from digitseq.evaluation import stored_lines
    from digitseq.evaluation.summary import default_out

    for model, cfg in loaded:  # every model must be a line reader, before any work
        if not stored_lines.is_line_reader(cfg):
            stored_lines.evaluate_lines(model, cfg, split, limit=0)  # raises its one-line error
    several = len(loaded) > 1
    evs, outs = [], []
    for i, (model, cfg) in enumerate(loaded):
        ev = stored_lines.evaluate_lines(
            model, cfg, split, args.limit, min(args.batch_size, 256), not args.quiet
        )
        out = default_out(cfg, args.split) if args.out is None else args.out
        if several and args.out is not None:
            out = args.out / (ev.name if ev.name not in [e.name for e in evs] else f"{ev.name}-{i}")
        stored_lines.write_line_evaluation(ev, out)
        evs.append(ev)
        outs.append(out)
        print(stored_lines.summary_text(ev))
        print(f"wrote {out / 'metrics.json'}, {out / 'report.md'} and a plot\n")
    if args.compare or several:
        lengths = sorted({r["length"] for e in evs for r in e.metrics["lengths"]})
        head = "| model | " + " | ".join(f"{k} digits" for k in lengths) + " | all | CER | ECE |"
        rows = [head, "|---|" + "---:|" * (len(lengths) + 3)]
        for e in evs:
            per = {r["length"]: r["seq_acc"] for r in e.metrics["lengths"]}
            o = e.metrics["overall"]
            cells = [f"{per[k]:.2%}" if k in per else "-" for k in lengths]
            rows.append(f"| {e.name} | " + " | ".join(cells)
                        + f" | {o['seq_acc']:.2%} | {o['cer']:.2%} | {o['ece']:.4f} |")  # fmt: skip
        write_comparison(args, evs, outs, "\n".join(rows))
    return 0


def write_comparison(args: argparse.Namespace, evs: list, outs: list, table: str) -> None:
    """compare.md (in --out, else the first model's report folder) and the table on stdout."""
    from digitseq.core import files
    from digitseq.evaluation.summary import make_dir

    folder = make_dir(args.out if args.out is not None else outs[0])
    files.atomic_write_text(
        folder / "compare.md",
        f"# Comparison on {args.split}\n\nDataset `{evs[0].dataset}`.\n\n{table}\n",
    )
    print(table)
    print(f"wrote {folder / 'compare.md'}")
