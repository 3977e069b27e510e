"""The one batched inference function: validation, calibration, evaluation and the torch
backend of the predictor all run models through ``batched_logits``."""

from __future__ import annotations

import numpy as np
import torch

from digitseq.models.devices import autocast, to_input


@torch.no_grad()
def batched_logits(
    model, images, dev=None, batch_size: int = 1024, precision: str = "auto"
) -> torch.Tensor:
    """Logits of ``model`` (eval mode, autocast as ``precision`` says) for uint8 images
    (N, H, W), in order, batch by batch (no augmentation); returned as float32 on the CPU."""
    dev = dev or next(model.parameters()).device
    model.eval()
    outs = []
    for i in range(0, len(images), batch_size):
        x = to_input(torch.from_numpy(np.array(images[i : i + batch_size])), dev)  # a copy
        with autocast(dev, precision):
            outs.append(model(x).float().cpu())
    return torch.cat(outs) if outs else torch.zeros(0)


class TorchBackend:
    """The predictor's torch backend: (N, 1, H, W) float32 array -> logits array."""

    name = "torch"

    def __init__(self, model):
        self.model = model.eval()

    def __call__(self, x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return self.model(torch.from_numpy(x)).float().numpy()
