"""Preprocessing as torch modules: the one definition used to build the training cache and inside the exported graph.

Input everywhere is a decoded grayscale batch `[N, 1, H, W]`, float32, values 0..255, any H and W.
`Resize` does the geometry (what the cache stores, as uint8); `Normalize` turns 0..255 gray into the 3-channel,
normalised tensor the network expects. `Preprocess` chains both for the exported model, so Python and the browser
cannot drift apart: the browser only decodes pixels, the graph does the rest.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

# Bump when anything here changes the pixels that reach the network: it invalidates every cache entry.
PREPROCESS_VERSION = 1

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class Resize(nn.Module):
    """Squash to `size` x `size` with antialiased bilinear resampling (exports to ONNX Resize antialias=1)."""

    def __init__(self, size: int = 224):
        super().__init__()
        self.size = size

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return F.interpolate(image, size=(self.size, self.size), mode="bilinear", antialias=True, align_corners=False)


class Normalize(nn.Module):
    """0..255 gray `[N,1,S,S]` -> `[N,3,S,S]` normalised with per-channel mean/std (ImageNet's by default)."""

    def __init__(self, mean=IMAGENET_MEAN, std=IMAGENET_STD):
        super().__init__()
        # Folding /255 into the constants keeps the graph to one Sub and one Div.
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1) * 255.0)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1) * 255.0)

    def forward(self, gray: torch.Tensor) -> torch.Tensor:
        return (gray.expand(-1, 3, -1, -1) - self.mean) / self.std


class Preprocess(nn.Module):
    def __init__(self, size: int = 224, mean=IMAGENET_MEAN, std=IMAGENET_STD):
        super().__init__()
        self.resize = Resize(size)
        self.normalize = Normalize(mean, std)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.normalize(self.resize(image))


def resize_to_uint8(gray, size: int) -> "numpy.ndarray":  # noqa: F821
    """Decoded 2-D gray array (0..255) -> `size` x `size` uint8, as stored in the cache."""
    x = torch.as_tensor(gray, dtype=torch.float32)[None, None]
    with torch.no_grad():
        y = Resize(size)(x)[0, 0]
    return y.round_().clamp_(0, 255).to(torch.uint8).numpy()
