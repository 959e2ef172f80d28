"""Grad-CAM on the last conv block: the autograd reference and the closed form the exported graph computes.

`gradcam` is the reference implementation, by autograd (Selvaraju et al. 2017): alpha_k = mean over positions of
d logit_c / d A_k, map = ReLU(sum_k alpha_k A_k). With global average pooling and one linear layer,
d logit_c / d A_k(i,j) = W[c,k] / (h*w), so the map equals `cam_from_weights` = ReLU(sum_k W[c,k] A_k) / (h*w): the
exported model computes that closed form as its `cam` output, and tests hold it to this reference.
Display helpers (upsampling, overlays) are in core/heatmap.py.
"""

from __future__ import annotations

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
