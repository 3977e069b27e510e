"""EMA and augmentation really run: the ``ctc-tiny`` preset has both on; augmentation changes a
batch (reproducibly, from a passed-in generator), the EMA's weights differ from the raw ones
after training and are the ones saved, and the run still gives a working reader."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import numpy as np
import pytest
import torch
from conftest import SEED_SAMPLES
from PIL import Image

from digitseq.reading.predictor import Predictor
from digitseq.training import loop
from digitseq.training.augment import augment
from digitseq.training.config import PRESETS
from digitseq.training.fit import fit

PRESET = PRESETS["ctc-tiny"]


def seed_batch() -> torch.Tensor:
    """(4, 1, 28, 140) float in [0, 1]: four real numbers from the original project."""
    names = ("101.png", "102.png", "105.png", "107.png")
    images = np.stack([np.asarray(Image.open(SEED_SAMPLES / n).convert("L")) for n in names])
    return torch.from_numpy(images.astype(np.float32) / 255.0).unsqueeze(1)


def test_augmentation_changes_a_batch_and_is_reproducible():
    x = seed_batch()
    cfg = PRESET.augment
    assert cfg.enabled
    a = augment(x, cfg, torch.Generator().manual_seed(0))
    again = augment(x, cfg, torch.Generator().manual_seed(0))
    other = augment(x, cfg, torch.Generator().manual_seed(1))
    assert a.shape == x.shape and a.dtype == x.dtype
    assert float(a.min()) >= 0.0 and float(a.max()) <= 1.0
    assert torch.equal(a, again)  # all its randomness comes from the generator
    assert not torch.equal(a, other)
    per_image = (a - x).abs().flatten(1).mean(1)
    assert bool((per_image > 0.005).all()), per_image  # every image changed...
    ink = x.flatten(1).sum(1)
    assert bool(((a.flatten(1).sum(1) - ink).abs() < 0.5 * ink).all())  # ...and keeps its ink
    off = replace(cfg, enabled=False)
    assert augment(x, off, torch.Generator().manual_seed(0)) is x


@pytest.mark.slow
def test_ctc_tiny_trains_with_ema_and_augmentation(tmp_path, mnist_data, monkeypatch):
    assert PRESET.ema and PRESET.augment.enabled
    changes = []

    def spy(x, cfg, gen):  # the trainer's own augment call, observed
        y = augment(x, cfg, gen)
        changes.append(float((y - x).abs().mean()))
        return y

    monkeypatch.setattr(loop, "augment", spy)
    out = fit(PRESET, tmp_path / "run", device="cpu", progress=False)

    assert len(changes) == PRESET.epochs * PRESET.steps_per_epoch
    assert min(changes) > 0.001  # every training batch was augmented
    state = torch.load(out / "last.pth", weights_only=True)
    raw, ema = state["model"], state["ema"]["module"]
    assert state["ema"]["updates"] == len(changes)  # one EMA update per step
    gap = max(float((raw[k] - ema[k]).abs().max()) for k in raw if raw[k].is_floating_point())
    assert gap > 1e-4  # the average lags the raw weights
    saved = torch.load(out / "weights.pth", weights_only=True)
    assert all(torch.equal(saved[k], ema[k]) for k in ema)  # what is judged and saved: the EMA

    history = json.loads((out / "history.json").read_text())
    assert len(history) == PRESET.epochs
    assert all(math.isfinite(h["train_loss"]) and math.isfinite(h["val_loss"]) for h in history)
    reader = Predictor.load(out, backend="torch")
    assert reader.kind == "ctc"
    readings = reader.predict(sorted(SEED_SAMPLES.glob("*.png"))[:8])
    assert all(r.error is None and set(r.digits) <= set("0123456789") for r in readings)
    assert any(r.digits for r in readings)  # it reads digits, however weakly after seconds
    assert all(0.0 <= r.confidence <= 1.0 for r in readings)
