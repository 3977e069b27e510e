"""``digitseq report RUN``: evaluate a run and write every picture as PNG plus one
self-contained ``report.html`` (images embedded as data URIs) for people without Jupyter."""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path

from digitseq.core import files
from digitseq.core.errors import DigitseqError
from digitseq.data import storage
from digitseq.evaluation import metrics, plots, stored_lines, summary
from digitseq.models import checkpoint


def read_history(run: str | Path | None) -> list[dict]:
    """The run's per-epoch history.json ([] when the run or bundle has none)."""
    weights, _ = checkpoint.resolve(run)
    path = weights.parent / "history.json"
    if not path.is_file():
        return []
    try:
        history = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise DigitseqError(f"{path} is not valid JSON") from None
    if not isinstance(history, list) or not all(isinstance(h, dict) for h in history):
        raise DigitseqError(f"{path} is not a list of per-epoch records")
    return history


def model_figures(model, name: str, history: list[dict]) -> dict:
    """Training curves and the architecture: figures of the run, whatever the split."""
    return {
        "training_curves.png": plots.training_curves(history),
        "architecture.png": plots.architecture_diagram(model, title=name),
    }


def run_figures(ev: metrics.Evaluation, history: list[dict]) -> dict:
    """The report's figures beyond the evaluation's: samples, training curves, architecture."""
    s, n = ev.split, len(ev.labels)
    return {
        "samples.png": plots.dataset_samples(s.images[:n], s.labels[:n], s.layouts[:n]),
        **model_figures(ev.model, f"{ev.name} ({ev.info['arch']})", history),
    }


def write_report(
    run: str | Path | None,
    data: Path | None = None,
    out: Path | None = None,
    split: str = "test",
    limit: int | None = None,
) -> Path:
    """Evaluate ``run`` (None = bundled model) and write PNGs, metrics.json, report.md and
    report.html into ``out`` (default RUN/report; the bundled model's under $DIGITSEQ_HOME).
    Returns the path of report.html. For ``make demo``: ``write_report(run_folder)``."""
    return make_report(run, data, out, split, limit)[1]


def make_report(
    run: str | Path | None,
    data: Path | None = None,
    out: Path | None = None,
    split: str = "test",
    limit: int | None = None,
    batch_size: int = 512,
    progress: bool = False,
) -> tuple[metrics.Evaluation | stored_lines.LineEvaluation, Path]:
    """Evaluate and write the report: a 5-digit split gets every fixed-length figure, a split
    of numbers of any length (format 2) the per-length table and figure."""
    test = stored_lines.open_any_split(data, split)
    history = read_history(run)
    model, cfg = checkpoint.load_model(run)
    folder = out if out is not None else summary.default_out(cfg, split, "report")
    if test.version == storage.LINES_VERSION:
        ev = stored_lines.evaluate_lines(model, cfg, test, limit, batch_size, progress)
        stored_lines.write_line_evaluation(ev, folder)
        figs = model_figures(model, f"{ev.name} ({ev.info['arch']})", history)
        figs["worst_errors.png"] = plots.error_gallery(
            test.images, ev.metrics["worst_errors"], 2, mnist_file=metrics.mnist_file(test.name)
        )
        pngs = ["length_accuracy.png"] + summary.save_figures(figs, folder)
        tables = length_tables(ev.metrics, test.name)
    else:
        ev = metrics.evaluate_model(model, cfg, test, limit, batch_size, progress)
        pngs = summary.write_evaluation(ev, folder, run_figures(ev, history), title="Report")
        tables = metric_tables(ev.metrics, test.name)
    html_path = folder / "report.html"
    files.atomic_write_text(html_path, render_html(ev, folder, pngs, history, tables))
    return ev, html_path


# --- HTML ---------------------------------------------------------------------------------------

CSS = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 8px;
text-align:right}th{background:#f3f3f3}td:first-child{text-align:left}
img{max-width:100%;display:block;margin:0.5em 0 1.5em}code{background:#f3f3f3}"""

SECTIONS = [  # (title, png) in reading order
    ("Accuracy per length", "length_accuracy.png"),
    ("Dataset samples", "samples.png"),
    ("Training curves", "training_curves.png"),
    ("Accuracy per position", "position_accuracy.png"),
    ("Confusion matrix", "confusion.png"),
    ("Confusion per position", "confusion_positions.png"),
    ("Confidence of right and wrong readings", "confidence.png"),
    ("Reliability", "reliability.png"),
    ("Accuracy vs coverage", "coverage.png"),
    ("Most confident errors", "worst_errors.png"),
    ("Architecture", "architecture.png"),
]


def table(head: list[str] | None, rows: list[list]) -> str:
    th = "".join(f"<th>{html.escape(str(h))}</th>" for h in head or [])
    trs = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>" for r in rows
    )
    return f"<table>{f'<tr>{th}</tr>' if head else ''}{trs}</table>"


def data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def metric_tables(m: dict, split_name: str = "test") -> str:
    pct, gs = summary.pct, summary.groups(m)
    cov = [str(c) for c in metrics.REPORTED_COVERAGES]
    summary_table = table(
        ["layout", "n", "seq acc", "digit acc", "CER", "ECE", "mean confidence"]
        + [f"acc @ {float(c):.0%} coverage" for c in cov],
        [
            [
                name,
                f"{g['n']:,}",
                pct(g["seq_acc"]),
                pct(g["digit_acc"]),
                pct(g["cer"]),
                f"{g['ece']:.4f}",
                f"{g['mean_confidence']:.4f}",
            ]
            + [pct(g["accuracy_at_coverage"][c]) for c in cov]
            for name, g in gs
        ],
    )
    positions = table(
        ["layout"] + [f"digit {p + 1}" for p in range(5)],
        [[name] + [pct(a) for a in g["position_acc"]] for name, g in gs],
    )
    classes = table(
        ["layout"] + [str(d) for d in range(10)],
        [[name] + [pct(a) for a in g["class_acc"]] for name, g in gs],
    )
    worst = table(
        [
            "#",
            "true",
            "read",
            "confidence",
            "wrong positions",
            f"MNIST {metrics.mnist_file(split_name)} index",
        ],  # fmt: skip
        [
            [
                e["index"],
                e["true"],
                e["pred"],
                f"{e['confidence']:.3f}",
                " ".join(str(p + 1) for p in e["wrong_positions"]),
                metrics.mnist_ids(e),
            ]
            for e in m["overall"]["worst_errors"]
        ],
    )
    return (
        f"<h2>Metrics</h2>{summary_table}<h3>Accuracy per position</h3>{positions}"
        f"<h3>Accuracy per true digit</h3>{classes}<h3>Most confident errors</h3>{worst}"
    )


def length_tables(m: dict, split_name: str = "test") -> str:
    """The per-length, per-layout and most-confident-error tables of an any-length split."""
    head = ["digits", "n", "whole-number", "CER", "wrong length", "ECE"]

    def row(name, r):
        pct = summary.pct
        return [name, f"{r['n']:,}", pct(r["seq_acc"]), pct(r["cer"]), pct(r["wrong_length"]),
                f"{r['ece']:.4f}"]  # fmt: skip

    lengths = table(head, [row(r["length"], r) for r in m["lengths"]])
    layouts = table(
        ["layout"] + head[1:],
        [row(k, r) for k, r in m["layouts"].items()] + [row("all", m["overall"])],
    )
    worst = table(
        ["#", "true", "read", "confidence", f"MNIST {metrics.mnist_file(split_name)} index"],
        [[e["index"], e["true"], e["pred"], f"{e['confidence']:.3f}", metrics.mnist_ids(e)]
         for e in m["worst_errors"]],
    )  # fmt: skip
    return (
        f"<h2>Whole-number accuracy per length</h2>{lengths}<h3>Per layout</h3>{layouts}"
        f"<h3>Most confident errors</h3>{worst}"
    )


def render_html(ev, folder: Path, pngs: list[str], history: list, metric_html: str) -> str:
    """The self-contained page: the model, the metric tables (``metric_html``), the figures."""
    info = ev.info
    model = table(
        None,
        [
            ["name", ev.name],
            ["architecture", info["arch"]],
            ["hyper-parameters", json.dumps(info["hparams"])],
            ["parameters", f"{info['parameters']:,}"],
            ["weights", info["weights"]],
            ["epochs in history", len(history)],
            ["dataset", f"{ev.dataset} ({ev.split.name})"],
            ["sequences", f"{ev.metrics['n']:,}"],
        ],
    )
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>digitseq report: "
        f"{html.escape(ev.name)}</title><style>{CSS}</style></head><body>",
        f"<h1>digitseq report: {html.escape(ev.name)}</h1>",
        model,
        metric_html,
    ]
    for title, png in SECTIONS:
        if png in pngs:
            parts.append(
                f"<h2>{html.escape(title)}</h2><img alt='{html.escape(title)}' "
                f"src='{data_uri(folder / png)}'>"
            )
    parts.append("</body></html>\n")
    return "\n".join(parts)
