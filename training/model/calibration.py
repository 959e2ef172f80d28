"""Temperature scaling (Guo et al. 2017): one scalar T, fitted on the validation split, so softmax(logits / T)
reports probabilities that match observed frequencies. It never changes the predicted class. (Calibration error
and reliability bins are metrics: core/metrics.py.)"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def nll(logits: torch.Tensor, labels: torch.Tensor, temperature: float = 1.0) -> float:
    return F.cross_entropy(logits.double() / temperature, labels).item()


MAX_TEMPERATURE = 100.0  # a model no better than chance would otherwise drive T to infinity (uniform outputs)


def fit_temperature(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """The T > 0 minimising the negative log-likelihood of `labels` (optimised in log T, so T stays positive),
    bounded to [1/MAX_TEMPERATURE, MAX_TEMPERATURE]."""
    logits = logits.detach().double()
    log_t = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([log_t], lr=0.5, max_iter=200, line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        loss = F.cross_entropy(logits / log_t.exp(), labels)
        loss.backward()
        return loss

    optimizer.step(closure)
    return float(log_t.detach().exp().clamp(1 / MAX_TEMPERATURE, MAX_TEMPERATURE))
