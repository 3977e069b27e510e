"""Levers for the bundled reader, measured on val (selection) and reported on test: each
candidate run (or ensemble) reads the same numbers built from MNIST val digits (50,000-59,999)
and from MNIST test digits: 1-12 digits in the training mix, and 5-digit seed / natural /
touching numbers. Selection uses the val columns only.

    .venv/bin/python benchmarks/bench_levers.py RUN [RUN ...] [--n 5000] [--tta] [--soup]

The last stdout line is one JSON object.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import time
from pathlib import Path

import numpy as np
import torch

from digitseq.core import files
from digitseq.core.constants import FRAME_STRIDE
from digitseq.data import compose, mnist
from digitseq.models import checkpoint, ctc_decode

SETS = {  # name -> (layout, lengths)
    "mix 1-12": ("mix3", (1, 12)),
    "seed 5": ("seed", (5, 5)),
    "natural 5": ("natural", (5, 5)),
    "touching 5": ("touching", (5, 5)),
}


def numbers(pool, labels, n: int, layout: str, span, seed: int) -> tuple[compose.Lines, list]:
    lines = compose.generate(pool, labels, n, np.random.default_rng([seed, 99]), layout,
                             lengths=span, pad_to=32)  # fmt: skip
    return lines, compose.labels_to_strings(lines.digits, lines.lengths)


def frame_logprobs(model, lines: compose.Lines) -> list[np.ndarray]:
    """Each line's (T, 11) frame log-probabilities over its real width, in input order."""
    from digitseq.models.inference import batched_logits

    order = np.argsort(lines.widths, kind="stable")
    out: list = [None] * len(order)
    for i in range(0, len(order), 500):
        idx = order[i : i + 500]
        part = lines.take(idx, 32)
        logp = ctc_decode.log_softmax(batched_logits(model, part.images, batch_size=500).numpy())
        for k, lp, w in zip(idx, logp, part.widths, strict=True):
            out[k] = lp[: -(-int(w) // FRAME_STRIDE)].astype(np.float64)
    return out


def read_sorted(model, lines: compose.Lines) -> list[str]:
    """Greedy readings in input order, batched by similar width (few shapes)."""
    return [ctc_decode.greedy(lp)[0] for lp in frame_logprobs(model, lines)]


def read_string_ensemble(models, lines: compose.Lines) -> list[str]:
    """Ensemble by string probabilities over the members (see ``combine_strings``)."""
    return combine_strings([frame_logprobs(m, lines) for m in models])


def combine_strings(per_member: list[list[np.ndarray]]) -> list[str]:
    """Each member's (a model's, or a view's) greedy reading is a candidate, and the candidate
    with the highest mean probability over the members wins (CTC members trained apart fire
    their spikes at different frames, so averaging frame posteriors fails)."""
    out = []
    for lps in zip(*per_member, strict=True):
        cands = {ctc_decode.greedy(lp)[0] for lp in lps}
        score = {
            c: np.mean([np.exp(ctc_decode.string_logprob(lp, c)) for lp in lps]) for c in cands
        }
        out.append(max(score, key=score.get))
    return out


def tta_views(lines: compose.Lines) -> list[compose.Lines]:
    """Test-time augmentation: the lines as they are, one pixel higher and lower, with
    slightly thicker strokes and slightly blurred (changes the training augmentation covers)."""
    x = lines.images.astype(np.float32)
    up, down = np.zeros_like(x), np.zeros_like(x)
    up[:, :-1], down[:, 1:] = x[:, 1:], x[:, :-1]
    thick = np.maximum(x, 0.6 * np.maximum(np.roll(x, 1, 2), np.roll(x, 1, 1)))
    blur = (x + np.roll(x, 1, 2) + np.roll(x, -1, 2) + np.roll(x, 1, 1) + np.roll(x, -1, 1)) / 5
    return [
        dataclasses.replace(lines, images=np.clip(v, 0, 255).astype(np.uint8))
        for v in (x, up, down, thick, blur)
    ]


def read_tta(model, lines: compose.Lines) -> list[str]:
    return combine_strings([frame_logprobs(model, view) for view in tta_views(lines)])


def average_weights(models: list[torch.nn.Module], weights=None) -> torch.nn.Module:
    """One model whose floating-point weights and buffers are the members' (weighted) mean (a
    "soup": the members must share an architecture and a starting point, e.g. a run and its
    fine-tune). A reader of digits and its fine-tune into a reader of text mix too: the rows
    of the separators, which the digit reader lacks, are the text reader's own."""
    members = [checkpoint.unwrap(m) for m in models]
    w = torch.tensor(weights or [1.0] * len(members), dtype=torch.float32)
    w = w / w.sum()
    states = [m.state_dict() for m in members]
    widest = max(range(len(members)), key=lambda i: sum(v.numel() for v in states[i].values()))
    full = states[widest]

    def grown(s: dict, k: str) -> torch.Tensor:  # rows a member lacks: the widest member's
        return torch.cat([s[k], full[k][len(s[k]) :]]).float() if s[k].ndim else s[k].float()

    soup = copy.deepcopy(members[widest])
    soup.load_state_dict({
        k: torch.einsum("m,m...->...", w, torch.stack([grown(s, k) for s in states]))
        if v.is_floating_point() else v
        for k, v in full.items()
    })  # fmt: skip
    return soup.eval()


def score(read: list[str], truth: list[str]) -> dict:
    right, errors, chars = ctc_decode.score(read, truth)
    return {"seq_acc": round(float(right.mean()), 5), "cer": round(errors / chars, 5)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--n", type=int, default=5000, help="numbers per set and split")
    ap.add_argument(
        "--string-ensemble", action="store_true", help="also: the runs as one string-level ensemble"
    )
    ap.add_argument("--tta", action="store_true", help="also: each run with test-time augmentation")
    ap.add_argument(
        "--soup", action="store_true", help="also: the runs' weights averaged (one architecture)"
    )
    ap.add_argument("--soup-out", type=Path, help="with --soup: also save it as a model folder")
    ap.add_argument("--soup-only", action="store_true", help="with --soup: not the runs alone")
    ap.add_argument(
        "--soup-weights", help="with --soup: one weight per run, comma-separated (default: equal)"
    )
    args = ap.parse_args()
    torch.set_num_threads(2)
    m = mnist.load()
    pools = {"val": mnist.split_pool(m, "val")[:2], "test": (m.test_images, m.test_labels)}
    data = {
        (split, name): numbers(*pools[split], args.n, layout, span, seed=1 + (split == "test"))
        for split in pools
        for name, (layout, span) in SETS.items()
    }
    results = []
    loaded = [checkpoint.load_model(run) for run in args.runs]  # (model, config), read once
    models = [model for model, _ in loaded]

    def measure(row: dict, read) -> None:
        """Read every set with ``read(lines) -> strings``, score, print and keep the row."""
        t0 = time.perf_counter()
        for (split, name), (lines, truth) in data.items():
            row[f"{split} {name}"] = score(read(lines), truth)
        row["seconds"] = round(time.perf_counter() - t0, 1)
        results.append(row)
        cols = " | ".join(f"{k} {v['seq_acc']:.2%}" for k, v in row.items() if isinstance(v, dict))
        print(f"{row['run']}: {cols}", flush=True)

    if args.string_ensemble:
        name = "string ensemble of " + ", ".join(map(str, args.runs))
        measure(
            {"run": name, "arch": "ensemble"}, lambda lines: read_string_ensemble(models, lines)
        )
    if args.soup:
        weights = [float(v) for v in args.soup_weights.split(",")] if args.soup_weights else None
        if weights is not None and len(weights) != len(args.runs):
            raise SystemExit("--soup-weights: one weight per run")
        soup = average_weights(models, weights)
        name = f"weights averaged ({args.soup_weights or 'equal'}): " + ", ".join(
            map(str, args.runs)
        )
        measure({"run": name, "arch": "soup"}, lambda lines: read_sorted(soup, lines))
        if args.soup_out:  # the weights + the last run's config.json (what is its own dropped)
            cfg = json.loads(checkpoint.resolve(args.runs[-1])[1].read_text())
            for own in ("calibration", "test_metrics", "model_card"):
                cfg.pop(own, None)
            args.soup_out.mkdir(parents=True, exist_ok=True)
            checkpoint.save_weights(soup, args.soup_out / "best.pth")
            files.write_json(
                args.soup_out / "config.json", {**cfg, "soup_of": list(map(str, args.runs))}
            )
    for run, (model, cfg) in (
        [] if args.soup and args.soup_only else zip(args.runs, loaded, strict=True)
    ):
        params = sum(p.numel() for p in model.parameters())
        row = {"run": str(run), "arch": cfg["model"]["arch"], "parameters": params}
        measure(row, lambda lines, model=model: read_sorted(model, lines))
        if args.tta:
            tta = {**row, "run": f"{run} + TTA (5 views, string probabilities)"}
            measure(tta, lambda lines, model=model: read_tta(model, lines))
    print(json.dumps(results))


if __name__ == "__main__":
    main()
