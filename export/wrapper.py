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
"""

from __future__ import annotations

import torch
from torch import nn

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


class ExportModel(nn.Module):
    def __init__(self, classifier, preprocess: Preprocess, temperature: float, ood_score: MahalanobisScore,
                 lungs: LungCrop | None = None):
        super().__init__()
        self.preprocess = preprocess
        self.classifier = classifier
        self.register_buffer("temperature", torch.tensor(float(temperature)))
        self.ood_score = ood_score
        # The model's own lung crop (a checkpoint prepared with --lung-crop), or a segmenter given for the evidence.
        self.lungs = preprocess.geometry.lungs if preprocess.geometry.lungs is not None else lungs
        self.crops = self.lungs is not None and self.lungs.crop

    @property
    def output_names(self) -> tuple[str, ...]:
        return OUTPUT_NAMES + (LUNG_OUTPUTS if self.lungs is not None else ())

    def forward(self, image: torch.Tensor):
        if self.lungs is None:
            x = self.preprocess(image)
        else:
            crop, mask, box_pixels, fallback, box = self.lungs(image)
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
        return probabilities, logits, cam, ood, mask, box_pixels, fallback, evidence_in_lungs(cam_top, mask, box)


def lungs_for_evidence(path, size: int) -> LungCrop:
    """A segmenter that only measures the evidence in the lungs of a whole-image model (no crop)."""
    segmenter, rules, _ = load_segmenter(path)
    return LungCrop(segmenter, rules, size, crop=False)


def from_checkpoint(path, lungs=None) -> tuple[ExportModel, Checkpoint]:
    """The export model of a finished checkpoint; `lungs`: a segmenter file for the evidence outputs of a model
    that does not crop (one that crops brings its own)."""
    checkpoint = load_checkpoint(path).finished()
    preprocess = checkpoint.preprocessing()
    evidence = lungs_for_evidence(lungs, checkpoint.preprocess.geometry.size) if lungs and \
        preprocess.geometry.lungs is None else None
    model = ExportModel(checkpoint.classifier(), preprocess, checkpoint.temperature, checkpoint.ood_scorer(),
                        evidence)
    return model.eval(), checkpoint
