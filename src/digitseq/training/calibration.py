"""Temperature scaling: the single T that makes softmax(logits / T) calibrated on val, fitted
after training and stored in the run's config.json (``checkpoint.load_model`` applies it).
For a CTC reader the NLL is that of the true string (the CTC loss), so the probability of a
whole reading, computed from the scaled frame posteriors, is what gets calibrated."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from digitseq.core import files
from digitseq.models import checkpoint, registry
from digitseq.models.inference import batched_logits


@torch.no_grad()
def fit_temperature(model, batches: list[tuple], head: registry.Head, dev) -> dict:
    """The T minimizing the val NLL of logits / T (golden-section search; NLL is unimodal in T)."""
    logits = [batched_logits(model, b[0], dev, batch_size=len(b[0])) for b in batches]

    def nll(t: float) -> float:
        total = sum(
            head.loss(z / t, *b[1:]).item() * len(z) for z, b in zip(logits, batches, strict=True)
        )
        return total / sum(len(z) for z in logits)

    lo, hi = 0.2, 5.0
    g = (5**0.5 - 1) / 2
    for _ in range(30):
        a, b = hi - g * (hi - lo), lo + g * (hi - lo)
        lo, hi = (lo, b) if nll(a) < nll(b) else (a, hi)
    t = (lo + hi) / 2
    return {
        "temperature": round(t, 4),
        "val_nll_before": nll(1.0),
        "val_nll_after": nll(t),
        "fitted_on": f"val ({sum(len(z) for z in logits)} numbers)",
    }


def calibrate_run(out: Path, batches: list[tuple], dev: torch.device | None = None) -> dict:
    """Fit the temperature of a run's best weights on val and record it in config.json."""
    return calibrate_weights(Path(out) / "best.pth", Path(out) / "config.json", batches, dev)


def calibrate_weights(weights: Path, cfg_path: Path, batches: list[tuple], dev=None) -> dict:
    cfg = json.loads(cfg_path.read_text())
    cfg.pop("calibration", None)
    arch = cfg["model"]["arch"]
    model = registry.build_model(arch, **cfg["model"]["hparams"])
    state = checkpoint.load_state_dict(weights)
    model.load_state_dict({k: v.float() for k, v in state.items()})
    dev = dev or torch.device("cpu")
    cfg["calibration"] = fit_temperature(model.to(dev), batches, registry.head(arch), dev)
    files.write_json(cfg_path, cfg)
    return cfg["calibration"]
