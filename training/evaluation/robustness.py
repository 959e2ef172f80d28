"""How much a prediction moves when the same radiograph arrives re-encoded: as a JPEG of quality 95, 85 or 75, or
at half its resolution. The same film as PNG and as a quality-92 JPEG moved an earlier model's Normal probability
from 75.8% to 84.7%: a user's export settings should not change the answer.

Each test image is decoded from its original file, changed, decoded again through the project's decoder (as a
user's file would be), and classified by the full pipeline (in-graph preprocessing, calibrated softmax). Reported
per change: the mean and 95th percentile over images of the largest change of any class probability, and the
share of images whose top class changes.
"""

from __future__ import annotations

import io

import numpy as np
import torch
from PIL import Image

from core.decode import decode

CHANGES = ("jpeg95", "jpeg85", "jpeg75", "half")


def changed(gray: np.ndarray, change: str) -> np.ndarray:
    """The decoded image `gray` after `change`, decoded again from the bytes a user would have."""
    image = Image.fromarray(np.clip(np.round(gray), 0, 255).astype(np.uint8))
    buffer = io.BytesIO()
    if change.startswith("jpeg"):
        image.save(buffer, "JPEG", quality=int(change[4:]))
    elif change == "half":
        image.resize((max(1, image.width // 2), max(1, image.height // 2)), Image.Resampling.LANCZOS).save(
            buffer, "PNG")
    else:
        raise ValueError(f"unknown change {change!r}; choose one of {', '.join(CHANGES)}")
    return decode(buffer.getvalue(), name=change)


@torch.no_grad()
def _probabilities(classifier, preprocessing, temperature: float, gray: np.ndarray) -> np.ndarray:
    x = preprocessing(torch.as_tensor(gray, dtype=torch.float32)[None, None])
    return torch.softmax(classifier(x).double() / temperature, 1)[0].numpy()


def reencoding_sensitivity(checkpoint, files: list[str], changes=CHANGES) -> dict:
    """{change: {"n", "mean_abs_change", "p95_abs_change", "top1_changed"}} over `files` (a split's originals)."""
    classifier, preprocessing = checkpoint.classifier(), checkpoint.preprocessing()
    deltas = {c: [] for c in changes}
    flips = dict.fromkeys(changes, 0)
    for file in files:
        gray = decode(file)
        base = _probabilities(classifier, preprocessing, checkpoint.temperature, gray)
        for change in changes:
            p = _probabilities(classifier, preprocessing, checkpoint.temperature, changed(gray, change))
            deltas[change].append(float(np.abs(p - base).max()))
            flips[change] += int(p.argmax() != base.argmax())
    return {c: {"n": len(deltas[c]), "mean_abs_change": float(np.mean(deltas[c])) if deltas[c] else float("nan"),
                "p95_abs_change": float(np.percentile(deltas[c], 95)) if deltas[c] else float("nan"),
                "top1_changed": flips[c] / max(len(deltas[c]), 1)} for c in changes}
