"""A class-conditional source adversary, trained through gradient reversal (Ganin & Lempitsky 2015), training only.

Source and label nearly coincide in the data (every Normal image is NIH's), so an adversary that predicts the
source from the features would also erase the label. This one predicts the source only *within* a class that has
several sources (COVID-19: ieee8023 vs Hannover; Pneumonia: NIH vs ieee8023): one small linear head per such
class, fed the pooled features of that class's images. The gradient reversal layer passes the heads' gradient
back to the backbone negated and scaled by lambda, so the backbone learns features from which the source cannot
be told apart inside a class, while the heads keep trying. lambda ramps up as in the DANN paper,
lambda(p) = weight * (2 / (1 + exp(-10 p)) - 1) with p the share of training done, so that the classifier learns
something first. The exported graph does not change: the heads exist only here.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class _Reverse(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, scale: float):
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return -ctx.scale * grad, None


def reverse_gradient(x: torch.Tensor, scale: float) -> torch.Tensor:
    """Identity forward; the gradient multiplied by -scale backward."""
    return _Reverse.apply(x, scale)


def ramp(progress: float, weight: float) -> float:
    """The DANN schedule: 0 at the start, `weight` at the end of training."""
    return weight * (2.0 / (1.0 + math.exp(-10.0 * min(max(progress, 0.0), 1.0))) - 1.0)


class SourceAdversary(nn.Module):
    """Per class with several sources among the training images, a linear head predicting which one."""

    def __init__(self, num_features: int, labels: torch.Tensor, sources: list[str], num_classes: int):
        super().__init__()
        self.sources = {}  # class index -> its sources, in a fixed order
        for k in range(num_classes):
            present = sorted({s for s, y in zip(sources, labels.tolist()) if y == k})
            if len(present) > 1:
                self.sources[k] = present
        self.heads = nn.ModuleDict({str(k): nn.Linear(num_features, len(v)) for k, v in self.sources.items()})
        # Per training image: its source's index within its class, or -1 where its class has one source.
        self.register_buffer("targets", torch.tensor(
            [self.sources[y].index(s) if y in self.sources else -1 for s, y in zip(sources, labels.tolist())]))

    @property
    def active(self) -> bool:
        return bool(self.sources)

    def loss(self, pooled: torch.Tensor, labels: torch.Tensor, idx: torch.Tensor, scale: float) -> torch.Tensor:
        """Mean cross-entropy of the heads over this batch's images of multi-source classes, with the gradient to
        `pooled` reversed and scaled by `scale`. Zero when the batch holds none."""
        reversed_ = reverse_gradient(pooled, scale)
        targets = self.targets[idx.to(self.targets.device)]
        losses = []
        for k, head in self.heads.items():
            inside = (labels == int(k)) & (targets >= 0)
            if inside.any():
                losses.append(F.cross_entropy(head(reversed_[inside]), targets[inside], reduction="sum"))
        return torch.stack(losses).sum() / int((targets >= 0).sum()) if losses else pooled.sum() * 0.0
