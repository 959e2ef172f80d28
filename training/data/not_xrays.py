"""Images that are not chest X-rays: photographs, text pages, uniform fields and noise (the OOD rates of an export
and the chest gate's test negatives), and procedural outliers for int8 calibration.

Every image goes through the project's decoder (PNG bytes in), exactly as a user's file would.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageDraw

from core.decode import decode

# scikit-image's bundled sample images (no download needed).
PHOTOGRAPHS = ("astronaut", "chelsea", "coffee", "rocket", "camera", "coins", "moon", "horse", "motorcycle_left",
               "hubble_deep_field", "immunohistochemistry", "grass", "gravel", "brick", "clock", "colorwheel")
TEXT_LINES = ("Patient information leaflet", "Take one tablet twice a day with food.",
              "Do not exceed the stated dose.", "Keep out of the reach of children.",
              "If symptoms persist, consult your doctor.", "Store below 25 C in a dry place.")


def _png_gray(array: np.ndarray, name: str) -> np.ndarray:
    buffer = io.BytesIO()
    Image.fromarray(np.asarray(array, dtype=np.uint8)).save(buffer, format="PNG")
    return decode(buffer.getvalue(), name=name)


def photographs() -> dict[str, np.ndarray]:
    import skimage.data

    out = {}
    for name in PHOTOGRAPHS:
        loader = getattr(skimage.data, name, None)
        if loader is None:
            continue
        try:
            image = loader()
        except Exception:  # a sample that needs a download is skipped, not fatal
            continue
        if image.dtype == bool:
            image = image.astype(np.uint8) * 255
        elif image.dtype != np.uint8:
            image = np.clip(image * (255.0 / max(float(image.max()), 1e-6)), 0, 255).astype(np.uint8)
        out[name] = _png_gray(image[..., :3] if image.ndim == 3 else image, name)
    return out


def text_pages() -> dict[str, np.ndarray]:
    pages = {}
    for i, (width, height, size) in enumerate(((850, 1100, 28), (1200, 800, 36))):
        page = Image.new("L", (width, height), 250)
        draw = ImageDraw.Draw(page)
        for line in range(height // (size + 14) - 2):
            draw.text((60, 60 + line * (size + 14)), TEXT_LINES[line % len(TEXT_LINES)], fill=20, font_size=size)
        pages[f"text_page_{i}"] = _png_gray(np.asarray(page), f"text_page_{i}")
    import skimage.data

    pages["skimage_page"] = _png_gray(skimage.data.page(), "skimage_page")
    return pages


def uniform_images() -> dict[str, np.ndarray]:
    return {f"uniform_{v}": _png_gray(np.full((512, 512), v), f"uniform_{v}") for v in (0, 128, 255)}


def noise_images(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "noise_uniform": _png_gray(rng.integers(0, 256, (512, 512)), "noise_uniform"),
        "noise_gaussian": _png_gray(np.clip(rng.normal(128, 40, (512, 512)), 0, 255), "noise_gaussian"),
        "noise_salt_pepper": _png_gray((rng.random((512, 512)) > 0.5) * 255, "noise_salt_pepper"),
    }


def ood_sets() -> dict[str, dict[str, np.ndarray]]:
    return {"photographs": photographs(), "text": text_pages(), "uniform": uniform_images(), "noise": noise_images()}


def calibration_outliers(n: int = 16, seed: int = 123) -> list[np.ndarray]:
    """Procedural non-X-ray images (noise, smooth blobs, gradients, flat shapes) for int8 calibration.

    Calibrating activation ranges on X-rays alone clips the activations that unusual images produce, and the int8
    model then gives every such image the same, in-distribution-looking OOD score. Mixing these in keeps the ranges
    wide enough. They are generated, so they never overlap the photographs and pages the OOD rates are measured on.
    """
    rng = np.random.default_rng(seed)
    images = []
    for i in range(n):
        side = int(rng.integers(200, 600))
        kind = i % 4
        if kind == 0:
            image = rng.uniform(0, 255, (side, side))
        elif kind == 1:
            coarse = Image.fromarray(rng.uniform(0, 255, (8, 8)).astype(np.uint8))
            image = np.asarray(coarse.resize((side, side), Image.BICUBIC))
        elif kind == 2:
            image = np.tile(np.linspace(0, 255, side), (side, 1))
        else:
            image = np.full((side, side), rng.uniform(0, 255))
            for _ in range(6):
                (y, x), (h, w) = rng.integers(0, side, 2), rng.integers(10, side // 2, 2)
                image[y : y + h, x : x + w] = rng.uniform(0, 255)
        images.append(np.asarray(image, np.float32))
    return images
