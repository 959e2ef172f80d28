"""The lung outputs of the exported graph (training/graph/lungs.py, export/wrapper.py), on a construction whose
answer is known: a segmenter that calls everything brighter than 50 lung, and a classifier whose CAM is the
image's brightness. The map must come back to where the lesion is on the original image, through the crop."""

import json

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from core.heatmap import hottest_point
from export.onnx_export import export_fp32
from export.wrapper import INPUT_NAME, LUNG_OUTPUTS, OUTPUT_NAMES, ExportModel
from runtime.predictor import Predictor, heatmap
from training.graph.lungs import LUNG_SIZE, LungCrop, LungRules
from training.graph.preprocess import Preprocess
from training.graph.resample import resize
from training.model.classifier import Classifier
from training.model.ood import MahalanobisScore

LUNG = (40, 60, 190, 260)  # x0, y0, x1, y1 in pixels of a 300 x 400 (rows x cols) image: left of centre
LESION = (80, 120, 110, 150)


class BrightIsLung(nn.Module):
    """Lung logits: positive wherever the image is brighter than 50 grey levels."""

    size = LUNG_SIZE

    def forward(self, image):
        return resize(image, LUNG_SIZE) - 50.0


def _image() -> np.ndarray:
    image = np.zeros((300, 400), np.float32)
    x0, y0, x1, y1 = LUNG
    image[y0:y1, x0:x1] = 100
    x0, y0, x1, y1 = LESION
    image[y0:y1, x0:x1] = 250
    return image


def _model(crop: bool) -> ExportModel:
    features = nn.Sequential(nn.AvgPool2d(32))  # [N,3,224,224] -> [N,3,7,7]: brightness per cell, stride 32
    classifier = Classifier(features, 3)
    with torch.no_grad():
        classifier.fc.weight.copy_(torch.tensor([[1.0, 1.0, 1.0], [0.0, 0.0, 0.0], [-1.0, -1.0, -1.0]]))
        classifier.fc.bias.copy_(torch.tensor([5.0, 0.0, 0.0]))
    ood = MahalanobisScore(torch.zeros(3, 3), torch.eye(3)[:, :2], torch.ones(2), 1.0)
    lungs = LungCrop(BrightIsLung(), LungRules(min_area=0.01, max_area=0.9, min_side=0.0, margin=0.02), 224, crop)
    return ExportModel(classifier.eval(), Preprocess(224, (0.0,) * 3, (1 / 255,) * 3), 1.0, ood, lungs).eval()


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    folder = tmp_path_factory.mktemp("lungs")
    model = _model(crop=True)
    assert model.output_names == OUTPUT_NAMES + LUNG_OUTPUTS
    export_fp32(model, folder / "model.onnx")
    card = {"classes": ["COVID-19", "Normal", "Pneumonia"], "input": {"name": INPUT_NAME},
            "output_names": list(model.output_names), "ood_threshold": 1e9, "lungs": {"evidence_threshold": 0.5}}
    (folder / "model.json").write_text(json.dumps(card))
    Image.fromarray(_image().astype(np.uint8)).save(folder / "xray.png")
    return folder, model


def test_the_map_lands_on_the_lesion_of_the_original_image(exported):
    folder, _ = exported
    result, gray, cams = Predictor(folder / "model.onnx").predict_file(folder / "xray.png")
    x0, y0, x1, y1 = result["crop_box"]
    assert not result["lung_fallback"]
    # The box is the lung rectangle, widened by the 2% margin (of the 160-cell mask's sides).
    assert abs(x0 - (LUNG[0] - 8)) <= 4 and abs(x1 - (LUNG[2] + 8)) <= 4
    assert abs(y0 - (LUNG[1] - 6)) <= 4 and abs(y1 - (LUNG[3] + 6)) <= 4
    row, col = heatmap(gray, cams, result)[1]
    assert LESION[1] <= row < LESION[3] and LESION[0] <= col < LESION[2], (row, col)
    row, col = hottest_point(cams[0], *gray.shape)  # the same map spread over the whole image points elsewhere
    assert not (LESION[1] <= row < LESION[3] and LESION[0] <= col < LESION[2])
    assert result["lung_evidence"] > 0.9 and not result["lung_evidence_low"]


def test_onnx_equals_pytorch_on_every_lung_output(exported):
    folder, model = exported
    x = torch.as_tensor(_image())[None, None]
    with torch.no_grad():
        expected = dict(zip(model.output_names, model(x)))
    import onnxruntime as ort

    sess = ort.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
    got = dict(zip(model.output_names, sess.run(list(model.output_names), {INPUT_NAME: x.numpy()})))
    for name in model.output_names:
        np.testing.assert_allclose(got[name], expected[name].numpy(), atol=1e-4, err_msg=name)


def test_an_implausible_mask_falls_back_to_the_whole_image():
    model = _model(crop=True)
    dark = torch.zeros(1, 1, 300, 400)  # nothing brighter than 50: no lung at all
    with torch.no_grad():
        out = dict(zip(model.output_names, model(dark)))
    assert out["lung_fallback"].tolist() == [1.0]
    assert out["crop_box"][0].tolist() == [0.0, 0.0, 400.0, 300.0]


def test_without_the_crop_the_box_is_the_whole_image_and_evidence_is_measured():
    model = _model(crop=False)
    with torch.no_grad():
        out = dict(zip(model.output_names, model(torch.as_tensor(_image())[None, None])))
    assert out["crop_box"][0].tolist() == [0.0, 0.0, 400.0, 300.0] and out["lung_fallback"].tolist() == [0.0]
    assert 0.5 < float(out["lung_evidence"][0]) <= 1.0
