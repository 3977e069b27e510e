"""The one batched inference function: validation, calibration, evaluation and the torch
backend of the predictor all run models through ``batched_logits``; ``validate`` scores a
training run's weights on its val batches."""

from __future__ import annotations

import time

import numpy as np
import torch

from digitseq.data import numbers
from digitseq.models import ctc_decode
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


def true_strings(labels, lengths) -> list[str]:
    """(N, L) label tensors (alphabet indices: digits 0-9, then separators) -> the strings."""
    return numbers.labels_to_strings(labels.cpu().numpy(), lengths.cpu().numpy())


@torch.no_grad()
def validate(model, batches: list[tuple], head, dev, precision: str = "auto") -> dict:
    """Loss and accuracies of ``model`` (read by its registry ``head``) on a fixed set of
    batches, in order, no augmentation, and the seconds it took. Digit accuracy is 1 - CER (edit
    distance per true digit): for equal-length readings, per-position accuracy."""
    t0 = time.perf_counter()
    tot_loss = right = errors = chars = n = 0
    for img, digits, lengths, widths in batches:
        logits = batched_logits(model, img, dev, batch_size=len(img), precision=precision)
        tot_loss += head.loss(logits, digits, lengths, widths).item() * len(img)
        r, e, c = ctc_decode.score(head.strings(logits, widths), true_strings(digits, lengths))
        right, errors, chars, n = right + int(r.sum()), errors + e, chars + c, n + len(img)
    return {
        "val_loss": tot_loss / n,
        "val_digit_acc": max(0.0, 1 - errors / max(chars, 1)),
        "val_seq_acc": right / n,
        "seconds": time.perf_counter() - t0,
    }


class TorchBackend:
    """The predictor's torch backend: (N, 1, H, W) float32 array -> logits array."""

    name = "torch"

    def __init__(self, model):
        self.model = model.eval()

    def __call__(self, x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return self.model(torch.from_numpy(x)).float().numpy()
