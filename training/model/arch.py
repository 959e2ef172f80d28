"""What an architecture is to the rest of the project: how to build its convolutional features, where its ImageNet
weights come from, and the input normalisation it expects (timm's idea: each model carries its input config)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from ..graph.preprocess import IMAGENET_MEAN, IMAGENET_STD


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
