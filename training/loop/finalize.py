"""After the last epoch: temperature scaling on validation and the OOD statistics, stored in best.pt."""

from __future__ import annotations

from pathlib import Path

import torch

from core.classes import CLASSES
from core.metrics import expected_calibration_error

from ..model import ood
from ..model.calibration import fit_temperature, nll
from ..model.checkpoint import load_checkpoint
from ..model.inference import logits_and_features


def finalize(best_path: Path, train_split, val_split, cfg, progress: bool, device: torch.device | str = "cpu") -> dict:
    """Calibrate the best model on validation and fit the OOD statistics on training features; store both in
    best.pt. Returns {"calibration", "ood_threshold"}."""
    best = load_checkpoint(best_path)
    model = best.classifier().to(device, memory_format=torch.channels_last)
    normalize = best.normalize().to(device)
    val_logits, val_features = logits_and_features(model, normalize, val_split.images, cfg.eval_batch_size,
                                       "validation" if progress else None, device)
    _, train_features = logits_and_features(model, normalize, train_split.images, cfg.eval_batch_size,
                                "train features" if progress else None, device)

    labels = val_split.labels
    if len(val_split):
        temperature = fit_temperature(val_logits, labels)
        before = torch.softmax(val_logits.double(), 1).numpy()
        after = torch.softmax(val_logits.double() / temperature, 1).numpy()
        calibration = {"temperature": temperature, "fitted_on": "val", "n": len(val_split),
                       "nll_before": nll(val_logits, labels), "nll_after": nll(val_logits, labels, temperature),
                       "ece_before": expected_calibration_error(before, labels.numpy()),
                       "ece_after": expected_calibration_error(after, labels.numpy())}
    else:
        calibration = {"temperature": 1.0, "fitted_on": "nothing (empty validation split)", "n": 0}

    scorer = ood.fit(train_features.numpy(), train_split.labels.numpy(), len(CLASSES), cfg.ood_dims)
    with torch.no_grad():
        val_scores = scorer(val_features).numpy() if len(val_split) else scorer(train_features).numpy()
    best.calibration = calibration
    best.ood = {**scorer.state(), "percentile": cfg.ood_percentile,
                "threshold": ood.threshold(val_scores, cfg.ood_percentile),
                "threshold_from": "val" if len(val_split) else "train"}
    best.save(best_path)
    return {"calibration": calibration, "ood_threshold": best.ood["threshold"]}
