import numpy as np
import pytest
import torch
import torch.nn.functional as F

from core.heatmap import hottest_point, overlay, upsample


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


def test_weighted_scale_keeps_an_unlikely_class_dark():
    """The default display: map x probability on one scale for every class of the image. The map of a 0.1 % class
    stays dark even where its own map peaks; normalised to its own maximum it would be as bright as the winner's."""
    from core.heatmap import common_scale, heat_values

    cams = np.random.default_rng(1).random((3, 7, 7)).astype(np.float32)
    probabilities = [0.001, 0.998, 0.001]
    weighted = [heat_values(cams, k, 70, 70, probabilities) for k in range(3)]
    own = [heat_values(cams, k, 70, 70) for k in range(3)]
    assert common_scale(cams, probabilities) == pytest.approx(0.998 * cams[1].max())
    assert weighted[1].max() == pytest.approx(upsample(cams[1], 70, 70).max() / cams[1].max(), abs=1e-6)
    assert weighted[0].max() < 0.002 and weighted[2].max() < 0.002
    assert all(m.max() == pytest.approx(1) for m in own)
    assert all(((v >= 0) & (v <= 1)).all() for v in weighted + own)
    assert not heat_values(np.zeros((3, 7, 7), np.float32), 0, 10, 10, probabilities).any()
