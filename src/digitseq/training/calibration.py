"""Temperature scaling: the single T that makes softmax(logits / T) calibrated on val, fitted
after training and stored in the run's config.json (``checkpoint.load_model`` applies it)."""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F

from digitseq.core import files
from digitseq.models import checkpoint, registry
from digitseq.models.devices import to_input


@torch.no_grad()
def fit_temperature(model, images: torch.Tensor, labels: torch.Tensor, dev) -> dict:
    """Temperature scaling on val: the T minimizing the per-digit NLL of logits / T
    (golden-section search; NLL is unimodal in T)."""
    model.eval()
    logits = torch.cat(
        [
            model(to_input(images[i : i + 1024], dev)).float().cpu()
            for i in range(0, len(images), 1024)
        ]
    ).reshape(-1, 10)
    y = labels.reshape(-1)

    def nll(t: float) -> float:
        return F.cross_entropy(logits / t, y).item()

    lo, hi = 0.2, 5.0
    g = (5**0.5 - 1) / 2
    for _ in range(40):
        a, b = hi - g * (hi - lo), lo + g * (hi - lo)
        lo, hi = (lo, b) if nll(a) < nll(b) else (a, hi)
    t = (lo + hi) / 2
    return {
        "temperature": round(t, 4),
        "val_nll_before": nll(1.0),
        "val_nll_after": nll(t),
        "fitted_on": f"val ({len(images)} sequences)",
    }


def calibrate_run(out: Path, vimg, vlab, dev: torch.device | None = None) -> dict:
    """Fit the temperature of a run's best weights on val and record it in config.json."""
    return calibrate_run_weights(Path(out) / "best.pth", Path(out) / "config.json", vimg, vlab, dev)


def calibrate_run_weights(weights: Path, cfg_path: Path, vimg, vlab, dev=None) -> dict:
    cfg = json.loads(cfg_path.read_text())
    cfg.pop("calibration", None)
    model = registry.build_model(cfg["model"]["arch"], **cfg["model"]["hparams"])
    state = checkpoint.load_state_dict(weights)
    model.load_state_dict({k: v.float() for k, v in state.items()})
    dev = dev or torch.device("cpu")
    cfg["calibration"] = fit_temperature(model.to(dev), vimg, vlab, dev)
    files.write_json(cfg_path, cfg)
    return cfg["calibration"]
