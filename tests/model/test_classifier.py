import pytest
import torch

from training.model.classifier import WeightsUnavailable, build_model
from training.model.gradcam import cam_from_weights, gradcam


@pytest.mark.parametrize("arch", ["resnet18", "resnet50"])
def test_autograd_gradcam_equals_closed_form(arch):
    torch.manual_seed(0)
    model, _ = build_model(arch, "none")
    model.eval()
    x = torch.randn(2, 3, 96, 128)
    reference = gradcam(model, x)
    with torch.no_grad():
        closed = cam_from_weights(model.features(x), model.fc.weight)
    assert reference.shape == closed.shape == (2, 3, 3, 4)
    assert reference.abs().max() > 0
    assert (reference - closed).abs().max().item() <= 1e-5


def test_imagenet_weights_missing_gives_instructions(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(torch.hub, "download_url_to_file", lambda *a, **k: (_ for _ in ()).throw(OSError("offline")))
    with pytest.raises(WeightsUnavailable) as e:
        build_model("resnet18", "imagenet")
    assert "resnet18-f37072fd.pth" in str(e.value) and str(tmp_path / "torch") in str(e.value)
    assert "--weights none" in str(e.value)
    model, origin = build_model("resnet18", "auto")  # falls back, loudly
    assert origin == "none"


def test_imagenet_weights_from_cache_or_file(tmp_path, monkeypatch):
    import torchvision

    reference = torchvision.models.resnet18()
    checkpoints = tmp_path / "torch" / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    torch.save(reference.state_dict(), checkpoints / "resnet18-f37072fd.pth")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(torch.hub, "download_url_to_file", lambda *a, **k: pytest.fail("must not download"))
    model, origin = build_model("resnet18", "imagenet")
    assert origin == "imagenet"
    assert torch.equal(model.features[0].weight, reference.conv1.weight)
    model, origin = build_model("resnet18", str(checkpoints / "resnet18-f37072fd.pth"))
    assert origin == "imagenet" and torch.equal(model.features[7][1].bn2.weight, reference.layer4[1].bn2.weight)
    with pytest.raises(WeightsUnavailable, match="does not fit"):
        build_model("resnet50", str(checkpoints / "resnet18-f37072fd.pth"))
