"""Evaluation on a stored split: sequential predictions and metrics overall and per layout.
``summary`` writes them out (``digitseq evaluate``: ``metrics.json``, PNG plots, ``report.md``).

Metrics are plain dicts of numbers and lists (JSON as is); the per-sample arrays stay in the
``Evaluation`` object for the plots.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from digitseq.core import paths
from digitseq.core.constants import IMG_H, IMG_W, N_DIGITS
from digitseq.core.errors import DigitseqError
from digitseq.data import mnist, storage
from digitseq.data.layouts import LAYOUT_IDS
from digitseq.models import checkpoint, decoders
from digitseq.models.decoders import sequence_confidence

ECE_BINS = 15
COVERAGES = tuple(round(1.0 - 0.01 * i, 2) for i in range(51))  # 1.00, 0.99, ..., 0.50
REPORTED_COVERAGES = (0.99, 0.95, 0.90)
N_WORST = 24


@dataclass
class Evaluation:
    """One model evaluated on one split: what the report, the plots and the notebook need."""

    name: str
    info: dict  # arch, hparams, parameters, weights
    dataset: Path
    split: storage.Split
    probs: np.ndarray  # (N, 5, 10) float32 softmax
    labels: np.ndarray  # (N, 5) uint8
    layouts: np.ndarray  # (N,) uint8
    metrics: dict
    seconds: float
    model: object = None  # the torch model, for the architecture diagram

    @property
    def confidence(self) -> np.ndarray:  # (N,)
        return sequence_confidence(self.probs)

    @property
    def correct(self) -> np.ndarray:  # (N,) bool
        return (self.probs.argmax(-1) == self.labels).all(1)


# --- predictions --------------------------------------------------------------------------------


def predict_split(
    model,
    split: storage.Split,
    batch_size: int = 512,
    limit: int | None = None,
    device: str = "cpu",
    progress: bool = False,
):
    """Softmax probabilities (N, 5, 10) float32 of the first ``limit`` sequences, in order,
    with their labels (N, 5) and layouts (N,)."""
    import torch

    from digitseq.core.progress import progress_bar

    n = len(split) if limit is None else min(limit, len(split))
    probs = np.empty((n, N_DIGITS, 10), np.float32)
    model = model.eval().to(device)
    with (
        torch.no_grad(),
        progress_bar(total=n, unit="seq", desc="evaluate", disable=not progress) as bar,
    ):
        for start in range(0, n, batch_size):
            stop = min(start + batch_size, n)
            x = torch.from_numpy(np.asarray(split.images[start:stop], np.float32) / 255.0)
            logits = model(x.unsqueeze(1).to(device)).float().cpu().numpy()  # (B, 5, 10) or
            decoder = decoders.for_outputs(logits)  # a line reader's (B, 35, 11) frame logits
            if decoder is None:
                raise DigitseqError(f"the model returned shape {logits.shape}, not (N, 5, 10)")
            probs[start:stop] = decoder.cell_probs(logits)
            bar.update(stop - start)
    return probs, np.asarray(split.labels[:n]), np.asarray(split.layouts[:n])


# --- metrics ------------------------------------------------------------------------------------


def compute_metrics(
    probs: np.ndarray,
    labels: np.ndarray,
    layouts: np.ndarray | None = None,
    sources: np.ndarray | None = None,
) -> dict:
    """{"n", "overall": group metrics, "layouts": {"seed": ..., "natural": ...}} (layouts that
    occur only); indices in the worst-error lists are row numbers in the given arrays, and
    with ``sources`` (N, 5) each error names the MNIST indices of its misread digits."""
    probs, labels = np.asarray(probs), np.asarray(labels).astype(np.int64)
    if probs.ndim != 3 or probs.shape[1:] != (N_DIGITS, 10) or len(probs) != len(labels):
        raise ValueError(f"probs must be (N, 5, 10) matching labels (N, 5); got {probs.shape}")
    if len(labels) == 0:
        raise ValueError("nothing to evaluate: no sequences")
    index = np.arange(len(labels))
    src = np.full(labels.shape, -1) if sources is None else np.asarray(sources)
    out = {"n": len(labels), "overall": group_metrics(probs, labels, index, src), "layouts": {}}
    if layouts is not None:
        layouts = np.asarray(layouts)
        for name, lid in LAYOUT_IDS.items():
            mask = layouts == lid
            if mask.any():
                out["layouts"][name] = group_metrics(
                    probs[mask], labels[mask], index[mask], src[mask]
                )
    return out


def group_metrics(probs: np.ndarray, labels: np.ndarray, index: np.ndarray, sources) -> dict:
    pred = probs.argmax(-1)  # (N, 5)
    hit = pred == labels  # (N, 5)
    seq_hit = hit.all(1)  # (N,)
    conf = sequence_confidence(probs)
    n = len(labels)
    per_pos = [confusion(labels[:, p], pred[:, p]) for p in range(N_DIGITS)]
    cm = np.sum(per_pos, axis=0)
    class_count = cm.sum(1)
    ece, bins = calibration(conf, seq_hit)
    coverage = coverage_curve(conf, seq_hit)
    return {
        "n": n,
        "seq_acc": float(seq_hit.mean()),
        "digit_acc": float(hit.mean()),
        "cer": float((~hit).sum() / hit.size),  # fixed length: substitutions / characters
        "position_acc": hit.mean(0).tolist(),
        "class_acc": [float(cm[d, d] / c) if c else None for d, c in enumerate(class_count)],
        "class_count": class_count.tolist(),
        "confusion": cm.tolist(),  # rows: true digit, columns: predicted digit
        "confusion_per_position": [c.tolist() for c in per_pos],
        "mean_confidence": float(conf.mean()),
        "ece": ece,
        "reliability": bins,
        "coverage": coverage,
        "accuracy_at_coverage": {
            str(c): coverage["accuracy"][COVERAGES.index(c)] for c in REPORTED_COVERAGES
        },
        "worst_errors": worst_errors(pred, labels, conf, seq_hit, index, sources),
    }


def confusion(true: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """10x10 counts, rows = true class, columns = predicted class."""
    return np.bincount(true * 10 + pred, minlength=100).reshape(10, 10)


def calibration(conf: np.ndarray, correct: np.ndarray, n_bins: int = ECE_BINS):
    """Expected calibration error over equal-width bins (lo, hi], and the bins themselves."""
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    which = np.clip(np.searchsorted(edges, conf, side="left") - 1, 0, n_bins - 1)
    ece, bins = 0.0, []
    for b in range(n_bins):
        mask = which == b
        k = int(mask.sum())
        row = {
            "lo": float(edges[b]),
            "hi": float(edges[b + 1]),
            "count": k,
            "confidence": None,
            "accuracy": None,
        }
        if k:
            row["confidence"] = float(conf[mask].mean())
            row["accuracy"] = float(correct[mask].mean())
            ece += k / len(conf) * abs(row["accuracy"] - row["confidence"])
        bins.append(row)
    return float(ece), bins


def coverage_curve(conf: np.ndarray, correct: np.ndarray) -> dict:
    """Accuracy of the most confident fraction of predictions (the rest rejected), per coverage,
    with the confidence threshold that keeps that fraction."""
    order = np.argsort(-conf, kind="stable")
    cum = np.cumsum(correct[order])
    n = len(conf)
    acc, thr = [], []
    for c in COVERAGES:
        k = max(1, math.ceil(c * n - 1e-9))
        acc.append(float(cum[k - 1] / k))
        thr.append(float(conf[order[k - 1]]))
    return {"coverage": list(COVERAGES), "accuracy": acc, "threshold": thr}


def worst_errors(pred, labels, conf, seq_hit, index, sources, k: int = N_WORST) -> list[dict]:
    """The most confident wrong readings first, with the MNIST indices of the misread digits
    (``mnist``; those whose source is unknown, -1, left out)."""
    wrong = np.flatnonzero(~seq_hit)
    wrong = wrong[np.argsort(-conf[wrong], kind="stable")][:k]
    errors = []
    for i in wrong:
        positions = np.flatnonzero(pred[i] != labels[i])
        errors.append({
            "index": int(index[i]),
            "true": "".join(map(str, labels[i])),
            "pred": "".join(map(str, pred[i])),
            "confidence": float(conf[i]),
            "wrong_positions": positions.tolist(),
            "mnist": [int(v) for v in sources[i, positions] if v >= 0],
        })  # fmt: skip
    return errors


# --- running a model on a dataset ----------------------------------------------------------------


def mnist_file(split_name: str) -> str:
    """Which MNIST file a split's ``sources`` index: "train" (train, val) or "test"."""
    return mnist.SPLIT_SOURCES.get(split_name, ("test",))[0]


def mnist_ids(error: dict) -> str:
    """An error's misread MNIST digits as text ("-" where unknown)."""
    return " ".join(map(str, error.get("mnist", []))) or "-"


def open_split(data: Path | None, split: str = "test") -> storage.Split:
    """The split to evaluate on, with clear errors for a missing or incompatible dataset."""
    folder = Path(data) if data else paths.default_dataset_dir()
    if not folder.exists():
        raise DigitseqError(
            f"no dataset at {folder}: create it with `digitseq generate {folder}` (or `make demo`)"
        )
    if not folder.is_dir():
        raise DigitseqError(f"{folder} is not a dataset folder")
    manifest = storage.read_manifest(folder)
    shape = manifest.get("image_shape")
    if manifest.get("version") != storage.FORMAT_VERSION or shape != [IMG_H, IMG_W]:
        raise DigitseqError(
            f"{folder} is an incompatible dataset (format version {manifest.get('version')}, "
            f"images {shape}); this digitseq reads version {storage.FORMAT_VERSION} with "
            f"{IMG_H}x{IMG_W} images: regenerate it with `digitseq generate`"
        )
    counts = manifest.get("counts", {})
    if not counts.get(split):
        have = ", ".join(s for s in counts if counts[s]) or "none"
        raise DigitseqError(f"{folder} has no {split!r} split (it has: {have})")
    return storage.load_split(folder, split)


def model_summary(model, cfg: dict) -> dict:
    """Architecture, hyper-parameters, parameter count and weights file of an evaluated model."""
    from digitseq.models.registry import count_parameters

    return {
        "arch": cfg["model"]["arch"],
        "hparams": cfg["model"].get("hparams", {}),
        "parameters": count_parameters(model),
        "weights": cfg.get("weights_path"),
    }


def model_name(cfg: dict) -> str:
    weights = Path(cfg["weights_path"])
    if weights.name in ("best.pth", "weights.pth"):
        return weights.parent.name
    return f"{weights.parent.name}-{weights.stem}"


def evaluate_model(
    model,
    cfg: dict,
    split: storage.Split,
    limit: int | None = None,
    batch_size: int = 512,
    progress: bool = False,
) -> Evaluation:
    """Run ``model`` over ``split`` (in order, the first ``limit``) and compute its metrics."""
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    t0 = time.perf_counter()
    probs, labels, layouts = predict_split(model, split, batch_size, limit, device, progress)
    seconds = time.perf_counter() - t0
    model.cpu()
    return Evaluation(
        name=model_name(cfg),
        info=model_summary(model, cfg),
        dataset=split.folder.parent,
        split=split,
        probs=probs,
        labels=labels,
        layouts=layouts,
        metrics=compute_metrics(probs, labels, layouts, split.sources[: len(labels)]),
        seconds=seconds,
        model=model,
    )


def evaluate_run(
    path: str | Path | None = None,
    data: Path | None = None,
    split: str = "test",
    limit: int | None = None,
    batch_size: int = 512,
) -> Evaluation:
    """Load a run folder / weights file (None = the bundled model) and evaluate it."""
    model, cfg = checkpoint.load_model(path)
    return evaluate_model(model, cfg, open_split(data, split), limit, batch_size)
