"""``digitseq evaluate``'s outputs: ``metrics.json``, PNG plots and ``report.md`` per model,
the summary tables (markdown and terminal) and the comparison of several models.

The numbers come from ``evaluation``; this module only writes and formats them.
"""

from __future__ import annotations

import json
from pathlib import Path

from digitseq.core import files, paths
from digitseq.core.errors import DigitseqError
from digitseq.data.layouts import LAYOUT_IDS
from digitseq.evaluation.metrics import Evaluation, mnist_file


def default_out(cfg: dict, split: str, kind: str = "eval") -> Path:
    """RUN/eval (RUN/eval-val for another split); the bundled model's under $DIGITSEQ_HOME, so
    nothing is ever written into the repository."""
    folder = Path(cfg["weights_path"]).parent
    sub = kind if split == "test" else f"{kind}-{split}"
    if folder.resolve().is_relative_to(paths.bundled_models_dir().resolve()):
        return paths.home() / sub / folder.name
    return folder / sub


def make_dir(folder: Path) -> Path:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DigitseqError(f"cannot create {folder}: {e.strerror}") from None
    return folder


def figures(ev: Evaluation) -> dict[str, object]:
    """file name -> matplotlib Figure for every evaluation plot."""
    from digitseq.evaluation import plots

    m = ev.metrics
    return {
        "confusion.png": plots.confusion_matrix(m["overall"]["confusion"], "All positions"),
        "confusion_positions.png": plots.position_confusions(
            m["overall"]["confusion_per_position"]
        ),
        "position_accuracy.png": plots.position_accuracy(m),
        "reliability.png": plots.reliability_diagram(m),
        "coverage.png": plots.coverage_curve(m),
        "confidence.png": plots.confidence_histogram(ev.confidence, ev.correct),
        "worst_errors.png": plots.error_gallery(
            ev.split.images,
            m["overall"]["worst_errors"],
            mnist_file=mnist_file(ev.split.name),
        ),
    }


def save_figures(figs: dict, folder: Path) -> list[str]:
    from digitseq.evaluation import plots

    for name, fig in figs.items():
        plots.save(fig, folder / name)
    return list(figs)


def metrics_document(ev: Evaluation) -> dict:
    return {
        "name": ev.name,
        "model": ev.info,
        "data": {"dataset": str(ev.dataset), "split": ev.split.name, "n": ev.metrics["n"]},
        "seconds": round(ev.seconds, 3),
        **ev.metrics,
    }


def write_evaluation(
    ev: Evaluation, folder: Path, more_figures: dict | None = None, title: str = "Evaluation"
) -> list[str]:
    """metrics.json, the PNG plots (the evaluation's, then ``more_figures``) and report.md into
    ``folder``; the PNG file names. ``digitseq evaluate`` and ``digitseq report`` both write
    through here."""
    make_dir(folder)
    files.write_json(folder / "metrics.json", metrics_document(ev))
    pngs = save_figures({**figures(ev), **(more_figures or {})}, folder)
    lines = [f"# {title} of {ev.name}", "", describe(ev), "", summary_markdown(ev.metrics), ""]
    lines += [f"![{p[:-4].replace('_', ' ')}]({p})\n" for p in pngs]
    files.atomic_write_text(folder / "report.md", "\n".join(lines))
    return pngs


def describe(ev: Evaluation) -> str:
    i = ev.info
    return (
        f"Model `{ev.name}` ({i['arch']}, {i['parameters']:,} parameters) on "
        f"`{ev.dataset}` split `{ev.split.name}`: {ev.metrics['n']:,} sequences, "
        f"{ev.seconds:.1f} s."
    )


def groups(metrics: dict) -> list[tuple[str, dict]]:
    return [("all", metrics["overall"]), *metrics["layouts"].items()]


def pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.2f}%"


def summary_markdown(metrics: dict) -> str:
    """Markdown table: one row per layout (and all)."""
    rows = [
        "| layout | n | seq acc | digit acc | CER | ECE | acc @ 95% coverage |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, g in groups(metrics):
        rows.append(
            f"| {name} | {g['n']:,} | {pct(g['seq_acc'])} | {pct(g['digit_acc'])} | "
            f"{pct(g['cer'])} | {g['ece']:.4f} | {pct(g['accuracy_at_coverage']['0.95'])} |"
        )
    return "\n".join(rows)


def summary_text(ev: Evaluation) -> str:
    """The compact table printed by ``digitseq evaluate``."""
    lines = [
        f"{ev.name} ({ev.info['arch']}) on {ev.split.name}: {ev.metrics['n']:,} sequences",
        f"{'layout':<8}{'n':>8}{'seq acc':>10}{'± 95% CI':>10}{'digit acc':>11}{'CER':>8}"
        f"{'ECE':>8}{'acc@95%':>10}",
    ]
    for name, g in groups(ev.metrics):
        half = 1.96 * (g["seq_acc"] * (1 - g["seq_acc"]) / max(g["n"], 1)) ** 0.5
        lines.append(
            f"{name:<8}{g['n']:>8,}{pct(g['seq_acc']):>10}{pct(half):>10}{pct(g['digit_acc']):>11}"
            f"{pct(g['cer']):>8}{g['ece']:>8.4f}{pct(g['accuracy_at_coverage']['0.95']):>10}"
        )
    return "\n".join(lines)


def compare_markdown(evs: list[Evaluation]) -> str:
    """Side-by-side table of several models on the same split."""
    names = [n for n in LAYOUT_IDS if any(n in e.metrics["layouts"] for e in evs)]
    head = ["model", "arch", "params"] + [f"seq acc {n}" for n in names]
    head += ["seq acc all", "digit acc all", "ECE all", "acc @ 95% cov"]
    rows = ["| " + " | ".join(head) + " |", "|---|---|" + "---:|" * (len(head) - 2)]
    for e in evs:
        m = e.metrics
        cells = [e.name, e.info["arch"], f"{e.info['parameters']:,}"]
        cells += [pct(m["layouts"][n]["seq_acc"]) if n in m["layouts"] else "-" for n in names]
        o = m["overall"]
        cells += [
            pct(o["seq_acc"]),
            pct(o["digit_acc"]),
            f"{o['ece']:.4f}",
            pct(o["accuracy_at_coverage"]["0.95"]),
        ]
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


def read_metrics(folder: Path) -> dict:
    """A metrics.json written by ``write_evaluation``."""
    return json.loads((Path(folder) / "metrics.json").read_text())
