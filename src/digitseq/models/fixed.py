"""Fixed-length baselines for 5-digit numbers: (N, 1, 28, 140) -> (N, 5, 10) logits."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from digitseq.core.constants import IMG_H, IMG_W, N_DIGITS
from digitseq.models.layers import Normalize, conv_bn


def cells_loss(logits, digits, lengths, widths, label_smoothing: float = 0.0) -> torch.Tensor:
    """Cross-entropy over the five heads (fp32)."""
    return F.cross_entropy(
        logits.float().reshape(-1, 10), digits.reshape(-1), label_smoothing=label_smoothing
    )


def cells_strings(logits, widths) -> list[str]:
    """The five heads' argmax digits of each number of a batch."""
    return ["".join(map(str, row)) for row in logits.argmax(-1).tolist()]


class MultiHead(nn.Module):
    """Conv trunk over the whole 28x140 image, then five 10-way heads over a shared FC layer
    (Goodfellow et al. 2013): every head sees the whole number, so digits may sit anywhere."""

    def __init__(self, channels=(16, 32, 64), hidden=256, reduce=0, dropout=0.2, depth=None):
        super().__init__()
        layers: list[nn.Module] = [Normalize()]
        cin = 1
        depth = depth or (2,) * len(channels)  # convs per stage
        for c, d in zip(channels, depth, strict=True):  # each stage: d 3x3 convs, 2x2 max-pool
            for _ in range(d):
                layers += conv_bn(cin, c)
                cin = c
            layers += [nn.MaxPool2d(2)]
        if reduce:  # optional 1x1 conv to shrink the flattened feature
            layers += [nn.Conv2d(cin, reduce, 1, bias=False), nn.BatchNorm2d(reduce), nn.ReLU(True)]
            cin = reduce
        self.trunk = nn.Sequential(*layers)
        h, w = IMG_H, IMG_W
        for _ in channels:
            h, w = h // 2, w // 2
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Dropout(dropout),
            nn.Linear(cin * h * w, hidden),
            nn.ReLU(True),
            nn.Dropout(dropout),
            nn.Linear(hidden, N_DIGITS * 10),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, 1, 28, 140) -> (N, 5, 10)
        return self.head(self.trunk(x)).view(-1, N_DIGITS, 10)


class SeedSlices(nn.Module):
    """The original project's approach: one LeNet-style digit CNN applied to five fixed
    28-pixel slices. A baseline: it cannot cope with digits that leave their slot."""

    def __init__(self, c1=32, c2=64, hidden=128, dropout=0.25):
        super().__init__()
        self.digit = nn.Sequential(
            Normalize(),
            nn.Conv2d(1, c1, 5, padding=2),
            nn.ReLU(True),
            nn.MaxPool2d(2),  # 14x14
            nn.Conv2d(c1, c2, 5, padding=2),
            nn.ReLU(True),
            nn.MaxPool2d(2),  # 7x7
            nn.Flatten(),
            nn.Dropout(dropout),
            nn.Linear(c2 * 7 * 7, hidden),
            nn.ReLU(True),
            nn.Linear(hidden, 10),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, 1, 28, 140) -> (N, 5, 10)
        n = x.shape[0]
        slices = x.reshape(n, 1, IMG_H, N_DIGITS, IMG_H).permute(0, 3, 1, 2, 4)  # (N,5,1,28,28)
        return self.digit(slices.reshape(n * N_DIGITS, 1, IMG_H, IMG_H)).view(n, N_DIGITS, 10)
