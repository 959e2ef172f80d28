"""Augmentation for chest radiographs, batched on tensors and reproducible per sample.

Small geometric changes (rotation, scale, translation) and exposure changes (brightness, contrast, gamma) mimic how
the same chest is imaged differently. Horizontal flip is off by default: chest anatomy is not left-right symmetric
(heart, aortic knob, gastric bubble) and burned-in side markers read backwards, so a flipped film is not a
plausible radiograph.

Parameters are drawn for a whole epoch at once from a generator seeded by (seed, epoch), indexed by the sample's
position in the epoch. Any process (a resumed run, one rank of several) draws the same parameters for the same
sample, which is what makes resumed and distributed runs equal an uninterrupted single-process run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class AugmentConfig:
    rotation: float = 10.0  # degrees, +-
    scale: float = 0.10  # +- fraction
    translate: float = 0.06  # +- fraction of the side
    brightness: float = 0.10  # +- on a 0..1 scale
    contrast: float = 0.15  # +- fraction
    gamma: float = 0.20  # log-uniform in [1/(1+g), 1+g]
    hflip: bool = False


PARAMS = ("angle", "scale", "tx", "ty", "brightness", "contrast", "gamma", "flip")


def draw_params(config: AugmentConfig, n: int, generator: torch.Generator) -> torch.Tensor:
    """[n, len(PARAMS)] parameters, one row per position in the epoch."""
    u = torch.rand(n, len(PARAMS), generator=generator, dtype=torch.float64) * 2 - 1  # uniform in [-1, 1]
    c = config
    return torch.stack([
        u[:, 0] * c.rotation,
        1 + u[:, 1] * c.scale,
        u[:, 2] * c.translate,
        u[:, 3] * c.translate,
        u[:, 4] * c.brightness,
        1 + u[:, 5] * c.contrast,
        torch.exp(u[:, 6] * math.log1p(c.gamma)),
        (u[:, 7] > 0).double() * float(c.hflip),
    ], dim=1).float()


def apply(images: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
    """uint8 or float 0..255 images [B,1,S,S] -> augmented float 0..255, one parameter row per image."""
    x = images.float() / 255.0
    angle = params[:, 0] * math.pi / 180
    scale, tx, ty = params[:, 1], params[:, 2] * 2, params[:, 3] * 2  # affine_grid works in [-1, 1] units
    flip = 1 - 2 * params[:, 7]
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([torch.stack([cos * flip, -sin, tx], 1), torch.stack([sin * flip, cos, ty], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x = (x - mean) * params[:, 5].view(-1, 1, 1, 1) + mean + params[:, 4].view(-1, 1, 1, 1)
    x = x.clamp(0, 1) ** params[:, 6].view(-1, 1, 1, 1)
    return x * 255.0
