import pytest
import torch
from torch import nn

from training.loop.mixstyle import MixStyle, attach, early_stages
from training.model.classifier import new_classifier


def test_mixstyle_mixes_statistics_in_training_and_passes_through_in_eval():
    layer = nn.Identity()
    x = torch.randn(8, 4, 6, 6) * torch.arange(1, 9).view(8, 1, 1, 1) + torch.arange(8).view(8, 1, 1, 1)
    hook = MixStyle(p=1.0)
    layer.eval()
    assert hook(layer, (x,), x) is x
    layer.train()
    torch.manual_seed(0)
    y = hook(layer, (x,), x)
    assert y.shape == x.shape and not torch.allclose(y, x)
    # content is kept: each map is an affine function of the original (correlation 1 per channel)
    for i in range(8):
        for c in range(4):
            a, b = x[i, c].flatten(), y[i, c].flatten()
            assert torch.corrcoef(torch.stack([a, b]))[0, 1] > 0.999
    one = x[:1]
    assert hook(layer, (one,), one) is one  # one film: nothing to mix with
    assert MixStyle(p=0.0)(layer, (x,), x) is x


@pytest.mark.parametrize("arch", ["efficientnet_lite0", "resnet18"])
def test_attached_to_the_first_three_stages_and_eval_unchanged(arch):
    model = new_classifier(arch)
    assert len(early_stages(model.features)) == 3
    x = torch.rand(4, 3, 64, 64)
    model.eval()
    with torch.no_grad():
        before = model(x)
    handles = attach(model.features, 1.0)
    with torch.no_grad():
        assert torch.equal(model(x), before)  # eval: the exported model never sees it
        model.train()
        torch.manual_seed(1)
        trained = model(x)
    assert not torch.allclose(trained, before)
    for h in handles:
        h.remove()
