"""The exported model: decoded gray image in, calibrated probabilities, logits, exact CAM and OOD score out.

Input `image`: float32 [N, 1, H, W], values 0..255, N, H and W dynamic. Everything else happens in the graph:
preprocessing (training.preprocess), the classifier, softmax(logits / T), the closed-form Grad-CAM of every class
at the last conv layer, and the Mahalanobis OOD score of the pooled features.
"""

from __future__ import annotations

import torch
from torch import nn

from training.core.preprocess import Preprocess
from training.model.checkpoint import Checkpoint, load_checkpoint
from training.model.gradcam import cam_from_weights
from training.model.ood import MahalanobisScore

# The graph's names. export writes them into model.json (`input.name`, `output_names`), which is where the predictor,
# the API and the browser read them from.
INPUT_NAME = "image"
OUTPUT_NAMES = ("probabilities", "logits", "cam", "ood_score")


class ExportModel(nn.Module):
    def __init__(self, classifier, preprocess: Preprocess, temperature: float, ood_score: MahalanobisScore):
        super().__init__()
        self.preprocess = preprocess
        self.classifier = classifier
        self.register_buffer("temperature", torch.tensor(float(temperature)))
        self.ood_score = ood_score

    def forward(self, image: torch.Tensor):
        features, pooled = self.classifier.forward_features(self.preprocess(image))
        logits = self.classifier.fc(pooled)
        probabilities = torch.softmax(logits / self.temperature, dim=1)
        cam = cam_from_weights(features, self.classifier.fc.weight)
        return probabilities, logits, cam, self.ood_score(pooled)


def from_checkpoint(path) -> tuple[ExportModel, Checkpoint]:
    checkpoint = load_checkpoint(path).finished()
    model = ExportModel(checkpoint.classifier(), checkpoint.preprocessing(), checkpoint.temperature,
                        checkpoint.ood_scorer())
    return model.eval(), checkpoint
