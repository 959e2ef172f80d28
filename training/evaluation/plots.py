"""PNG figures for the evaluation report (matplotlib, no display needed)."""

from __future__ import annotations

import csv
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.metrics import roc_curve  # noqa: E402

from core.classes import CLASSES  # noqa: E402


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def roc_curves(y, probs, path: Path, title: str = "") -> Path:
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    for k, name in enumerate(CLASSES):
        positive = y == k
        if positive.any() and not positive.all():
            fpr, tpr, _ = roc_curve(positive, probs[:, k])
            ax.plot(fpr, tpr, label=name)
    ax.plot([0, 1], [0, 1], "k:", lw=1)
    ax.set(xlabel="1 - specificity", ylabel="sensitivity", title=title or "ROC, one vs rest")
    ax.legend(loc="lower right")
    return _save(fig, path)


def confusion(matrix, path: Path) -> Path:
    matrix = np.asarray(matrix)
    fig, ax = plt.subplots(figsize=(4.5, 4))
    ax.imshow(matrix, cmap="Blues")
    for (i, j), n in np.ndenumerate(matrix):
        ax.text(j, i, str(n), ha="center", va="center", color="white" if n > matrix.max() / 2 else "black")
    ax.set(xticks=range(len(CLASSES)), yticks=range(len(CLASSES)), xticklabels=CLASSES, yticklabels=CLASSES,
           xlabel="predicted", ylabel="true", title="Confusion matrix")
    return _save(fig, path)


def reliability(bins_before, bins_after, path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.plot([0, 1], [0, 1], "k:", lw=1)
    for bins, label in ((bins_before, "before"), (bins_after, "after temperature scaling")):
        pts = [(b["confidence"], b["accuracy"]) for b in bins if b["count"]]
        if pts:
            ax.plot(*zip(*pts), "o-", label=label)
    ax.set(xlabel="confidence (top class)", ylabel="accuracy", xlim=(0, 1), ylim=(0, 1), title="Reliability")
    ax.legend(loc="upper left")
    return _save(fig, path)


def training_curves(log_csv: Path, path: Path) -> Path | None:
    if not Path(log_csv).exists():
        return None
    with open(log_csv, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return None
    epoch = [int(r["epoch"]) for r in rows]
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.5))
    left.plot(epoch, [float(r["train_loss"]) for r in rows], label="train loss")
    left.plot(epoch, [float(r["val_loss"]) for r in rows], label="validation loss")
    left.set(xlabel="epoch", title="Loss")
    left.legend()
    right.plot(epoch, [float(r["val_macro_auc"]) for r in rows], label="validation macro AUC")
    right.plot(epoch, [float(r["val_accuracy"]) for r in rows], label="validation accuracy")
    right.set(xlabel="epoch", ylim=(0, 1), title="Validation")
    right.legend()
    return _save(fig, path)
