import numpy as np
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F

from training.phantoms import phantom
from training.preprocess import IMAGENET_MEAN, IMAGENET_STD, Preprocess, resize_to_uint8


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
