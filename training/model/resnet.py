"""torchvision ResNets as `Arch` entries: the convolutional trunk as a Sequential (fc dropped)."""

from __future__ import annotations

import torchvision
from torch import nn

from .arch import Arch

_RESNET_MODULES = ["conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4"]


def _from_torchvision(state: dict, features: nn.Module) -> dict:
    """A torchvision ResNet state dict -> our Sequential's keys (module names become indices; fc is dropped)."""
    renamed = {}
    for key, value in state.items():
        head, _, rest = key.partition(".")
        if head in _RESNET_MODULES:
            renamed[f"{_RESNET_MODULES.index(head)}.{rest}"] = value
    return renamed


def resnet_arch(name: str, weights_enum) -> Arch:
    def backbone(weights=None):
        net = getattr(torchvision.models, name)(weights=weights)
        return nn.Sequential(*(getattr(net, m) for m in _RESNET_MODULES))

    def build():
        return backbone(), getattr(torchvision.models, name)().fc.in_features

    def imagenet():
        # Through torchvision: its cache ($TORCH_HOME/hub/checkpoints), else a download.
        return backbone(weights_enum).state_dict()

    url = weights_enum.url
    return Arch(build, imagenet, weights_file=url.rsplit("/", 1)[1], weights_url=url, convert=_from_torchvision)
