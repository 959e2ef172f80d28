"""The exported model: decoded gray image in, calibrated probabilities, logits, exact CAM and OOD score out, and,
with a lung segmenter, the lung mask, the box the classifier saw, the fallback flag and the evidence in the lungs.

Input `image`: float32 [N, 1, H, W], values 0..255, N, H and W dynamic. Everything else happens in the graph:
preprocessing (training/graph/preprocess.py; with the lung crop, training/graph/lungs.py first), the classifier,
softmax(logits / T), the closed-form Grad-CAM of every class at the last conv layer, and the Mahalanobis OOD score
of the pooled features.

Lung outputs (docs/lungs.md), present when the model crops to the lungs or is exported with a segmenter:
- `lung_mask` [N,1,160,160]: lung probabilities over the whole image;
- `crop_box` [N,4]: x0, y0, x1, y1 in input pixels, the region the classifier saw and `cam` covers (the whole
  image when the model does not crop, or falls back);
- `lung_fallback` [N]: 1 where the mask was implausible (the whole image was used, the evidence share means little);
- `lung_evidence` [N]: the share of the top class's CAM mass inside the predicted lungs, 0..1.

Chest gate outputs (training/graph/gate.py), present when exported with a gate (it reads the segmenter's encoder):
- `gate` [N]: the probability that the image is a frontal chest radiograph, upright and not inverted;
- `gate_reason` [N]: the index, in model.json `gate.reasons`, of the likeliest other kind (why it is refused).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from core.checksum import sha256_file
from training.graph.gate import GateHead, gate_outputs, load_gate, lungs_on_grid
from training.graph.lungs import LungCrop, evidence_in_lungs, load_segmenter
from training.graph.preprocess import Preprocess
from training.model.checkpoint import Checkpoint, load_checkpoint
from training.model.gradcam import cam_from_weights
from training.model.ood import MahalanobisScore

# The graph's names. export writes them into model.json (`input.name`, `output_names`), which is where the predictor,
# the API and the browser read them from.
INPUT_NAME = "image"
OUTPUT_NAMES = ("probabilities", "logits", "cam", "ood_score")
LUNG_OUTPUTS = ("lung_mask", "crop_box", "lung_fallback", "lung_evidence")
GATE_OUTPUTS = ("gate", "gate_reason")


class ExportModel(nn.Module):
    def __init__(self, classifier, preprocess: Preprocess, temperature: float, ood_score: MahalanobisScore,
                 lungs: LungCrop | None = None, gate: GateHead | None = None):
        super().__init__()
        self.preprocess = preprocess
        self.classifier = classifier
        self.register_buffer("temperature", torch.tensor(float(temperature)))
        self.ood_score = ood_score
        # The model's own lung crop (a checkpoint prepared with --lung-crop), or a segmenter given for the evidence.
        self.lungs = preprocess.geometry.lungs if preprocess.geometry.lungs is not None else lungs
        self.crops = self.lungs is not None and self.lungs.crop
        if gate is not None and self.lungs is None:
            raise ValueError("the chest gate reads the lung segmenter: export it with one")
        self.gate = gate

    @property
    def output_names(self) -> tuple[str, ...]:
        return (OUTPUT_NAMES + (LUNG_OUTPUTS if self.lungs is not None else ())
                + (GATE_OUTPUTS if self.gate is not None else ()))

    def forward(self, image: torch.Tensor):
        if self.lungs is None:
            x = self.preprocess(image)
        else:
            # One pass serves the lungs and the gate (which reads the segmenter's bottom).
            logits, bottom = (self.lungs.segmenter.with_bottom(image) if self.gate is not None
                              else (self.lungs.segmenter(image), None))
            mask = torch.sigmoid(logits)
            crop, _, box_pixels, fallback, box = self.lungs.place(image, mask)
            # With the lung crop, the crop is the classifier's image; otherwise the segmenter only looks.
            x = self.preprocess.normalize(self.preprocess.geometry.text(crop)) if self.crops else self.preprocess(image)
        features, pooled = self.classifier.forward_features(x)
        logits = self.classifier.fc(pooled)
        probabilities = torch.softmax(logits / self.temperature, dim=1)
        cam = cam_from_weights(features, self.classifier.fc.weight)
        ood = self.ood_score(pooled)
        if self.lungs is None:
            return probabilities, logits, cam, ood
        top = probabilities.argmax(dim=1)
        cam_top = torch.gather(cam, 1, top[:, None, None, None].expand(-1, 1, *cam.shape[2:]))[:, 0]
        lung_outputs = (mask, box_pixels, fallback, evidence_in_lungs(cam_top, mask, box))
        if self.gate is None:
            return probabilities, logits, cam, ood, *lung_outputs
        return probabilities, logits, cam, ood, *lung_outputs, *gate_outputs(self.gate(bottom, lungs_on_grid(mask)))


def lungs_for_evidence(path, size: int) -> LungCrop:
    """A segmenter that only measures the evidence in the lungs of a whole-image model (no crop)."""
    segmenter, rules, _ = load_segmenter(path)
    return LungCrop(segmenter, rules, size, crop=False)


def from_checkpoint(path, lungs=None, gate=None) -> tuple[ExportModel, Checkpoint]:
    """The export model of a finished checkpoint; `lungs`: a segmenter file for the evidence outputs of a model
    that does not crop (one that crops brings its own); `gate`: a chest gate file (`cxr gate-train`), trained on the
    very segmenter the model carries."""
    checkpoint = load_checkpoint(path).finished()
    preprocess = checkpoint.preprocessing()
    evidence = lungs_for_evidence(lungs, checkpoint.preprocess.geometry.size) if lungs and \
        preprocess.geometry.lungs is None else None
    model = ExportModel(checkpoint.classifier(), preprocess, checkpoint.temperature, checkpoint.ood_scorer(),
                        evidence, gate_for(gate, segmenter_file(checkpoint, lungs)) if gate else None)
    return model.eval(), checkpoint


def segmenter_file(checkpoint: Checkpoint, lungs=None):
    """The segmenter file an export carries: the model's own crop's, else the one given for the evidence."""
    own = checkpoint.preprocess.geometry.lung_crop
    return Path(own) if own else (Path(lungs) if lungs else None)


def gate_for(path, segmenter) -> GateHead:
    """The gate's head, refused unless it was trained on `segmenter` (it reads that encoder's features)."""
    head, info = load_gate(path)
    if segmenter is None:
        raise ValueError(f"{path}: the chest gate reads the lung segmenter: export with --lungs "
                         f"{info.get('info', {}).get('lungs', 'models/lung-segmenter/lungs.pt')}")
    if sha256_file(Path(segmenter)) != info["segmenter_sha256"]:
        raise ValueError(f"{path} was trained on another lung segmenter than {segmenter} (SHA-256 differs): "
                         "train the gate again with `cxr gate-train --lungs` on this one")
    return head
