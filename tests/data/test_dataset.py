import numpy as np
import pytest
import torch

from training.data.dataset import MAX_SOURCE_WEIGHT, sample_weights


def test_sample_weights_balance_classes_and_optionally_sources():
    labels = torch.tensor([0] * 40 + [1] * 100 + [2] * 60)
    sources = ["a"] * 40 + ["b"] * 98 + ["a"] * 2 + ["b"] * 45 + ["a"] * 15
    plain = sample_weights(labels, sources)
    for k in range(3):  # every class carries the same total weight
        assert plain[labels == k].sum().item() == pytest.approx(200 / 3, rel=1e-5)
    balanced = sample_weights(labels, sources, balance_sources=True)
    for k in range(3):
        assert balanced[labels == k].sum().item() == pytest.approx(200 / 3, rel=1e-5)
    pneumonia = labels == 2
    src = np.array(sources)
    a, b = balanced[pneumonia & torch.tensor(src == "a")].sum(), balanced[pneumonia & torch.tensor(src == "b")].sum()
    assert a.item() == pytest.approx(b.item(), rel=1e-5)  # 15 vs 45 images, equal total weight
    normal = labels == 1  # 98 vs 2 images: the cap keeps 2 images from weighing as much as 98
    ratio = balanced[normal & torch.tensor(src == "a")][0] / balanced[normal & torch.tensor(src == "b")][0]
    assert ratio.item() == pytest.approx(MAX_SOURCE_WEIGHT / (100 / (2 * 98)), rel=1e-5)
