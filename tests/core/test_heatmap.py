import numpy as np
import torch
import torch.nn.functional as F

from training.core.heatmap import hottest_point, overlay, upsample


def test_upsample_matches_torch_bilinear_half_pixel():
    cam = np.random.default_rng(0).random((7, 5)).astype(np.float32)
    expected = F.interpolate(torch.tensor(cam)[None, None], size=(300, 211), mode="bilinear", align_corners=False)
    np.testing.assert_allclose(upsample(cam, 300, 211), expected[0, 0].numpy(), atol=1e-5)


def test_hottest_point_and_overlay():
    cam = np.zeros((7, 7), np.float32)
    cam[1, 5] = 1
    row, col = hottest_point(cam, 700, 700)
    assert 100 <= row < 200 and 500 <= col < 600
    gray = np.full((70, 70), 100, np.float32)
    rgb = overlay(gray, cam)
    assert rgb.shape == (70, 70, 3) and rgb.dtype == np.uint8
    assert np.all(rgb[60, 10] == 100)  # cold: the image shows through unchanged
    assert np.abs(rgb[15, 55].astype(int) - 100).max() > 30  # hot: coloured
