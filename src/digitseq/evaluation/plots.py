"""Figures for the evaluation, the report and the notebook. Every function returns a
``matplotlib.figure.Figure`` built without pyplot (no global state, no window, any backend);
inputs are plain arrays and the metric dicts of ``evaluation.compute_metrics``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure
from matplotlib.patches import FancyBboxPatch, Rectangle
from matplotlib.ticker import MaxNLocator

from digitseq.core.constants import N_DIGITS
from digitseq.data.layouts import LAYOUT_IDS

COLORS = {"all": "#444444", "seed": "#1f77b4", "natural": "#ff7f0e"}
LAYOUT_NAMES = {v: k for k, v in LAYOUT_IDS.items()}


def save(fig: Figure, path: Path, dpi: int = 110) -> Path:
    fig.savefig(path, dpi=dpi, bbox_inches="tight")
    return Path(path)


def groups(metrics: dict) -> list[tuple[str, dict]]:
    return [("all", metrics["overall"]), *metrics["layouts"].items()]


# --- evaluation ---------------------------------------------------------------------------------


def draw_confusion(ax, cm, title: str) -> None:
    cm = np.asarray(cm)
    off = cm.astype(float)
    np.fill_diagonal(off, 0)  # the diagonal would swamp the colour scale: colour errors only
    vmax = max(off.max(), 1.0)
    norm = LogNorm(0.8, vmax)
    ax.imshow(np.where(off > 0, off, np.nan), cmap="Reds", norm=norm)
    for d in range(10):
        ax.add_patch(Rectangle((d - 0.5, d - 0.5), 1, 1, fc="#e3f2e3", ec="none"))
    for i in range(10):
        for j in range(10):
            if cm[i, j]:
                dark = i != j and norm(cm[i, j]) > 0.6
                color = "white" if dark else ("#1a5e1a" if i == j else "black")
                ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=6, color=color)
    ax.set_xticks(range(10))
    ax.set_yticks(range(10))
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=9)


def confusion_matrix(cm, title: str = "") -> Figure:
    """10x10 digit confusion counts (rows true); errors coloured on a log scale."""
    fig = Figure(figsize=(5.2, 4.8))
    draw_confusion(fig.add_subplot(), cm, title or "Digit confusion")
    return fig


def position_confusions(cms) -> Figure:
    """One confusion matrix per digit position."""
    fig = Figure(figsize=(4 * N_DIGITS, 4))
    for p, cm in enumerate(cms):
        draw_confusion(fig.add_subplot(1, N_DIGITS, p + 1), cm, f"position {p + 1}")
    return fig


def position_accuracy(metrics: dict) -> Figure:
    """Per-position digit accuracy, one bar per layout, with the whole-number accuracy."""
    fig = Figure(figsize=(7, 3.8))
    ax = fig.add_subplot()
    gs = groups(metrics)
    width = 0.8 / len(gs)
    lows = []
    for k, (name, g) in enumerate(gs):
        x = np.arange(N_DIGITS) + (k - (len(gs) - 1) / 2) * width
        acc = 100 * np.asarray(g["position_acc"])
        lows.append(acc.min())
        ax.bar(
            x,
            acc,
            width,
            color=COLORS.get(name),
            label=f"{name} (number {100 * g['seq_acc']:.2f}%)",
        )
    ax.set_xticks(range(N_DIGITS), [f"digit {p + 1}" for p in range(N_DIGITS)])
    ax.set_ylim(max(0.0, min(lows) - 2.0), 100.0)
    ax.set_ylabel("accuracy (%)")
    ax.set_title("Accuracy per position")
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=len(gs))
    return fig


def reliability_diagram(metrics: dict) -> Figure:
    """Accuracy against sequence confidence per bin; the diagonal is perfect calibration."""
    fig = Figure(figsize=(5, 4.6))
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1], ls="--", color="#999999", lw=1)
    for name, g in groups(metrics):
        pts = [(b["confidence"], b["accuracy"], b["count"]) for b in g["reliability"] if b["count"]]
        c, a, k = map(np.asarray, zip(*pts, strict=True))
        ax.plot(c, a, "-o", color=COLORS.get(name), ms=3, label=f"{name} (ECE {g['ece']:.4f})")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("sequence confidence")
    ax.set_ylabel("whole-number accuracy")
    ax.set_title("Reliability")
    ax.legend(fontsize=8)
    return fig


def coverage_curve(metrics: dict) -> Figure:
    """Whole-number accuracy when the least confident readings are rejected."""
    fig = Figure(figsize=(5.5, 4))
    ax = fig.add_subplot()
    lows = []
    for name, g in groups(metrics):
        cov = 100 * np.asarray(g["coverage"]["coverage"])
        acc = 100 * np.asarray(g["coverage"]["accuracy"])
        lows.append(acc.min())
        ax.plot(cov, acc, color=COLORS.get(name), label=name)
    ax.invert_xaxis()
    ax.set_ylim(max(0.0, min(lows) - 1.0), 100.2)
    ax.set_xlabel("coverage (% of numbers answered)")
    ax.set_ylabel("accuracy of the answered (%)")
    ax.set_title("Accuracy vs coverage")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def confidence_histogram(confidence, correct) -> Figure:
    """Distribution of the sequence confidence for right and wrong readings (log counts)."""
    confidence, correct = np.asarray(confidence), np.asarray(correct, bool)
    fig = Figure(figsize=(6, 3.6))
    ax = fig.add_subplot()
    bins = np.linspace(0, 1, 41)
    ax.hist(
        confidence[correct], bins, color="#2ca02c", alpha=0.7, label=f"right ({correct.sum():,})"
    )
    ax.hist(
        confidence[~correct],
        bins,
        color="#d62728",
        alpha=0.7,
        label=f"wrong ({(~correct).sum():,})",
    )
    ax.set_yscale("log")
    ax.set_xlabel("sequence confidence")
    ax.set_ylabel("numbers")
    ax.set_title("Confidence of right and wrong readings")
    ax.legend(fontsize=8)
    return fig


def error_gallery(
    images, errors: list[dict], cols: int = 3, title: str = "", mnist_file: str = "test"
) -> Figure:
    """The given errors (dicts with index, true, pred, confidence and the MNIST indices of
    the misread digits, ``mnist``, indexing MNIST's ``mnist_file`` file) with their images."""
    if not errors:
        return message_figure("no errors to show")
    rows = -(-len(errors) // cols)
    fig = Figure(figsize=(3.4 * cols, 1.3 * rows + 0.4))
    for k, e in enumerate(errors):
        ax = fig.add_subplot(rows, cols, k + 1)
        ax.imshow(np.asarray(images[e["index"]]), cmap="gray", vmin=0, vmax=255)
        ids = " ".join(map(str, e.get("mnist", [])))
        src = f"\nMNIST {mnist_file} {ids}" if ids else ""
        ax.set_title(
            f"#{e['index']} true {e['true']} read {e['pred']} ({e['confidence']:.2f}){src}",
            fontsize=7,
            color="#b22222",
        )
        ax.axis("off")
    fig.suptitle(title or "Most confident errors", fontsize=10)
    return fig


# --- runs and data ------------------------------------------------------------------------------


def training_curves(history: list[dict] | None) -> Figure:
    """Loss, digit and whole-number accuracy (train and val), learning rate, per epoch."""
    if not history:
        return message_figure("no history.json in this run")
    epochs = [h.get("epoch", i + 1) for i, h in enumerate(history)]
    panels = [
        ("loss", "loss", False),
        ("digit_acc", "digit accuracy (%)", True),
        ("seq_acc", "number accuracy (%)", True),
    ]
    fig = Figure(figsize=(14, 3.4))
    for k, (key, label, percent) in enumerate(panels):
        ax = fig.add_subplot(1, 4, k + 1)
        for part, style in (("train", "-"), ("val", "-o")):
            ys = [h.get(f"{part}_{key}") for h in history]
            if any(y is not None for y in ys):
                ys = [np.nan if y is None else (100 * y if percent else y) for y in ys]
                ax.plot(epochs, ys, style, ms=3, label=part)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(label, fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    ax = fig.add_subplot(1, 4, 4)
    ax.plot(epochs, [h.get("lr", np.nan) for h in history], color="#9467bd")
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_title("learning rate", fontsize=9)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def dataset_samples(images, labels, layouts, per_layout: int = 6) -> Figure:
    """The first few sequences of each layout with their labels."""
    layouts = np.asarray(layouts)
    present = [(lid, name) for lid, name in LAYOUT_NAMES.items() if (layouts == lid).any()]
    if not present:
        return message_figure("no samples")
    fig = Figure(figsize=(3.4 * len(present), 0.9 * per_layout + 0.5))
    for c, (lid, name) in enumerate(present):
        idx = np.flatnonzero(layouts == lid)[:per_layout]
        for r, i in enumerate(idx):
            ax = fig.add_subplot(per_layout, len(present), r * len(present) + c + 1)
            ax.imshow(np.asarray(images[i]), cmap="gray", vmin=0, vmax=255)
            ax.set_title(f"{name}: {''.join(map(str, labels[i]))}", fontsize=7)
            ax.axis("off")
    fig.suptitle("Dataset samples per layout", fontsize=10)
    return fig


def message_figure(text: str) -> Figure:
    fig = Figure(figsize=(5, 1.2))
    ax = fig.add_subplot()
    ax.text(0.5, 0.5, text, ha="center", va="center", fontsize=11, color="#666666")
    ax.axis("off")
    return fig


# --- architecture -------------------------------------------------------------------------------

MERGED = ("BatchNorm", "ReLU", "Dropout", "GELU", "SiLU")  # folded into the box before them


def describe_module(m) -> str:
    kind = type(m).__name__
    if kind == "Conv2d":
        k = "×".join(map(str, m.kernel_size))
        return f"Conv {k}, {m.in_channels}→{m.out_channels}"
    if kind == "Linear":
        return f"Linear {m.in_features}→{m.out_features}"
    if kind == "MaxPool2d":
        return f"MaxPool {m.kernel_size}"
    if kind.startswith("BatchNorm"):
        return "BatchNorm"
    if kind.startswith("Dropout"):
        return f"Dropout {m.p:g}"
    return kind


def layer_table(model, input_shape: tuple = (1, 1, 28, 140)) -> list[dict]:
    """Each leaf layer in call order: name, description, output shape and parameter count,
    found by running one forward pass with hooks on the model itself."""
    import torch

    rows, hooks = [], []

    def record(name):
        def hook(module, inputs, output):
            if isinstance(output, torch.Tensor):
                rows.append(
                    {
                        "name": name,
                        "layer": describe_module(module),
                        "shape": list(output.shape),
                        "params": sum(p.numel() for p in module.parameters(False)),
                    }
                )

        return hook

    for name, m in model.named_modules():
        if not list(m.children()):
            hooks.append(m.register_forward_hook(record(name)))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model(torch.zeros(input_shape))
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    rows.append({"name": "output", "layer": "logits", "shape": list(out.shape), "params": 0})
    return rows


def boxes(rows: list[dict], batch: int) -> list[dict]:
    """Fold BatchNorm/ReLU/Dropout into the layer before them: one box per real step."""
    out: list[dict] = []
    for r in rows:
        if out and r["layer"].startswith(MERGED) and r["name"] != "output":
            out[-1] = {
                **out[-1],
                "layer": f"{out[-1]['layer']} + {r['layer']}",
                "shape": r["shape"],
                "params": out[-1]["params"] + r["params"],
            }
        else:
            out.append(dict(r))
    for b in out:
        s = b["shape"]
        dims = "×".join(map(str, s[1:]))
        b["shape_text"] = dims if s[0] == batch else f"{s[0] // batch}× {dims}"
    return out


def architecture_diagram(model, input_shape: tuple = (1, 1, 28, 140), title: str = "") -> Figure:
    """A box per layer (from the model's own forward pass) with its output shape and size."""
    bs = [{"layer": "input image", "shape_text": "×".join(map(str, input_shape[1:])), "params": 0}]
    bs += boxes(layer_table(model, input_shape), input_shape[0])
    n = len(bs)
    fig = Figure(figsize=(7.5, 0.48 * n + 0.9))
    ax = fig.add_subplot()
    ax.set_xlim(0, 10)
    ax.set_ylim(-0.7, n - 0.3)
    ax.axis("off")
    for k, b in enumerate(bs):
        y = n - 1 - k
        color = "#dbe9f6" if b["params"] else "#eeeeee"
        ax.add_patch(
            FancyBboxPatch(
                (0.2, y - 0.3), 5.6, 0.6, boxstyle="round,pad=0.02", fc=color, ec="#4a6fa5", lw=0.8
            )
        )
        ax.text(3.0, y, b["layer"], ha="center", va="center", fontsize=8)
        ax.text(6.1, y, b["shape_text"], ha="left", va="center", fontsize=8, family="monospace")
        if b["params"]:
            ax.text(9.9, y, f"{b['params']:,}", ha="right", va="center", fontsize=7, color="#555")
        if k:
            ax.annotate(
                "",
                (3.0, y + 0.3),
                (3.0, y + 0.7),
                arrowprops={"arrowstyle": "->", "color": "#4a6fa5", "lw": 0.8},
            )
    total = sum(p.numel() for p in model.parameters())
    ax.set_title(
        title or f"{type(model).__name__}: {total:,} parameters (output shape, parameters)",
        fontsize=10,
    )
    return fig
