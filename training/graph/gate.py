"""The chest gate, inside the exported graph: "is this a frontal chest radiograph, upright and not inverted?"

A small head on what the lung segmenter already computes: the bottom of its encoder (112 channels on a 10 x 10 grid
of the image squashed to 160 x 160, Lite0's ImageNet features fine-tuned on lung masks) and its lung probabilities
pooled to the same grid. Where the lungs are, how bright they are against the mediastinum and which way up the
shoulders and diaphragm lie all show there; the grid is flattened, not pooled, so the head knows where on the
image each feature is (upside down and rotated films differ from upright ones mostly in *where* things are).
The encoder is frozen: the gate adds about 40k parameters and one small convolution to the graph.

Outputs: `gate`, the probability of a frontal chest radiograph, and `gate_reason`, the index (in REASONS) of the
most likely other kind, which names why an image is refused when `gate` is below the threshold stored in
model.json. The gate is trained on the segmenter it reads (`cxr gate-train`) and keeps that segmenter's SHA-256:
export refuses to pair it with another one.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .files import load_kind, save_tensors

# The kinds the gate tells apart; the first is the one that passes. The messages say what a user can do about it.
REASONS = ("frontal", "inverted", "upside_down", "rotated", "not_frontal", "not_radiograph")
MESSAGES = {
    "inverted": "appears inverted (a negative): check the display settings (MONOCHROME1/2) and load the film again",
    "upside_down": "appears upside down: check the film's orientation",
    "rotated": "appears rotated by 90 degrees: check the film's orientation",
    "not_frontal": "not a frontal chest radiograph (a lateral view, a CT slice or another kind of image)",
    "not_radiograph": "not a radiograph (a photograph, a document, a screenshot or a blank image)",
}
BOTTOM_CHANNELS, GRID = 112, 10  # the segmenter's bottom: 112 channels at stride 16 of 160 px
GATE_FORMAT = 1


class GateHead(nn.Module):
    """(segmenter bottom [N,112,10,10], lung probabilities on its grid [N,1,10,10]) -> logits over REASONS [N,6]."""

    def __init__(self, hidden: int = 48, spatial: int = 32):
        super().__init__()
        self.mix = nn.Sequential(nn.Conv2d(BOTTOM_CHANNELS + 1, hidden, 1), nn.BatchNorm2d(hidden), nn.ReLU(),
                                 nn.Conv2d(hidden, spatial, 3, padding=1), nn.BatchNorm2d(spatial), nn.ReLU())
        self.classify = nn.Sequential(nn.Flatten(), nn.Dropout(0.3), nn.Linear(spatial * GRID * GRID, len(REASONS)))

    def forward(self, bottom: torch.Tensor, lungs: torch.Tensor) -> torch.Tensor:
        return self.classify(self.mix(torch.cat([bottom, lungs], 1)))


def lungs_on_grid(prob: torch.Tensor) -> torch.Tensor:
    """Lung probabilities [N,1,160,160] averaged onto the bottom's 10 x 10 grid."""
    return F.avg_pool2d(prob, prob.shape[-1] // GRID)


def gate_outputs(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Gate logits [N,6] -> (probability of a frontal chest film [N], index of the likeliest refusal reason [N],
    as float32 so that every runtime reads it the same way)."""
    p = torch.softmax(logits, dim=1)
    return p[:, 0], (p[:, 1:].argmax(dim=1) + 1).float()


def save_gate(head: GateHead, path, *, threshold: float, segmenter_sha256: str, info: dict) -> None:
    save_tensors({"format": GATE_FORMAT, "kind": "chest-gate", "reasons": list(REASONS), "model": head.state_dict(),
                  "threshold": float(threshold), "segmenter_sha256": segmenter_sha256, "info": info}, path)


def load_gate(path) -> tuple[GateHead, dict]:
    """(the head in eval mode, the rest of the file: threshold, reasons, segmenter_sha256, info)."""
    value = load_kind(path, "chest-gate", "chest gate", "cxr gate-train")
    if tuple(value["reasons"]) != REASONS:
        raise ValueError(f"{path}: its reasons {value['reasons']} are not this version's {list(REASONS)}")
    head = GateHead()
    head.load_state_dict(value.pop("model"))
    return head.eval(), value
