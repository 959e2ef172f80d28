"""Out-of-distribution score: Mahalanobis distance of an image's pooled features from the training data.

Class means and one shared covariance are estimated on the training split (Lee et al. 2018); the score is the
distance to the nearest class mean. With a few hundred images and 2048 feature dimensions the sample covariance
is singular, so it is shrunk (Ledoit-Wolf) and kept as its top `dims` principal directions plus one variance for
all the rest (a probabilistic-PCA form). That keeps the exported graph small (2048 x 256 floats instead of
2048 x 2048) and still penalises features that leave the training subspace, which is what a photograph or a page
of text does.

The threshold is a percentile of the validation split's scores (default 99: about 1% of in-distribution images
would be flagged); `ood_score > threshold` means "this does not look like the training data".
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.covariance import LedoitWolf
from torch import nn

DEFAULT_DIMS = 256
DEFAULT_PERCENTILE = 99.0


class MahalanobisScore(nn.Module):
    """pooled features [N, C] -> min over classes of the (approximate) Mahalanobis distance, [N]."""

    def __init__(self, means, components, eigenvalues, residual_variance):
        super().__init__()
        self.register_buffer("means", torch.as_tensor(means, dtype=torch.float32))  # [K, C]
        self.register_buffer("components", torch.as_tensor(components, dtype=torch.float32))  # [C, D]
        self.register_buffer("inv_std", torch.as_tensor(eigenvalues, dtype=torch.float32).rsqrt())  # [D]
        self.inv_residual = 1.0 / float(residual_variance)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        d = features[:, None, :] - self.means[None]  # [N, K, C]
        projected = d @ self.components  # [N, K, D]
        # The residual is computed explicitly, not as |d|^2 - |projected|^2: that difference cancels badly in float32.
        residual = d - projected @ self.components.T
        distance = (projected * self.inv_std).square().sum(-1) + residual.square().sum(-1) * self.inv_residual
        return distance.min(dim=1).values

    @classmethod
    def from_state(cls, state: dict) -> MahalanobisScore:
        """Rebuild from `state()` (as a checkpoint stores it; extra keys such as the threshold are ignored)."""
        return cls(state["means"], state["components"], state["eigenvalues"], state["residual_variance"])

    def state(self) -> dict:
        return {"means": self.means, "components": self.components, "eigenvalues": self.inv_std.square().reciprocal(),
                "residual_variance": 1.0 / self.inv_residual}


def fit(features: np.ndarray, labels: np.ndarray, num_classes: int, dims: int = DEFAULT_DIMS) -> MahalanobisScore:
    features = np.asarray(features, dtype=np.float64)
    means = np.stack([features[labels == k].mean(0) if (labels == k).any() else features.mean(0)
                      for k in range(num_classes)])
    centred = features - means[labels]
    covariance = LedoitWolf(assume_centered=True).fit(centred).covariance_
    eigenvalues, vectors = np.linalg.eigh(covariance)  # ascending
    eigenvalues, vectors = eigenvalues[::-1], vectors[:, ::-1]
    dims = min(dims, len(eigenvalues) - 1)
    residual = float(eigenvalues[dims:].mean())
    return MahalanobisScore(means, vectors[:, :dims].copy(), eigenvalues[:dims].copy(), residual)


def threshold(scores: np.ndarray, percentile: float = DEFAULT_PERCENTILE) -> float:
    return float(np.percentile(np.asarray(scores), percentile))
