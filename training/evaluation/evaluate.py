"""`cxr evaluate`: honest metrics of a checkpoint on one split (default: test).

Writes to --out: metrics.json (accuracy, per class PPV/sensitivity/specificity/F1/AUC, macro AUC, confusion matrix,
95% CIs by bootstrap over patients, all of it per data source too; calibration before/after; OOD flag rate; the
pointing game on data with lesion masks), PNG plots, Grad-CAM overlays of a sample of images, and report.md.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from core.checksum import sha256_file
from core.classes import CLASSES
from core.heatmap import hottest_point, overlay
from core.jsonio import write_json
from core.metrics import evaluate_predictions, expected_calibration_error, reliability_bins, within_source_aucs

from ..data.dataset import load_split
from ..model.calibration import nll
from ..model.checkpoint import load_checkpoint
from ..model.gradcam import gradcam
from ..model.inference import logits_and_features
from . import plots
from .report import report_markdown
from .robustness import reencoding_sensitivity
from .source_probe import source_probe


def pointing_game(model, normalize, split, predicted: np.ndarray) -> dict | None:
    """Where the heatmap of the predicted class points, on correctly classified images with a lesion mask.

    cell: the hottest cell of the CAM grid (7x7 at 224 px) overlaps the lesion; point: the hottest point of the
    map upsampled to the input lies inside the lesion (stricter: the grid is 32 px coarse).
    """
    chosen = [i for i, r in enumerate(split.rows) if r.get("mask") and r["label"] != "Normal"
              and predicted[i] == split.labels[i].item()]
    if not chosen:
        return None
    size = split.images.shape[-1]
    cell_hits = point_hits = 0
    for i in chosen:
        cam = gradcam(model, normalize(split.images[i : i + 1].float()))[0, predicted[i]].numpy()
        mask = np.asarray(Image.open(split.rows[i]["mask"]).convert("L").resize((size, size), Image.NEAREST)) > 127
        (h, w), (row, col) = cam.shape, np.unravel_index(int(cam.argmax()), cam.shape)
        cell_hits += bool(mask[row * size // h : (row + 1) * size // h, col * size // w : (col + 1) * size // w].any())
        point_hits += bool(mask[hottest_point(cam, size, size)])
    n = len(chosen)
    return {"images": n, "cell_hits": cell_hits, "cell_rate": cell_hits / n, "point_hits": point_hits,
            "point_rate": point_hits / n}


def noise_sensitivity(model, normalize, images: torch.Tensor, logits: torch.Tensor, levels: float = 2.0,
                      seed: int = 0) -> float:
    """Share of images whose predicted class changes when uniform noise of +-`levels` grey levels is added: a model
    that reads pixel-level texture (often the source's compression or noise) is fragile, and int8 quantisation,
    which adds noise of that size, then changes its answers."""
    generator = torch.Generator().manual_seed(seed)
    noisy = (images.float() + (torch.rand(images.shape, generator=generator) * 2 - 1) * levels).clamp(0, 255)
    noisy_logits, _ = logits_and_features(model, normalize, noisy)
    return float((noisy_logits.argmax(1) != logits.argmax(1)).float().mean())


def evaluate(checkpoint_path, data, out, split: str = "test", n_boot: int = 1000, gradcam_samples: int = 12,
             progress: bool = True) -> dict:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    ckpt = load_checkpoint(checkpoint_path).finished()
    model, normalize = ckpt.classifier(), ckpt.normalize()
    s = load_split(data, split)
    if len(s) == 0:
        raise ValueError(f"{data}: the {split} split is empty")
    size = ckpt.preprocess.geometry.size
    if s.images.shape[-1] != size:
        raise ValueError(f"{data} was prepared at {s.images.shape[-1]} px, the model expects {size} px")
    logits, features = logits_and_features(model, normalize, s.images,
                                           progress=f"{split} predictions" if progress else None)
    temperature = ckpt.temperature
    raw = torch.softmax(logits.double(), 1).numpy()
    probs = torch.softmax(logits.double() / temperature, 1).numpy()
    y = s.labels.numpy()
    patients = [r["patient_id"] for r in s.rows]
    sources = [r["source"] for r in s.rows]

    result = {"checkpoint": str(checkpoint_path), "checkpoint_sha256": sha256_file(checkpoint_path),
              "split": split, "arch": ckpt.arch, "weights_origin": ckpt.weights_origin, "classes": list(CLASSES),
              "images": len(s),
              "patients": len(set(patients)), "bootstrap": n_boot, "temperature": temperature}
    result.update(evaluate_predictions(y, probs, patients, sources, n_boot))
    result["within_source"] = within_source_aucs(y, probs, patients, sources, n_boot)
    result["source_probe"] = source_probe_all_splits(model, normalize, data, progress)
    result["calibration"] = {"nll_before": nll(logits, s.labels), "nll_after": nll(logits, s.labels, temperature),
                             "ece_before": expected_calibration_error(raw, y),
                             "ece_after": expected_calibration_error(probs, y)}
    with torch.no_grad():
        scores = ckpt.ood_scorer()(features).numpy()
    result["ood"] = {"threshold": ckpt.ood_threshold, "percentile": ckpt.ood["percentile"],
                     "flagged_rate": float((scores > ckpt.ood_threshold).mean())}
    predicted = probs.argmax(1)
    result["noise_sensitivity"] = {"levels": 2.0, "changed_top1": noise_sensitivity(model, normalize, s.images, logits)}
    result["reencoding"] = reencoding_sensitivity(ckpt, [r["file"] for r in s.rows])
    result["pointing_game"] = pointing_game(model, normalize, s, predicted)

    figures = {"roc": plots.roc_curves(y, probs, out / "roc.png"),
               "confusion": plots.confusion(result["all"]["confusion"], out / "confusion.png"),
               "reliability": plots.reliability(reliability_bins(raw, y), reliability_bins(probs, y),
                                                out / "reliability.png")}
    curves = plots.training_curves(Path(checkpoint_path).parent / "log.csv", out / "training_curves.png")
    if curves:
        figures["training_curves"] = curves
    result["gradcam_overlays"] = _overlays(model, normalize, s, probs, gradcam_samples, out / "gradcam")
    result["figures"] = {k: Path(v).name for k, v in figures.items()}
    write_json(out / "metrics.json", result)
    (out / "report.md").write_text(report_markdown(result))
    return result


def source_probe_all_splits(model, normalize, data, progress: bool = False) -> dict | None:
    """The source probe on the pooled features of every image (all splits: the probe is cross-validated itself)."""
    splits = [load_split(data, name) for name in ("train", "val", "test")]
    rows = [r for sp in splits for r in sp.rows]
    if len({r["source"] for r in rows}) < 2:
        return None
    images = torch.cat([sp.images for sp in splits])
    _, features = logits_and_features(model, normalize, images, progress="source probe features" if progress else None)
    return source_probe(features.numpy(), np.array([CLASSES.index(r["label"]) for r in rows]),
                        [r["source"] for r in rows], [r["patient_id"] for r in rows])


def _overlays(model, normalize, s, probs, n: int, folder: Path) -> list[str]:
    """Side-by-side image | Grad-CAM of the predicted class, for an evenly spread sample of the split."""
    if n <= 0:
        return []
    folder.mkdir(exist_ok=True)
    names = []
    for i in np.linspace(0, len(s) - 1, min(n, len(s))).astype(int):
        k = int(probs[i].argmax())
        cam = gradcam(model, normalize(s.images[i : i + 1].float()))[0, k].numpy()
        gray = s.images[i, 0].numpy()
        panel = np.concatenate([np.repeat(gray[..., None], 3, 2), overlay(gray, cam)], axis=1)
        name = f"{i:04d}_true-{s.rows[i]['label']}_pred-{CLASSES[k]}_{probs[i, k]:.2f}.png".replace(" ", "")
        Image.fromarray(panel).save(folder / name)
        names.append(f"gradcam/{name}")
    return names
