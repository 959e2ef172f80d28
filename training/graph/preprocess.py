"""Preprocessing as torch modules: the one definition used to build the training cache and inside the exported graph.

Input everywhere is a decoded grayscale batch `[N, 1, H, W]`, float32, values 0..255, any H and W.
`Geometry` turns it into the network's `S x S` gray image (what the cache stores, as uint8); `Normalize` turns
0..255 gray into the 3-channel, normalised tensor the network expects. `Preprocess` chains both for the exported
model, so Python and the browser cannot drift apart: the browser only decodes pixels, the graph does the rest.

Two optional geometry steps fight source shortcuts (docs/shortcuts.md); both are plain tensor ops that export to
ONNX and run in onnxruntime-web, with no data-dependent shapes:
- crop_borders: crop to the image content, dropping flat (uniform black or white) margins, as journal figures and
  some hospital exports have and others do not;
- suppress_text: replace small, high-contrast marks (burned-in letters, arrows, rulers) by their surroundings,
  using grey-scale morphology (max-pool opening and closing).
"""

from __future__ import annotations

import functools
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .resample import crop_to_box, resize

# Bump when anything here changes the pixels that reach the network: it invalidates every cache entry.
PREPROCESS_VERSION = 1

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class GeometryConfig:
    size: int = 224
    crop_borders: bool = False
    suppress_text: bool = False
    lung_crop: str = ""  # a lung segmenter file (`cxr lungs-train`): crop to the lung box (training/graph/lungs.py)

    def __post_init__(self):
        if self.crop_borders and self.lung_crop:
            raise ValueError("choose the border crop or the lung crop, not both")

    @property
    def tag(self) -> str:
        """Names the cache folder: every setting that changes cached pixels is in it (the segmenter by content)."""
        lungs = f"-lungs{_file_sha256(self.lung_crop)[:12]}" if self.lung_crop else ""
        return (f"v{PREPROCESS_VERSION}-{self.size}" + ("-crop" if self.crop_borders else "")
                + ("-notext" if self.suppress_text else "") + lungs)

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def of(cls, value) -> GeometryConfig:
        """From a GeometryConfig, a size, or a dict that has at least `size` (a checkpoint's or prepare's record)."""
        if isinstance(value, cls):
            return value
        if isinstance(value, int):
            return cls(value)
        return cls(int(value["size"]), bool(value.get("crop_borders", False)), bool(value.get("suppress_text", False)),
                   str(value.get("lung_crop") or ""))


@functools.lru_cache(maxsize=8)
def _file_sha256(path: str) -> str:
    from core.checksum import sha256_file

    return sha256_file(path)


class Resize(nn.Module):
    def __init__(self, size: int = 224):
        super().__init__()
        self.size = size

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return resize(image, self.size)


class CropBorders(nn.Module):
    """Crop to the content box, then resize to `size`.

    The box comes from a 64 x 64 thumbnail: a row (column) is content when its pixels vary (standard deviation above
    `flat_std` grey levels); flat rows and columns at the edges are margins. (The thumbnail's antialiasing blurs the
    content's edge by about one thumbnail pixel, so the box keeps a sliver of margin rather than cutting content.)
    The crop is resampled with grid_sample from an antialiased 2*size resize, so the graph has fixed shapes whatever
    the box.
    """

    def __init__(self, size: int = 224, thumbnail: int = 64, flat_std: float = 6.0, margin: float = 0.0):
        super().__init__()
        self.size, self.thumbnail, self.flat_std, self.margin = size, thumbnail, flat_std, margin

    def _span(self, content: torch.Tensor):
        """content [N, L] (1.0 where a row or column has content) -> (start, end) fractions of the side."""
        length = content.shape[1]
        first = content.argmax(dim=1).float()
        last = (length - 1 - content.flip(1).argmax(dim=1)).float()
        has = content.amax(dim=1) > 0
        start = torch.where(has, first / length - self.margin, torch.zeros_like(first)).clamp(0, 1)
        end = torch.where(has, (last + 1) / length + self.margin, torch.ones_like(last)).clamp(0, 1)
        return start, end

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        small = resize(image, self.thumbnail)[:, 0]
        y0, y1 = self._span((small.std(dim=2) > self.flat_std).float())
        x0, x1 = self._span((small.std(dim=1) > self.flat_std).float())
        return crop_to_box(image, torch.stack([x0, y0, x1, y1], 1), self.size)


def _dilate(x: torch.Tensor, k: int) -> torch.Tensor:
    return F.max_pool2d(x, k, stride=1, padding=k // 2)


def _erode(x: torch.Tensor, k: int) -> torch.Tensor:
    return -F.max_pool2d(-x, k, stride=1, padding=k // 2)


class SuppressText(nn.Module):
    """Replace marks narrower than `kernel` pixels that stand out by more than `contrast` grey levels from their
    surroundings (white top-hat for bright marks, black top-hat for dark ones) by the local background estimate."""

    def __init__(self, kernel: int = 7, contrast: float = 60.0):
        super().__init__()
        self.kernel, self.contrast = kernel, contrast

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k = self.kernel
        opened = _dilate(_erode(x, k), k)  # bright marks removed
        closed = _erode(_dilate(x, k), k)  # dark marks removed
        # Dilated by 3: the marks' anti-aliased rims go too.
        bright = _dilate((x - opened > self.contrast).float(), 3)
        dark = _dilate((closed - x > self.contrast).float(), 3)
        return torch.where(bright > 0, opened, torch.where(dark > 0, closed, x))


class Geometry(nn.Module):
    """[N,1,H,W] 0..255 -> [N,1,S,S] 0..255: resize (or crop the borders, or crop to the lungs, and resize), then
    optionally suppress text. `lungs` (a LungCrop, with lung_crop) also gives the mask, box and fallback flag."""

    def __init__(self, config: GeometryConfig | int = 224):
        super().__init__()
        self.config = GeometryConfig.of(config)
        self.lungs = None
        if self.config.lung_crop:
            from .lungs import LungCrop, load_segmenter

            segmenter, rules, _ = load_segmenter(self.config.lung_crop)
            self.lungs = LungCrop(segmenter, rules, self.config.size)
            self.resize = lambda image: self.lungs(image)[0]  # noqa: E731
        elif self.config.crop_borders:
            self.resize = CropBorders(self.config.size)
        else:
            self.resize = Resize(self.config.size)
        self.text = SuppressText() if self.config.suppress_text else nn.Identity()

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.text(self.resize(image))


class Normalize(nn.Module):
    """0..255 gray `[N,1,S,S]` -> `[N,3,S,S]` normalised with per-channel mean/std (ImageNet's by default)."""

    def __init__(self, mean=IMAGENET_MEAN, std=IMAGENET_STD):
        super().__init__()
        # Folding /255 into the constants keeps the graph to one Sub and one Div.
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1) * 255.0)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1) * 255.0)

    def forward(self, gray: torch.Tensor) -> torch.Tensor:
        return (gray.expand(-1, 3, -1, -1) - self.mean) / self.std


@dataclass(frozen=True)
class PreprocessConfig:
    """A trained model's input contract (as timm's pretrained config): the geometry it was prepared with and the
    normalisation its architecture expects. Stored in the checkpoint and, in this flat form, in model.json."""

    geometry: GeometryConfig
    mean: tuple = IMAGENET_MEAN
    std: tuple = IMAGENET_STD
    version: int = PREPROCESS_VERSION

    def as_dict(self) -> dict:
        return {**self.geometry.as_dict(), "mean": list(self.mean), "std": list(self.std), "version": self.version}

    @classmethod
    def from_dict(cls, value: dict) -> PreprocessConfig:
        return cls(GeometryConfig.of(value), tuple(value["mean"]), tuple(value["std"]), int(value["version"]))

    def normalize(self) -> Normalize:
        return Normalize(self.mean, self.std)

    def module(self) -> Preprocess:
        return Preprocess(self.geometry, self.mean, self.std)


class Preprocess(nn.Module):
    """Decoded gray image [N,1,H,W] 0..255 -> the network's normalised input [N,3,S,S]: `Geometry`, then `Normalize`."""

    def __init__(self, geometry: GeometryConfig | int = 224, mean=IMAGENET_MEAN, std=IMAGENET_STD):
        super().__init__()
        self.geometry = Geometry(geometry)
        self.normalize = Normalize(mean, std)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.normalize(self.geometry(image))


@functools.lru_cache(maxsize=4)
def _geometry(config: GeometryConfig) -> Geometry:
    return Geometry(config).eval()  # built once per process: the lung crop loads a network


def resize_to_uint8(gray, geometry: GeometryConfig | int) -> numpy.ndarray:  # noqa: F821
    """Decoded 2-D gray array (0..255) -> S x S uint8 through `Geometry`, as stored in the cache."""
    x = torch.as_tensor(gray, dtype=torch.float32)[None, None]
    with torch.no_grad():
        y = _geometry(GeometryConfig.of(geometry))(x)[0, 0]
    return y.round_().clamp_(0, 255).to(torch.uint8).numpy()
