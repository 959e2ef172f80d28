"""Grad-CAM on the last conv block, and the heatmap helpers shared by reports, tests and the predict CLI.

`gradcam` is the reference implementation, by autograd (Selvaraju et al. 2017): alpha_k = mean over positions of
d logit_c / d A_k, map = ReLU(sum_k alpha_k A_k). With global average pooling and one linear layer,
d logit_c / d A_k(i,j) = W[c,k] / (h*w), so the map equals `cam_from_weights` = ReLU(sum_k W[c,k] A_k) / (h*w): the
exported model computes that closed form as its `cam` output, and tests hold it to this reference.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def gradcam(model, x: torch.Tensor) -> torch.Tensor:
    """Autograd Grad-CAM of every class: [N, K, h, w] for a normalised input batch [N, 3, S, S]."""
    model.eval()
    a = model.features(x)
    logits = model.fc(a.mean(dim=(2, 3)))
    maps = []
    for c in range(logits.shape[1]):
        (grad,) = torch.autograd.grad(logits[:, c].sum(), a, retain_graph=True)
        alpha = grad.mean(dim=(2, 3), keepdim=True)
        maps.append(F.relu((alpha * a).sum(1)))
    return torch.stack(maps, 1).detach()


def cam_from_weights(features: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Closed-form Grad-CAM from last conv features [N, C, h, w] and fc weights [K, C]: [N, K, h, w]."""
    h, w = features.shape[-2:]
    return F.relu(torch.einsum("kc,nchw->nkhw", weight, features)) / (h * w)


def upsample(cam: np.ndarray, height: int, width: int) -> np.ndarray:
    """One [h, w] map -> [height, width], bilinear with half-pixel centres (what the browser draws)."""
    t = torch.as_tensor(np.asarray(cam, dtype=np.float32))[None, None]
    return F.interpolate(t, size=(height, width), mode="bilinear", align_corners=False)[0, 0].numpy()


def hottest_point(cam: np.ndarray, height: int, width: int) -> tuple[int, int]:
    """(row, col) of the maximum of the upsampled map: where the heatmap points."""
    up = upsample(cam, height, width)
    return np.unravel_index(int(np.argmax(up)), up.shape)


def overlay(gray: np.ndarray, cam: np.ndarray, opacity: float = 0.45, colormap: str = "inferno") -> np.ndarray:
    """RGB uint8: the gray image with the map (normalised to its max, upsampled) blended on top."""
    from matplotlib import colormaps

    gray = np.asarray(gray, dtype=np.float32)
    up = upsample(cam, *gray.shape)
    up = up / up.max() if up.max() > 0 else up
    heat = colormaps[colormap](up)[..., :3] * 255
    base = np.repeat(gray[..., None], 3, axis=2)
    return np.clip(base * (1 - opacity * up[..., None]) + heat * opacity * up[..., None], 0, 255).astype(np.uint8)
