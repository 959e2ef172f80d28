"""Write the ONNX files: fp32 through the dynamo exporter + onnxsim, and static QDQ int8 through onnxruntime."""

from __future__ import annotations

import contextlib
import io
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
import torch

from .wrapper import INPUT_NAME

OPSET = 18


def export_fp32(model: torch.nn.Module, path: Path) -> Path:
    """Dynamo export at opset 18 with N, H, W dynamic, then onnxsim. The example batch must be 2 or more, or the
    exporter silently fixes the batch axis to 1; `external_data=False` keeps one self-contained file."""
    import onnxsim

    example = torch.rand(2, 1, 256, 240) * 255
    dims = {INPUT_NAME: {0: torch.export.Dim("batch"), 2: torch.export.Dim("height", min=16),
                         3: torch.export.Dim("width", min=16)}}
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        raw = Path(tmp) / "raw.onnx"
        torch.onnx.export(model, (example,), raw, dynamo=True, opset_version=OPSET, input_names=[INPUT_NAME],
                          output_names=list(model.output_names), dynamic_shapes=dims, external_data=False,
                          verbose=False)
        simplified, ok = onnxsim.simplify(onnx.load(raw))
    if not ok:
        raise RuntimeError("onnxsim could not validate the simplified model")
    onnx.save(simplified, path)
    return path


@dataclass(frozen=True)
class QuantRecipe:
    """One way to quantise; export tries recipes in order and ships the first that passes the fidelity checks."""

    name: str
    per_channel: bool = True
    method: str = "MinMax"  # MinMax | Entropy | Percentile
    float_head: int = 0  # keep this many of the first Conv nodes (those that see raw pixels) in float
    float_tail: int = 0  # keep this many of the last Conv nodes (those that feed `cam`) in float
    extra: dict = field(default_factory=dict)


# Tried in this order; the first that passes the fidelity checks ships. Measured on the shared set (docs/export.md):
# ResNet-50 passes with plain per-channel recipes; EfficientNet-Lite0 needs its first convolutions in float (they
# see raw pixels, where a few grey levels of quantisation noise matter most), and a model trained without
# harmonisation is too sensitive to small perturbations for any recipe.
RECIPES = (
    QuantRecipe("per-channel MinMax"),
    QuantRecipe("per-channel Percentile 99.999", method="Percentile", extra={"CalibPercentile": 99.999}),
    QuantRecipe("per-channel MinMax, first 2 convolutions in float", float_head=2),
    QuantRecipe("per-channel MinMax, first 5 convolutions in float", float_head=5),
    QuantRecipe("per-channel Percentile, last block in float", method="Percentile", float_tail=3,
                extra={"CalibPercentile": 99.999}),
)

# Quantised: the backbone. Left in float: preprocessing (Resize, Sub, Div), the head (Gemm, Softmax), the CAM
# (Einsum) and the OOD score (MatMul, ReduceSum...): they are cheap, and their precision is what the checks measure.
QUANTIZED_OPS = ["Conv", "Add", "Relu", "Clip", "MaxPool"]


class _Reader:
    """onnxruntime CalibrationDataReader over a list of gray images (2-D arrays, 0..255)."""

    def __init__(self, images):
        self._it = iter(images)

    def get_next(self):
        image = next(self._it, None)
        return None if image is None else {INPUT_NAME: np.asarray(image, np.float32)[None, None]}


def quantize_int8(fp32: Path, out: Path, calibration_images: list, recipe: QuantRecipe) -> Path:
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with tempfile.TemporaryDirectory() as tmp:
        prepared = Path(tmp) / "pre.onnx"
        try:
            quant_pre_process(str(fp32), str(prepared))
        except Exception:  # symbolic shape inference gives up on some graphs (the border crop's GridSample)
            quant_pre_process(str(fp32), str(prepared), skip_symbolic_shape=True)
        convs = [n.name for n in onnx.load(prepared).graph.node if n.op_type == "Conv"]
        exclude = convs[: recipe.float_head] + (convs[len(convs) - recipe.float_tail :] if recipe.float_tail else [])
        quantize_static(str(prepared), str(out), _Reader(calibration_images), quant_format=QuantFormat.QDQ,
                        per_channel=recipe.per_channel, activation_type=QuantType.QUInt8,
                        weight_type=QuantType.QInt8, op_types_to_quantize=QUANTIZED_OPS, nodes_to_exclude=exclude,
                        calibrate_method=getattr(CalibrationMethod, recipe.method), extra_options=recipe.extra)
    return out
