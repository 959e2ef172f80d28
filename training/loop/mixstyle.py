"""MixStyle (Zhou et al., "Domain Generalization with MixStyle", ICLR 2021): during training, the channel-wise mean
and standard deviation of early feature maps -- which carry an image's style (contrast, texture, processing) more
than its content -- are mixed between random pairs of films in the batch. A hospital's rendering style becomes
noise the classifier must ignore, which is the cross-hospital failure docs/shortcuts.md measures.

Training only: the hooks are attached by the training run and pass everything through unchanged in eval mode, so
checkpoints, the exported graph and the browser are unaffected. Randomness comes from torch's global generator,
which the run seeds and checkpoints, so a resumed run draws what an uninterrupted one would.
"""

from __future__ import annotations

import torch
from torch import nn

ALPHA = 0.1  # Beta(alpha, alpha) mixing weights: mostly close to 0 or 1 (the paper's choice)
EPS = 1e-6


class MixStyle:
    """A forward hook that mixes instance statistics of the hooked module's output with probability `p`."""

    def __init__(self, p: float, alpha: float = ALPHA):
        self.p, self.alpha = p, alpha

    def __call__(self, module: nn.Module, inputs, output: torch.Tensor) -> torch.Tensor:
        if not module.training or output.shape[0] < 2 or torch.rand(1).item() >= self.p:
            return output
        mu = output.mean(dim=(2, 3), keepdim=True).detach()
        sigma = (output.var(dim=(2, 3), keepdim=True) + EPS).sqrt().detach()
        weight = torch.distributions.Beta(self.alpha, self.alpha).sample((output.shape[0], 1, 1, 1))
        weight = weight.to(output.device, output.dtype)
        perm = torch.randperm(output.shape[0])
        mixed_mu = weight * mu + (1 - weight) * mu[perm]
        mixed_sigma = weight * sigma + (1 - weight) * sigma[perm]
        return (output - mu) / sigma * mixed_sigma + mixed_mu


def early_stages(features: nn.Module) -> list[nn.Module]:
    """The first three stages of a backbone: timm EfficientNet's `blocks`, or a ResNet trunk's residual layers."""
    if hasattr(features, "blocks"):
        return list(features.blocks)[:3]
    layers = [m for m in features.children() if isinstance(m, nn.Sequential)]
    if len(layers) < 3:
        raise ValueError(f"--mixstyle: no early stages found in {type(features).__name__}")
    return layers[:3]


def attach(features: nn.Module, p: float) -> list:
    """Hook MixStyle after each early stage; returns the hook handles (remove() detaches them)."""
    hook = MixStyle(p)
    return [stage.register_forward_hook(hook) for stage in early_stages(features)]
