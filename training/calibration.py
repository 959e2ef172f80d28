"""Temperature scaling (Guo et al. 2017): one scalar T, fitted on the validation split, so softmax(logits / T)
reports probabilities that match observed frequencies. It never changes the predicted class."""

from __future__ import annotations

import numpy as np
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


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, bins: int = 15) -> float:
    """ECE of the top-1 confidence, equal-width bins: sum over bins of |accuracy - confidence| x share of samples."""
    probs, labels = np.asarray(probs), np.asarray(labels)
    confidence, predicted = probs.max(1), probs.argmax(1)
    correct = predicted == labels
    edges = np.linspace(0, 1, bins + 1)
    ece = 0.0
    for lo, hi in zip(edges[:-1], edges[1:]):
        inside = (confidence > lo) & (confidence <= hi)
        if inside.any():
            ece += inside.mean() * abs(correct[inside].mean() - confidence[inside].mean())
    return float(ece)


def reliability_bins(probs: np.ndarray, labels: np.ndarray, bins: int = 15) -> list[dict]:
    """Per bin: mean confidence, accuracy, count (for the reliability diagram)."""
    probs, labels = np.asarray(probs), np.asarray(labels)
    confidence, correct = probs.max(1), probs.argmax(1) == labels
    edges = np.linspace(0, 1, bins + 1)
    out = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        inside = (confidence > lo) & (confidence <= hi)
        out.append({"lo": float(lo), "hi": float(hi), "count": int(inside.sum()),
                    "confidence": float(confidence[inside].mean()) if inside.any() else None,
                    "accuracy": float(correct[inside].mean()) if inside.any() else None})
    return out
