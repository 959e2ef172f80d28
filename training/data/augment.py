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

Processing style (`AugmentConfig.style`, `cxr train --style`) randomises how a hospital's software renders a film,
not its exposure (three times stronger exposure changes made unseen sources worse, docs/shortcuts.md): edge
enhancement (unsharp masking, small radius), local contrast (unsharp masking with a radius of an eighth of the
image, as CLAHE-like processing does), burned-in text and side markers, and a wider or tighter field of view.
A film of an unfamiliar hospital differs in these more than in anatomy; a model that sees them at random in every
class cannot tie a class to one of them.

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
    style: bool = False
    style_p: float = 0.5  # probability of each processing-style change
    sharpen: float = 1.5  # largest edge-enhancement amount (unsharp masking, sigma 1.5 px)
    local_contrast: float = 0.8  # largest local-contrast amount (unsharp masking, sigma = side / 8)
    field: float = 0.2  # field of view: extra zoom log-uniform in [1/(1+f), 1+f] (< 1: wider, black border)


PARAMS = ("angle", "scale", "tx", "ty", "brightness", "contrast", "gamma", "flip")
HARMONIZE = ("down", "blur", "noise", "jpeg", "noise_seed")  # 1, 0, 0, 0 when a degradation is off
STYLE = ("sharpen", "local_contrast", "field", "text_seed")  # 0, 0, 1, 0 when a change is off (text_seed 0: no text)


def columns(config: AugmentConfig) -> list[str]:
    """The names of the parameter columns `draw_params` returns for `config`, in order."""
    return [*PARAMS, *(HARMONIZE if config.harmonize else ()), *(STYLE if config.style else ())]


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
    if c.harmonize:
        params = torch.cat([params, _draw_harmonize(c, n, generator)], dim=1)
    if c.style:  # drawn last: the columns above stay the same with or without it
        params = torch.cat([params, _draw_style(c, n, generator)], dim=1)
    return params


def _draw_harmonize(c: AugmentConfig, n: int, generator: torch.Generator) -> torch.Tensor:
    h = torch.rand(n, 2 * 4 + 1, generator=generator, dtype=torch.float64)  # drawn after: the above stays the same
    on = h[:, :4] < c.harmonize_p
    lo, hi = c.jpeg
    return torch.stack([
        torch.where(on[:, 0], c.down + (1 - c.down) * h[:, 4], 1.0),
        torch.where(on[:, 1], c.blur * h[:, 5], 0.0),
        torch.where(on[:, 2], c.noise * h[:, 6], 0.0),
        torch.where(on[:, 3], torch.round(lo + (hi - lo) * h[:, 7]), 0.0),
        torch.floor(h[:, 8] * 2**24),  # exact in float32
    ], dim=1).float()


def _draw_style(c: AugmentConfig, n: int, generator: torch.Generator) -> torch.Tensor:
    h = torch.rand(n, 2 * 4, generator=generator, dtype=torch.float64)
    on = h[:, :4] < c.style_p
    return torch.stack([
        torch.where(on[:, 0], c.sharpen * h[:, 4], 0.0),
        torch.where(on[:, 1], c.local_contrast * h[:, 5], 0.0),
        torch.where(on[:, 2], torch.exp((2 * h[:, 6] - 1) * math.log1p(c.field)), 1.0),
        torch.where(on[:, 3], 1 + torch.floor(h[:, 7] * (2**24 - 1)), 0.0),  # exact in float32; 0 means no text
    ], dim=1).float()


def apply(images: torch.Tensor, params: torch.Tensor, config: AugmentConfig | None = None) -> torch.Tensor:
    """uint8 or float 0..255 images [B,1,S,S] -> augmented float 0..255, one parameter row per image (the columns
    of `columns(config)`; without a config, harmonisation is read from the number of columns)."""
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
    harmonize = config.harmonize if config else params.shape[1] > len(PARAMS)
    if harmonize:
        columns = slice(len(PARAMS), len(PARAMS) + len(HARMONIZE))
        x = torch.stack([degrade(image, row[columns]) for image, row in zip(x, params)])
    if config and config.style:
        x = torch.stack([restyle(image, row[-len(STYLE):]) for image, row in zip(x, params)])
    return x


def _gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of [1,1,S,S], edges replicated."""
    radius = max(1, min(math.ceil(3 * sigma), x.shape[-1] - 1))
    t = torch.arange(-radius, radius + 1, dtype=x.dtype)
    kernel = torch.exp(-0.5 * (t / sigma) ** 2)
    kernel = kernel / kernel.sum()
    x = F.pad(x, (radius, radius, radius, radius), mode="replicate")
    return F.conv2d(F.conv2d(x, kernel.view(1, 1, 1, -1)), kernel.view(1, 1, -1, 1))


_MARKERS = ("L", "R", "PA", "AP", "ERECT", "SUPINE", "PORTABLE")


def restyle(image: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """One float 0..255 image [1,S,S] rendered in another processing style, as `p` (STYLE) says."""
    sharpen, local, field, text_seed = p.tolist()
    size = image.shape[-1]
    x = image[None]
    if sharpen > 0:  # edge enhancement: the small-radius unsharp mask of CR/DR post-processing
        x = x + sharpen * (x - _gaussian_blur(x, 1.5))
    if local > 0:  # local contrast: large-radius unsharp masking, the look of CLAHE-like equalisation
        x = x + local * (x - _gaussian_blur(x, size / 8))
    x = x.clamp(0, 255)
    if field != 1:  # wider (< 1: the chest smaller inside a black border) or tighter field of view
        theta = torch.tensor([[[1 / field, 0, 0], [0, 1 / field, 0]]], dtype=x.dtype)
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    if text_seed > 0:
        x = _burn_in_text(x, int(text_seed))
    return x[0]


def _burn_in_text(x: torch.Tensor, seed: int) -> torch.Tensor:
    """Burned-in labels as scanners and PACS exports write them: a side marker and a few words or digits, white."""
    from PIL import ImageDraw, ImageFont

    rng = np.random.default_rng(seed)
    size = x.shape[-1]
    canvas = Image.fromarray(x[0, 0].round().clamp(0, 255).to(torch.uint8).numpy())
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default(size=max(8, int(size * rng.uniform(0.04, 0.09))))
    for _ in range(int(rng.integers(1, 4))):
        words = rng.choice(_MARKERS) if rng.random() < 0.6 else str(int(rng.integers(10, 99999)))
        top = rng.uniform(0.01, 0.15) if rng.random() < 0.5 else rng.uniform(0.8, 0.92)  # above or below the chest
        xy = (int(rng.uniform(0.02, 0.85) * size), int(top * size))
        draw.text(xy, str(words), fill=int(rng.integers(180, 256)), font=font)
    return torch.from_numpy(np.asarray(canvas, dtype=np.float32))[None, None].to(x.dtype)


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
        x = _gaussian_blur(x, blur)
    if noise > 0:
        generator = torch.Generator().manual_seed(int(seed))
        x = x + noise * torch.randn(x.shape, generator=generator, dtype=x.dtype)
    x = x.clamp(0, 255)
    if quality > 0:
        buffer = io.BytesIO()
        Image.fromarray(x[0, 0].round().to(torch.uint8).numpy()).save(buffer, format="JPEG", quality=int(quality))
        x = torch.from_numpy(np.asarray(Image.open(buffer), dtype=np.float32))[None, None].to(image.dtype)
    return x[0]
