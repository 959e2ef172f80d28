"""Augmentation for chest radiographs, batched on tensors and reproducible per sample.

Small geometric changes (rotation, scale, translation) and exposure changes (brightness, contrast, gamma) mimic how
the same chest is imaged differently. Horizontal flip is off by default: chest anatomy is not left-right symmetric
(heart, aortic knob, gastric bubble) and burned-in side markers read backwards, so a flipped film is not a
plausible radiograph.

Harmonisation (`AugmentConfig.harmonize`; training turns it on by default, docs/shortcuts.md) adds the
degradations that separate sources in chest X-ray collections: down-and-up sampling (low-resolution journal
figures), blur, noise and JPEG re-compression, so that a model cannot tell a hospital export from a figure by its
pixel texture. It also makes the model robust to perturbations of a few grey levels, which is what int8
quantisation adds.

Parameters are drawn for a whole epoch at once from a generator seeded by (seed, epoch), indexed by the sample's
position in the epoch. Any process (a resumed run, one rank of several) draws the same parameters for the same
sample, which is what makes resumed and distributed runs equal an uninterrupted single-process run.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image


@dataclass(frozen=True)
class AugmentConfig:
    rotation: float = 10.0  # degrees, +-
    scale: float = 0.10  # +- fraction
    translate: float = 0.06  # +- fraction of the side
    brightness: float = 0.10  # +- on a 0..1 scale
    contrast: float = 0.15  # +- fraction
    gamma: float = 0.20  # log-uniform in [1/(1+g), 1+g]
    hflip: bool = False
    harmonize: bool = False
    harmonize_p: float = 0.5  # probability of each degradation
    down: float = 0.35  # smallest down-sampling factor before sampling back up
    blur: float = 1.2  # largest Gaussian blur sigma, pixels
    noise: float = 4.0  # largest Gaussian noise sigma, grey levels
    jpeg: tuple = (30, 95)  # JPEG quality range


PARAMS = ("angle", "scale", "tx", "ty", "brightness", "contrast", "gamma", "flip")
HARMONIZE = ("down", "blur", "noise", "jpeg", "noise_seed")  # 1, 0, 0, 0 when a degradation is off


def draw_params(config: AugmentConfig, n: int, generator: torch.Generator) -> torch.Tensor:
    """[n, len(PARAMS) (+ len(HARMONIZE))] parameters, one row per position in the epoch."""
    u = torch.rand(n, len(PARAMS), generator=generator, dtype=torch.float64) * 2 - 1  # uniform in [-1, 1]
    c = config
    params = torch.stack([
        u[:, 0] * c.rotation,
        1 + u[:, 1] * c.scale,
        u[:, 2] * c.translate,
        u[:, 3] * c.translate,
        u[:, 4] * c.brightness,
        1 + u[:, 5] * c.contrast,
        torch.exp(u[:, 6] * math.log1p(c.gamma)),
        (u[:, 7] > 0).double() * float(c.hflip),
    ], dim=1).float()
    if not c.harmonize:
        return params
    h = torch.rand(n, 2 * 4 + 1, generator=generator, dtype=torch.float64)  # drawn after: the above stays the same
    on = h[:, :4] < c.harmonize_p
    lo, hi = c.jpeg
    harmonize = torch.stack([
        torch.where(on[:, 0], c.down + (1 - c.down) * h[:, 4], 1.0),
        torch.where(on[:, 1], c.blur * h[:, 5], 0.0),
        torch.where(on[:, 2], c.noise * h[:, 6], 0.0),
        torch.where(on[:, 3], torch.round(lo + (hi - lo) * h[:, 7]), 0.0),
        torch.floor(h[:, 8] * 2**24),  # exact in float32
    ], dim=1).float()
    return torch.cat([params, harmonize], dim=1)


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
    x = x * 255.0
    if params.shape[1] > len(PARAMS):
        x = torch.stack([degrade(image, row[len(PARAMS):]) for image, row in zip(x, params)])
    return x


def degrade(image: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """One float 0..255 image [1,S,S] through down-up sampling, blur, noise and JPEG, as `p` (HARMONIZE) says."""
    down, blur, noise, quality, seed = p.tolist()
    size = image.shape[-1]
    x = image[None]
    if down < 1:
        small = max(8, round(size * down))
        x = F.interpolate(x, size=(small, small), mode="bilinear", antialias=True, align_corners=False)
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    if blur > 0.05:
        radius = max(1, math.ceil(3 * blur))
        t = torch.arange(-radius, radius + 1, dtype=x.dtype)
        kernel = torch.exp(-0.5 * (t / blur) ** 2)
        kernel = kernel / kernel.sum()
        x = F.pad(x, (radius, radius, radius, radius), mode="replicate")
        x = F.conv2d(F.conv2d(x, kernel.view(1, 1, 1, -1)), kernel.view(1, 1, -1, 1))
    if noise > 0:
        generator = torch.Generator().manual_seed(int(seed))
        x = x + noise * torch.randn(x.shape, generator=generator, dtype=x.dtype)
    x = x.clamp(0, 255)
    if quality > 0:
        buffer = io.BytesIO()
        Image.fromarray(x[0, 0].round().to(torch.uint8).numpy()).save(buffer, format="JPEG", quality=int(quality))
        x = torch.from_numpy(np.asarray(Image.open(buffer), dtype=np.float32))[None, None].to(image.dtype)
    return x[0]
