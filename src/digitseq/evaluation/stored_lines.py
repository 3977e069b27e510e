"""A line (CTC) reader on a stored split of numbers of any length (dataset format version 2):
whole-number accuracy, CER, wrong-length rate and ECE per length (``lengths.length_row``), per
layout and overall, the most confident errors; ``digitseq evaluate`` writes them as
``metrics.json``, ``report.md`` and ``length_accuracy.png``.

5-digit splits (format version 1) keep the fixed-length evaluation of ``metrics``, which reads
CTC models through their decoder's ``cell_probs``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from digitseq.core import files, paths
from digitseq.core.errors import DigitseqError
from digitseq.data import storage
from digitseq.data.layouts import LAYOUT_IDS
from digitseq.evaluation.lengths import length_figure, length_row, read_by_width, table_markdown
from digitseq.evaluation.metrics import (
    mnist_file,
    mnist_ids,
    model_name,
    model_summary,
    open_split,
)
from digitseq.models import decoders

PAD_TO = 32  # batches are cropped to their widest number rounded up to this (few shapes)
N_WORST = 24


@dataclass
class LineEvaluation:
    """One line reader on one variable-length split."""

    name: str
    info: dict
    dataset: Path
    split: storage.Split
    read: list[str]  # (N,) what the model read
    truth: list[str]  # (N,) the stored numbers
    confidence: np.ndarray  # (N,) string probability
    metrics: dict
    seconds: float


def open_any_split(data: Path | None, split: str = "test") -> storage.Split:
    """A stored split of either format: 5-digit splits through ``metrics.open_split`` (same
    checks and errors), numbers of any length through ``storage.load_split``."""
    folder = Path(data) if data else paths.default_dataset_dir()
    if folder.is_dir() and (folder / "manifest.json").is_file():
        manifest = storage.read_manifest(folder)
        if manifest.get("version") == storage.LINES_VERSION:
            counts = manifest.get("counts", {})
            if not counts.get(split):
                have = ", ".join(s for s in counts if counts[s]) or "none"
                raise DigitseqError(f"{folder} has no {split!r} split (it has: {have})")
            return storage.load_split(folder, split)
    return open_split(data, split)


def is_line_reader(cfg: dict) -> bool:
    """Whether a run's model reads whole lines (numbers of any length)."""
    return decoders.for_config(cfg.get("model", {})).line


def read_stored(model, split: storage.Split, n: int, batch_size: int = 256, progress=None):
    """Read the first n numbers of a split (``lengths.read_by_width``: batches of similar
    width, each cut to its widest rounded up to PAD_TO). Returns (readings (N,) str,
    confidences (N,))."""
    widths = np.asarray(split.widths[:n])
    return read_by_width(
        model, widths, lambda rows: split.cut_images(rows, PAD_TO), batch_size, progress
    )


def line_metrics(read, truth, conf, lengths, layouts, sources=None) -> dict:
    """{"n", "overall", "lengths": [row per length], "layouts": {name: row}, "worst_errors"};
    with ``sources`` (N, Lmax) each error names the MNIST indices of its misread digits (of all
    its digits when the reading has another length)."""
    lengths, layouts = np.asarray(lengths), np.asarray(layouts)
    read_a, truth_a = np.array(read, object), np.array(truth, object)

    def row(mask, length, layout):
        return length_row(list(read_a[mask]), list(truth_a[mask]), conf[mask], length, layout)

    everything = np.ones(len(truth), bool)
    names = {v: k for k, v in LAYOUT_IDS.items()}
    present = "+".join(names[int(v)] for v in np.unique(layouts))
    wrong = np.flatnonzero(read_a != truth_a)
    wrong = wrong[np.argsort(-conf[wrong], kind="stable")][:N_WORST]
    return {
        "n": len(truth),
        "overall": row(everything, "all", present),
        "lengths": [row(lengths == k, int(k), present) for k in np.unique(lengths)],
        "layouts": {
            names[int(v)]: row(layouts == v, "all", names[int(v)]) for v in np.unique(layouts)
        },  # fmt: skip
        "worst_errors": [
            {
                "index": int(i),
                "true": truth[i],
                "pred": read[i],
                "confidence": float(conf[i]),
                "mnist": misread_sources(truth[i], read[i], sources, i),
            }
            for i in wrong
        ],  # fmt: skip
    }


def misread_sources(truth: str, read: str, sources, i: int) -> list[int]:
    """MNIST indices of the digits misread in number ``i``: those at the positions that differ,
    or all of its digits when the reading has another length ([] without sources)."""
    if sources is None:
        return []
    src = [int(v) for v in sources[i][: len(truth)]]  # a number's own digits: all known
    if len(read) != len(truth):
        return src
    return [v for v, t, r in zip(src, truth, read, strict=True) if t != r]


def evaluate_lines(
    model,
    cfg: dict,
    split: storage.Split,
    limit: int | None = None,
    batch_size: int = 256,
    progress: bool = False,
) -> LineEvaluation:
    """Read the first ``limit`` numbers of ``split`` with a line reader, greedy decoding (the
    model is not told the lengths), and compute the metrics per length."""
    import torch

    from digitseq.core.progress import progress_bar

    if not is_line_reader(cfg):
        raise DigitseqError(
            f"{model_name(cfg)} reads 5-digit numbers only; {split.folder.parent} holds numbers of "
            f"{int(np.min(split.lengths))}-{int(np.max(split.lengths))} digits: evaluate a CTC "
            "line reader on it, or generate a 5-digit dataset (--lengths 5)"
        )
    n = len(split) if limit is None else min(limit, len(split))
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = model.eval().to(device)
    t0 = time.perf_counter()
    with progress_bar(total=n, unit="seq", desc="evaluate", disable=not progress) as bar:
        read, conf = read_stored(model, split, n, batch_size, bar)
    seconds = time.perf_counter() - t0
    model.cpu()
    truth = split.strings(0, n)
    return LineEvaluation(
        name=model_name(cfg),
        info=model_summary(model, cfg),
        dataset=split.folder.parent,
        split=split,
        read=read,
        truth=truth,
        confidence=conf,
        metrics=line_metrics(
            read, truth, conf, split.lengths[:n], split.layouts[:n], split.sources[:n]
        ),
        seconds=seconds,
    )


def summary_text(ev: LineEvaluation) -> str:
    """The per-length table printed by ``digitseq evaluate``."""
    m = ev.metrics
    out = [
        f"{ev.name} ({ev.info['arch']}) on {ev.split.name}: {m['n']:,} numbers",
        f"{'digits':<8}{'n':>8}{'whole':>10}{'CER':>8}{'wrong len':>11}{'ECE':>8}",
    ]
    named = [(str(r["length"]), r) for r in m["lengths"]]
    named += [(name, r) for name, r in m["layouts"].items()] + [("all", m["overall"])]
    for name, r in named:
        out.append(
            f"{name:<8}{r['n']:>8,}{r['seq_acc']:>10.2%}{r['cer']:>8.2%}"
            f"{r['wrong_length']:>11.2%}{r['ece']:>8.4f}"
        )
    return "\n".join(out)


def write_line_evaluation(ev: LineEvaluation, folder: Path) -> None:
    """metrics.json, length_accuracy.png and report.md into ``folder``."""
    from digitseq.evaluation import plots
    from digitseq.evaluation.summary import make_dir

    make_dir(folder)
    m = ev.metrics
    doc = {
        "name": ev.name,
        "model": ev.info,
        "data": {"dataset": str(ev.dataset), "split": ev.split.name, "n": m["n"]},
        "seconds": round(ev.seconds, 3),
        **m,
    }
    files.write_json(folder / "metrics.json", doc)
    plots.save(length_figure(m["lengths"], "Whole-number accuracy per length"),
               folder / "length_accuracy.png")  # fmt: skip
    layouts = [{**r, "length": name} for name, r in m["layouts"].items()] + [m["overall"]]
    errors = "".join(
        f"| {e['index']} | {e['true']} | {e['pred']} | {e['confidence']:.4f} | {mnist_ids(e)} |\n"
        for e in m["worst_errors"]
    )
    text = [
        f"# Evaluation of {ev.name}",
        "",
        f"Model `{ev.name}` ({ev.info['arch']}, {ev.info['parameters']:,} parameters) on "
        f"`{ev.dataset}` split `{ev.split.name}`: {m['n']:,} numbers, {ev.seconds:.1f} s; "
        "greedy decoding, not told the lengths.",
        "",
        "## Per length",
        "",
        table_markdown(m["lengths"]),
        "## Per layout and overall",
        "",
        table_markdown(layouts),
        "## Most confident errors",
        "",
        f"| index | true | read | confidence | MNIST {mnist_file(ev.split.name)} index |\n"
        "|---:|---:|---:|---:|---:|\n" + errors,
        "![accuracy per length](length_accuracy.png)",
        "",
    ]
    files.atomic_write_text(folder / "report.md", "\n".join(text))
