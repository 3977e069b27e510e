"""Building blocks shared by the architectures. Normalization lives inside every model, so
exported models carry it and callers feed plain [0, 1] images."""

from __future__ import annotations

import torch
from torch import nn

MNIST_MEAN, MNIST_STD = 0.1307, 0.3081  # of MNIST pixels / 255


class Normalize(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - MNIST_MEAN) / MNIST_STD


def conv_bn(cin: int, cout: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(True)]
