import itertools

import numpy as np
import onnxruntime as ort
import torch
import torch.nn.functional as F
from PIL import Image

from training.data.phantoms import phantom
from training.graph.preprocess import IMAGENET_MEAN, IMAGENET_STD, Preprocess, resize_to_uint8


def _image(h, w, seed=0):
    """A realistic (smooth, integer-valued) gray image of any size: a phantom resampled with PIL."""
    from PIL import Image

    img, _ = phantom(np.random.default_rng(seed), "Pneumonia", 256)
    return np.asarray(Image.fromarray(img).resize((w, h), Image.BICUBIC), dtype=np.float32)


def test_output_shape_channels_and_normalisation():
    x = torch.full((2, 1, 300, 200), 255.0)
    y = Preprocess(64)(x)
    assert y.shape == (2, 3, 64, 64)
    # A white image becomes (1 - mean) / std per channel: checks scaling, normalisation and channel order.
    expected = [(1 - m) / s for m, s in zip(IMAGENET_MEAN, IMAGENET_STD)]
    assert torch.allclose(y[0, :, 10, 10], torch.tensor(expected), atol=1e-5)


def test_resize_is_antialiased():
    # A 1-pixel checkerboard downsampled ~8.4x must average to mid-gray; plain bilinear would alias to extremes.
    board = (np.indices((512, 512)).sum(0) % 2 * 255).astype(np.float32)
    out = resize_to_uint8(board, 61)
    assert np.all(np.abs(out.astype(int) - 128) <= 1)
    aliased = F.interpolate(torch.tensor(board)[None, None], size=(61, 61), mode="bilinear", antialias=False)
    assert aliased.std() > 30  # the test can tell the difference


def test_onnx_export_matches_torch_for_several_sizes(tmp_path):
    model = Preprocess(224).eval()
    example = torch.tensor(np.stack([_image(300, 260), _image(300, 260, 1)]))[:, None]
    path = tmp_path / "pre.onnx"
    dims = {"image": {0: torch.export.Dim("N"), 2: torch.export.Dim("H"), 3: torch.export.Dim("W")}}
    torch.onnx.export(model, (example,), path, dynamo=True, opset_version=18, input_names=["image"],
                      output_names=["x"], dynamic_shapes=dims, external_data=False, verbose=False)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for n, h, w in [(1, 224, 224), (1, 512, 384), (3, 157, 300), (1, 1024, 1024), (1, 2000, 1500)]:
        x = np.stack([_image(h, w, seed) for seed in range(n)])[:, None]
        expected = model(torch.tensor(x)).numpy()
        got = session.run(None, {"image": x})[0]
        assert got.shape == (n, 3, 224, 224)
        assert np.abs(got - expected).max() <= 1e-4, (h, w)


def _textured(h, w, seed=0):
    return np.random.default_rng(seed).uniform(40, 220, (h, w)).astype(np.float32)


def test_crop_borders_crops_flat_margins_and_leaves_full_images_alone():
    from training.graph.preprocess import CropBorders, resize

    image = np.zeros((512, 512), np.float32)
    image[128:384, 128:384] = _image(256, 256)
    x = torch.tensor(image)[None, None]
    cropped = CropBorders(64)(x)
    # The box is found on a 64 px thumbnail (8 px of this image per thumbnail pixel), whose antialiasing may blur the
    # content's edge into the next thumbnail pixel: the box is the content, or the content plus 8 px.
    errors = [(cropped - resize(x[:, :, 128 - t : 384 + b, 128 - left : 384 + r], 64)).abs().mean()
              for t, b, left, r in itertools.product((0, 8), repeat=4)]
    assert min(errors) < 1, min(errors)
    assert (cropped - resize(x, 64)).abs().mean() > 30  # it did crop
    full = torch.tensor(_textured(300, 200, 1))[None, None]
    assert (CropBorders(64)(full) - resize(full, 64)).abs().mean() < 3


def test_suppress_text_removes_burned_in_letters_and_keeps_the_anatomy():
    from PIL import ImageDraw

    from training.graph.preprocess import SuppressText

    clean, _ = phantom(np.random.default_rng(2), "Pneumonia", 224)
    marked = Image.fromarray(clean.copy())
    ImageDraw.Draw(marked).text((12, 10), "R 12/03", fill=255, font_size=14)
    marked = np.asarray(marked, np.float32)
    letters = np.abs(marked - clean) > 30
    x = lambda a: torch.tensor(np.asarray(a, np.float32))[None, None]  # noqa: E731
    suppressed = SuppressText()(x(marked))[0, 0].numpy()
    assert np.abs(marked - clean)[letters].mean() > 100
    assert np.abs(suppressed - clean)[letters].mean() < 40  # the letters are gone
    untouched = SuppressText()(x(clean))[0, 0].numpy()
    assert np.mean(np.abs(untouched - clean)) < 1.0  # a clean phantom barely changes


def test_onnx_export_of_the_optional_geometry_matches_torch(tmp_path):
    from training.graph.preprocess import GeometryConfig

    model = Preprocess(GeometryConfig(128, crop_borders=True, suppress_text=True)).eval()
    framed = np.zeros((2, 1, 330, 290), np.float32)
    framed[:, :, 40:300, 30:270] = np.stack([_image(260, 240, s) for s in range(2)])[:, None]
    path = tmp_path / "geometry.onnx"
    dims = {"image": {0: torch.export.Dim("N"), 2: torch.export.Dim("H", min=16), 3: torch.export.Dim("W", min=16)}}
    torch.onnx.export(model, (torch.tensor(framed),), path, dynamo=True, opset_version=18, input_names=["image"],
                      output_names=["x"], dynamic_shapes=dims, external_data=False, verbose=False)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for batch in (framed, _image(500, 300, 3)[None, None]):
        np.testing.assert_allclose(session.run(None, {"image": batch})[0], model(torch.tensor(batch)).numpy(),
                                   atol=2e-3)


def test_cache_folder_names_every_geometry_setting():
    from training.graph.preprocess import GeometryConfig

    assert GeometryConfig(224).tag != GeometryConfig(224, crop_borders=True).tag
    assert GeometryConfig(224, True, True).tag.endswith("-crop-notext")
    assert GeometryConfig.of({"size": 96, "suppress_text": True}) == GeometryConfig(96, False, True)
