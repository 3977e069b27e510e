"""Batch augmentation in torch (runs on the training device): small affine jitter, stroke
thickness, blur, contrast and noise. Training only; evaluation sees clean inputs."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from digitseq.training.config import AugmentConfig


def _u(n, lo, hi, gen, device):
    return torch.rand(n, generator=gen, device=device) * (hi - lo) + lo


def augment(x: torch.Tensor, cfg: AugmentConfig, gen: torch.Generator) -> torch.Tensor:
    """(B, 1, H, W) float in [0, 1] -> augmented batch of the same shape."""
    if not cfg.enabled:
        return x
    b, _, h, w = x.shape
    dev = x.device
    ang = _u(b, -cfg.rotation_deg, cfg.rotation_deg, gen, dev) * (math.pi / 180)
    s = _u(b, 1 - cfg.scale, 1 + cfg.scale, gen, dev)
    sh = _u(b, -cfg.shear, cfg.shear, gen, dev)
    tx = _u(b, -cfg.shift_x, cfg.shift_x, gen, dev) * (2 / w)
    ty = _u(b, -cfg.shift_y, cfg.shift_y, gen, dev) * (2 / h)
    cos, sin = torch.cos(ang) / s, torch.sin(ang) / s
    # output -> input map in normalized coordinates; the aspect ratio (w/h) enters rotation
    theta = torch.stack(
        [
            torch.stack([cos, (-sin + sh) * h / w, tx], 1),
            torch.stack([sin * w / h, cos, ty], 1),
        ],
        1,
    )
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    if cfg.elastic > 0:  # smooth field: random coarse 4x12 displacements, bicubic upsampled
        coarse = torch.randn(b, 2, 4, 12, generator=gen, device=dev) * cfg.elastic
        field = F.interpolate(coarse, size=(h, w), mode="bicubic", align_corners=False)
        grid = grid + torch.stack([field[:, 0] * (2 / w), field[:, 1] * (2 / h)], -1)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)

    if cfg.p_marker > 0:  # drawn with a marker or the app's brush: one ink level, fat strokes
        r = torch.rand(b, 1, 1, 1, generator=gen, device=dev)
        fat = torch.rand(b, 1, 1, 1, generator=gen, device=dev) < 0.5
        solid = (x > 0.35).float()
        solid = torch.where(fat, F.max_pool2d(solid, 3, 1, 1), solid)
        solid = 0.5 * solid + 0.5 * F.avg_pool2d(solid, 3, 1, 1, count_include_pad=False)
        x = torch.where(r < cfg.p_marker, solid, x)
    r = torch.rand(b, 1, 1, 1, generator=gen, device=dev)
    dil = F.max_pool2d(x, 3, 1, 1)
    ero = -F.max_pool2d(-x, 3, 1, 1)
    x = torch.where(r < cfg.p_thick, 0.5 * x + 0.5 * dil, x)
    x = torch.where((r >= cfg.p_thick) & (r < cfg.p_thick + cfg.p_thin), 0.5 * x + 0.5 * ero, x)
    if cfg.p_lowres > 0:  # written small or scanned coarsely, then scaled back up
        f = float(_u(1, *cfg.lowres, gen, dev))
        small = F.interpolate(x, size=(max(4, round(h * f)), max(4, round(w * f))), mode="area")
        coarse = F.interpolate(small, size=(h, w), mode="bilinear", align_corners=False)
        r = torch.rand(b, 1, 1, 1, generator=gen, device=dev)
        x = torch.where(r < cfg.p_lowres, coarse, x)
    r = torch.rand(b, 1, 1, 1, generator=gen, device=dev)
    blur = F.avg_pool2d(x, 3, 1, 1, count_include_pad=False)
    x = torch.where(r < cfg.p_blur, blur, x)
    g = _u(b, 1 - cfg.gamma, 1 + cfg.gamma, gen, dev).view(b, 1, 1, 1)
    x = x.clamp(0, 1) ** g
    sigma = _u(b, 0, cfg.noise, gen, dev).view(b, 1, 1, 1)
    x = x + sigma * torch.randn(x.shape, generator=gen, device=dev)
    return x.clamp_(0, 1)
