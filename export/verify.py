"""Verification of exported models: each check is a row (name, measured, limit, passed) of one table.

- fp32 ONNX vs PyTorch at several input sizes and batch sizes. The PyTorch side is computed independently of the
  export wrapper, straight from the checkpoint (its preprocessing, classifier and OOD scorer; softmax with the
  temperature in float64; autograd Grad-CAM), so a wrong temperature or a perturbed weight in the exported copy
  fails.
- int8 vs fp32 on the test split: top-1 agreement, macro AUC drop, heatmap correlation, OOD decision agreement.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import onnxruntime as ort
import torch

from core.classes import CLASSES
from core.markdown import table as markdown_table
from core.metrics import macro_auc
from runtime.session import open_session
from training.data.phantoms import phantom
from training.graph.gate import load_gate, lungs_on_grid
from training.graph.lungs import evidence_in_lungs
from training.model.checkpoint import Checkpoint, load_checkpoint
from training.model.gradcam import gradcam

from .wrapper import INPUT_NAME, OUTPUT_NAMES

# (batch, height, width): non-square, 200 px to 3000 px sides, batch 1 and 3.
PARITY_SIZES = ((1, 224, 224), (1, 200, 320), (3, 512, 384), (1, 1024, 1024), (1, 3000, 2000), (3, 240, 900))

LIMITS = {
    "probabilities_max_abs": 1e-4,
    "cam_max_abs_of_range": 1e-3,
    "ood_max_rel": 1e-4,
    "int8_top1_agreement": 0.98,
    "int8_macro_auc_drop": 0.01,
    "int8_heatmap_correlation": 0.95,
    "int8_ood_agreement": 0.98,
    "lung_mask_max_abs": 1e-4,
    # The box comes from a thresholded mask: a probability within rounding of 0.5 can move an edge by one mask cell
    # (1/160 of the side); more than that is a real difference.
    "crop_box_of_side": 1 / 160 + 1e-4,
    "lung_evidence_max_abs": 1e-3,
    "gate_max_abs": 1e-4,
    "int8_lung_evidence": 0.05,
}


@dataclass
class Check:
    name: str
    measured: float
    limit: float
    passed: bool

    def __post_init__(self):
        self.measured, self.passed = float(self.measured), bool(self.passed)

    def cells(self) -> list[str]:
        return [self.name, f"{self.measured:.3g}", f"{self.limit:g}", "PASS" if self.passed else "FAIL"]


def table(checks: list[Check]) -> str:
    return markdown_table(["check", "measured", "limit", "result"], [c.cells() for c in checks], "lrrl")


def as_dicts(checks: list[Check]) -> list[dict]:
    return [asdict(c) for c in checks]


def session(path) -> ort.InferenceSession:
    return open_session(path)


def outputs(sess: ort.InferenceSession, batch: np.ndarray) -> dict:
    """Every output of the graph by name."""
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(names, {INPUT_NAME: np.asarray(batch, np.float32)})))


def parity_batch(n: int, height: int, width: int, seed: int = 0) -> np.ndarray:
    """Realistic test inputs of any size: phantoms of every label, resampled (bicubic) to height x width."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    images = [np.asarray(Image.fromarray(phantom(rng, CLASSES[i % len(CLASSES)], 256)[0])
                         .resize((width, height), Image.BICUBIC), np.float32) for i in range(n)]
    return np.stack(images)[:, None]


@torch.no_grad()
def _reference_no_grad(classifier, checkpoint: Checkpoint, x):
    inputs = checkpoint.preprocessing()(x)
    _, pooled = classifier.forward_features(inputs)
    logits = classifier.fc(pooled)
    ood = checkpoint.ood_scorer()(pooled)
    return inputs, torch.softmax(logits.double() / checkpoint.temperature, 1), ood


def reference(classifier, checkpoint: Checkpoint, batch: np.ndarray, lungs=None, gate=None) -> dict:
    """What the exported model must output, computed in PyTorch from the checkpoint alone (and, for the lung
    outputs, the segmenter `lungs`: a training.graph.lungs.LungCrop; for the gate outputs, its head `gate`,
    in float64 from the segmenter's own forward pass)."""
    x = torch.as_tensor(batch, dtype=torch.float32)
    inputs, probabilities, ood = _reference_no_grad(classifier, checkpoint, x)
    cam = gradcam(classifier, inputs)
    out = {"probabilities": probabilities.numpy(), "cam": cam.numpy(), "ood_score": ood.double().numpy()}
    if lungs is not None:
        with torch.no_grad():
            _, mask, box_pixels, fallback, box = lungs(x)
            top = probabilities.argmax(1)
            evidence = evidence_in_lungs(cam[torch.arange(len(top)), top], mask, box)
        out.update(lung_mask=mask.numpy(), crop_box=box_pixels.numpy(), lung_fallback=fallback.numpy(),
                   lung_evidence=evidence.numpy())
    if gate is not None:
        with torch.no_grad():
            logits, bottom = lungs.segmenter.with_bottom(x)
            p = torch.softmax(gate(bottom, lungs_on_grid(torch.sigmoid(logits))).double(), 1)
        out.update(gate=p[:, 0].numpy(), gate_probabilities=p.numpy())
    return out


def reference_lungs(checkpoint: Checkpoint, lungs_path=None):
    """The LungCrop the export carries: the checkpoint's own (lung crop) or a segmenter file's (evidence only)."""
    own = checkpoint.preprocessing().geometry.lungs
    if own is not None or lungs_path is None:
        return own
    from .wrapper import lungs_for_evidence

    return lungs_for_evidence(lungs_path, checkpoint.preprocess.geometry.size)


def check_fp32(onnx_path, checkpoint_path, sizes=PARITY_SIZES, lungs_path=None, gate_path=None) -> list[Check]:
    checkpoint = load_checkpoint(checkpoint_path).finished()
    classifier = checkpoint.classifier()
    lungs = reference_lungs(checkpoint, lungs_path)
    gate = load_gate(gate_path)[0] if gate_path else None
    sess = session(onnx_path)
    diffs = {"probabilities": [], "cam": [], "ood": [], "lung_mask": [], "crop_box": [], "lung_fallback": [],
             "lung_evidence": [], "gate": [], "gate_reason": []}
    for i, (n, h, w) in enumerate(sizes):
        batch = parity_batch(n, h, w, seed=i)
        got, ref = outputs(sess, batch), reference(classifier, checkpoint, batch, lungs, gate)
        diffs["probabilities"].append(np.abs(got["probabilities"] - ref["probabilities"]).max())
        cam_range = max(float(ref["cam"].max() - ref["cam"].min()), 1e-12)
        diffs["cam"].append(np.abs(got["cam"] - ref["cam"]).max() / cam_range)
        diffs["ood"].append((np.abs(got["ood_score"] - ref["ood_score"]) / np.abs(ref["ood_score"])).max())
        if lungs is not None:
            diffs["lung_mask"].append(np.abs(got["lung_mask"] - ref["lung_mask"]).max())
            diffs["crop_box"].append((np.abs(got["crop_box"] - ref["crop_box"]) / max(h, w)).max())
            diffs["lung_fallback"].append(np.abs(got["lung_fallback"] - ref["lung_fallback"]).max())
            diffs["lung_evidence"].append(np.abs(got["lung_evidence"] - ref["lung_evidence"]).max())
        if gate is not None:
            diffs["gate"].append(np.abs(got["gate"] - ref["gate"]).max())
            diffs["gate_reason"].append(_reason_mismatches(got["gate_reason"], ref["gate_probabilities"]))
    worst = {k: float(np.max(v)) if v else None for k, v in diffs.items()}  # np.max keeps a NaN: it fails
    where = f"{len(sizes)} sizes"
    lung_checks = [] if lungs is None else [
        Check(f"fp32 vs PyTorch: lung_mask max abs diff ({where})", worst["lung_mask"], LIMITS["lung_mask_max_abs"],
              worst["lung_mask"] <= LIMITS["lung_mask_max_abs"]),
        Check(f"fp32 vs PyTorch: crop_box max abs diff / image side ({where})", worst["crop_box"],
              LIMITS["crop_box_of_side"], worst["crop_box"] <= LIMITS["crop_box_of_side"]),
        Check(f"fp32 vs PyTorch: lung_fallback decisions differing ({where})", worst["lung_fallback"], 0,
              worst["lung_fallback"] == 0),
        Check(f"fp32 vs PyTorch: lung_evidence max abs diff ({where})", worst["lung_evidence"],
              LIMITS["lung_evidence_max_abs"], worst["lung_evidence"] <= LIMITS["lung_evidence_max_abs"]),
    ]
    gate_checks = [] if gate is None else [
        Check(f"fp32 vs PyTorch: gate max abs diff ({where})", worst["gate"], LIMITS["gate_max_abs"],
              worst["gate"] <= LIMITS["gate_max_abs"]),
        Check(f"fp32 vs PyTorch: gate_reason differing where the reasons are not tied ({where})",
              worst["gate_reason"], 0, worst["gate_reason"] == 0),
    ]
    return lung_checks + gate_checks + [
        Check(f"fp32 vs PyTorch: probabilities max abs diff ({where})", worst["probabilities"],
              LIMITS["probabilities_max_abs"], worst["probabilities"] <= LIMITS["probabilities_max_abs"]),
        Check(f"fp32 cam vs autograd Grad-CAM: max abs diff / range ({where})", worst["cam"],
              LIMITS["cam_max_abs_of_range"], worst["cam"] <= LIMITS["cam_max_abs_of_range"]),
        Check(f"fp32 vs PyTorch: ood_score max rel diff ({where})", worst["ood"], LIMITS["ood_max_rel"],
              worst["ood"] <= LIMITS["ood_max_rel"]),
    ]


def _reason_mismatches(got: np.ndarray, probabilities: np.ndarray) -> int:
    """Images whose exported refusal reason differs from the reference's, leaving out near-ties (the two likeliest
    reasons within 1e-4, where rounding may pick either)."""
    others = probabilities[:, 1:]
    top2 = np.sort(others, axis=1)[:, -2:]
    clear = (top2[:, 1] - top2[:, 0]) > 1e-4
    return int(((got.astype(int) != others.argmax(1) + 1) & clear).sum())


def predict_all(sess, images: list[np.ndarray]) -> dict:
    """Outputs for a list of 2-D gray images of any sizes, one at a time, stacked."""
    outs = [outputs(sess, image[None, None]) for image in images]
    return {k: np.concatenate([o[k] for o in outs]) for k in outs[0]}


def _correlation(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.ravel().astype(np.float64), b.ravel().astype(np.float64)
    if a.std() == 0 or b.std() == 0:
        return 1.0 if np.allclose(a, b) else 0.0
    return float(np.corrcoef(a, b)[0, 1])


def compare_int8(fp32: dict, int8: dict, labels: np.ndarray, threshold: float, fp32_ood: dict,
                 int8_ood: dict) -> list[Check]:
    """int8 vs fp32 outputs on the same images: the test split, and non-X-ray images (`*_ood`, whose OOD flag must
    survive quantisation too)."""
    finite = all(np.isfinite(out[k]).all() for out in (fp32, int8, fp32_ood, int8_ood) for k in OUTPUT_NAMES)
    if not finite:
        return [Check("int8 and fp32 outputs are finite", 0, 1, False)]
    top = fp32["probabilities"].argmax(1)
    agreement = float((top == int8["probabilities"].argmax(1)).mean())
    drop = macro_auc(labels, fp32["probabilities"]) - macro_auc(labels, int8["probabilities"])
    drop = 0.0 if np.isnan(drop) else float(drop)
    correlation = float(np.mean([_correlation(fp32["cam"][i, k], int8["cam"][i, k]) for i, k in enumerate(top)]))
    ood = float(((fp32["ood_score"] > threshold) == (int8["ood_score"] > threshold)).mean())
    outliers = float(((fp32_ood["ood_score"] > threshold) == (int8_ood["ood_score"] > threshold)).mean())
    n = f"{len(labels)} test images"
    return [
        Check(f"int8 vs fp32: top-1 agreement ({n})", agreement, LIMITS["int8_top1_agreement"],
              agreement >= LIMITS["int8_top1_agreement"]),
        Check(f"int8 vs fp32: macro AUC drop ({n})", drop, LIMITS["int8_macro_auc_drop"],
              drop <= LIMITS["int8_macro_auc_drop"]),
        Check(f"int8 vs fp32: mean heatmap correlation ({n})", correlation, LIMITS["int8_heatmap_correlation"],
              correlation >= LIMITS["int8_heatmap_correlation"]),
        Check(f"int8 vs fp32: OOD decision agreement ({n})", ood, LIMITS["int8_ood_agreement"],
              ood >= LIMITS["int8_ood_agreement"]),
        Check(f"int8 vs fp32: OOD decision agreement ({len(fp32_ood['ood_score'])} non-X-ray images)", outliers,
              LIMITS["int8_ood_agreement"], outliers >= LIMITS["int8_ood_agreement"]),
    ] + _compare_lungs(fp32, int8, n)


def _compare_lungs(fp32: dict, int8: dict, n: str) -> list[Check]:
    """The lung outputs must survive quantisation too: the same fallback decisions, close evidence shares."""
    if "lung_evidence" not in fp32:
        return []
    fallback = float(((fp32["lung_fallback"] > 0.5) == (int8["lung_fallback"] > 0.5)).mean())
    evidence = float(np.abs(fp32["lung_evidence"] - int8["lung_evidence"]).mean())
    return [Check(f"int8 vs fp32: lung fallback agreement ({n})", fallback, LIMITS["int8_ood_agreement"],
                  fallback >= LIMITS["int8_ood_agreement"]),
            Check(f"int8 vs fp32: mean lung evidence difference ({n})", evidence, LIMITS["int8_lung_evidence"],
                  evidence <= LIMITS["int8_lung_evidence"])]
