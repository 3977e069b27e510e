"""Several CTC line readers on the same frame grid, read as one: the frame posteriors of the
members are averaged, so the ensemble is itself a CTC reader (log of the mean probabilities
as its logits) that decodes, calibrates and exports to ONNX like a single one."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from digitseq.models.ctc import CTCReader


class CTCEnsemble(nn.Module):
    def __init__(self, members=()):
        super().__init__()
        if not members:
            raise ValueError("ctc-ensemble needs at least one member's hyper-parameters")
        self.members = nn.ModuleList(CTCReader(**hp) for hp in members)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, 1, 28, W) -> (N, W/4, 11)
        logp = torch.stack([F.log_softmax(m(x).float(), dim=-1) for m in self.members])
        return torch.logsumexp(logp, dim=0) - math.log(len(self.members))
