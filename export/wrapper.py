"""The exported model: decoded gray image in, calibrated probabilities, logits, exact CAM and OOD score out.

Input `image`: float32 [N, 1, H, W], values 0..255, N, H and W dynamic. Everything else happens in the graph:
preprocessing (training.preprocess), the classifier, softmax(logits / T), the closed-form Grad-CAM of every class
at the last conv layer, and the Mahalanobis OOD score of the pooled features.
"""

from __future__ import annotations

import torch
from torch import nn

from training.gradcam import cam_from_weights
from training.model import load_checkpoint
from training.ood import MahalanobisScore
from training.preprocess import GeometryConfig, Preprocess

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


def from_checkpoint(path) -> tuple[ExportModel, dict]:
    classifier, checkpoint = load_checkpoint(path)
    missing = [k for k in ("calibration", "ood") if k not in checkpoint]
    if missing:
        raise ValueError(f"{path} has no {' and no '.join(missing)} statistics: it is not a finished training run's "
                         "best.pt (training writes them after the last epoch)")
    pre = checkpoint["preprocess"]
    o = checkpoint["ood"]
    model = ExportModel(classifier, Preprocess(GeometryConfig.of(pre), pre["mean"], pre["std"]),
                        checkpoint["calibration"]["temperature"],
                        MahalanobisScore(o["means"], o["components"], o["eigenvalues"], o["residual_variance"]))
    return model.eval(), checkpoint
