"""Resampling shared by every in-graph geometry step: the antialiased resize, and the crop of a box resampled to a
fixed size (border crop, lung crop). Plain tensor ops that export to ONNX and run the same in onnxruntime-web."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def resize(image: torch.Tensor, size: int) -> torch.Tensor:
    """Squash to `size` x `size` with antialiased bilinear resampling (exports to ONNX Resize antialias=1)."""
    return F.interpolate(image, size=(size, size), mode="bilinear", antialias=True, align_corners=False)


def box_grid(box: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """The sampling grid (grid_sample, align_corners=False) of a height x width output covering `box` [N,4]
    (x0, y0, x1, y1 as fractions of the image)."""
    x0, y0, x1, y1 = box.unbind(1)
    zero = torch.zeros_like(x0)
    # affine_grid maps output [-1, 1] to input [2*x0 - 1, 2*x1 - 1] (and the same for y).
    theta = torch.stack([torch.stack([x1 - x0, zero, x0 + x1 - 1], 1),
                         torch.stack([zero, y1 - y0, y0 + y1 - 1], 1)], 1)
    return F.affine_grid(theta, [box.shape[0], 1, height, width], align_corners=False)


def crop_to_box(image: torch.Tensor, box: torch.Tensor, size: int) -> torch.Tensor:
    """The region `box` of `image` [N,1,H,W], resampled to size x size: bilinear from an antialiased 2*size resize,
    so shrinking a large image does not alias and the graph's shapes do not depend on the box."""
    return F.grid_sample(resize(image, 2 * size), box_grid(box, size, size), mode="bilinear",
                         padding_mode="border", align_corners=False)
