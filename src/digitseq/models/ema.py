"""Exponential moving average of a model's weights: the weights a training run validates and
saves."""

from __future__ import annotations

import copy

import torch
from torch import nn


class Ema:
    """Exponential moving average of weights and BN buffers, with the usual warm-up
    (decay = min(d, (1 + t) / (10 + t))) so early steps don't pin it to the random init."""

    def __init__(self, model: nn.Module, decay: float):
        self.source = model  # the plain model being trained (not its DDP/compile wrapper)
        self.module = copy.deepcopy(model).eval()
        self.decay, self.updates = decay, 0
        for p in self.module.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self) -> None:
        self.updates += 1
        d = min(self.decay, (1 + self.updates) / (10 + self.updates))
        src = self.source.state_dict()
        for k, v in self.module.state_dict().items():
            if v.is_floating_point():
                v.lerp_(src[k].detach(), 1 - d)
            else:
                v.copy_(src[k])

    def state_dict(self) -> dict:
        return {"module": self.module.state_dict(), "updates": self.updates}

    def load_state_dict(self, state: dict) -> None:
        self.module.load_state_dict(state["module"])
        self.updates = int(state["updates"])
