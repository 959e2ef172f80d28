"""Synthetic chest-like radiographs with a known lesion mask: fast, seeded test data and the embedded demo.

Anatomy (body, lungs, ribs, spine, heart, diaphragm) varies per image; the lesion follows the label:
- Pneumonia: one focal lobar consolidation in one lung;
- COVID-19: several bilateral, peripheral, patchy ground-glass opacities in the lower and middle zones;
- Normal: clear lungs.
These are cartoons, not radiology: they exist to test the pipeline and whether heatmaps point at lesions.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from core.classes import CLASSES

from .records import write_manifest


def _ellipse(x, y, cx, cy, rx, ry, edge=0.08):
    """Soft ellipse in [0, 1]: 1 inside, 0 outside, a smooth rim `edge` wide (in normalised radius units)."""
    d = np.sqrt(((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2)
    return np.clip((1 + edge - d) / (2 * edge), 0, 1)


def _smooth_noise(rng, size, cells):
    """Low-frequency texture: coarse noise upsampled bilinearly."""
    coarse = rng.standard_normal((cells + 1, cells + 1))
    t = np.linspace(0, cells, size)
    i = np.minimum(t.astype(int), cells - 1)
    f = t - i
    rows = coarse[i] * (1 - f)[:, None] + coarse[i + 1] * f[:, None]
    return rows[:, i] * (1 - f) + rows[:, i + 1] * f


def phantom(rng: np.random.Generator, label: str, size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """One phantom: (uint8 image [size, size], bool lesion mask [size, size]; all False for Normal)."""
    if label not in CLASSES:
        raise ValueError(f"unknown label {label!r}")
    u = lambda lo, hi: rng.uniform(lo, hi)  # noqa: E731
    y, x = np.mgrid[-1 : 1 : size * 1j, -1 : 1 : size * 1j].astype(np.float32)
    x = x + u(-0.05, 0.05)  # patient position jitter
    y = y + u(-0.05, 0.05)

    body = _ellipse(x, y, 0, 0.1, u(0.8, 0.92), 1.05, edge=0.05)
    image = 0.08 + 0.5 * body

    # Lungs: dark fields above a domed diaphragm.
    lung_ry, lung_rx, lung_cy = u(0.5, 0.6), u(0.26, 0.32), u(-0.12, -0.02)
    dome = lung_cy + lung_ry * 0.85 - 0.15 * np.abs(np.abs(x) - 0.38) ** 2 * 4
    below = np.clip((y - dome) / 0.04, 0, 1)
    lungs = []
    for side in (-1, 1):
        lung = _ellipse(x, y, side * u(0.36, 0.42), lung_cy, lung_rx, lung_ry) * (1 - below)
        lungs.append(lung)
    lung = np.maximum(*lungs)
    image -= 0.32 * lung

    # Ribs: bright curved bands across the lungs; spine: a vertical band; heart: a bright mass left of centre.
    period = u(0.16, 0.2)
    phase = (y + 0.35 * x**2 + u(0, period)) / period
    ribs = np.clip(np.cos(2 * np.pi * phase) * 2 - 1.2, 0, 1) * body
    image += 0.1 * ribs
    image += 0.18 * np.exp(-((x / 0.07) ** 2)) * body
    heart = _ellipse(x, y, u(0.08, 0.16), u(0.22, 0.3), u(0.22, 0.28), u(0.2, 0.25), edge=0.15)
    image += 0.28 * heart * lung + 0.05 * heart

    mask = np.zeros((size, size), bool)
    if label != "Normal":
        opacity = np.zeros_like(image)
        if label == "Pneumonia":  # one dense lobar consolidation
            side = rng.choice((-1, 1))
            blob = _ellipse(x, y, side * u(0.33, 0.45), lung_cy + u(-0.1, 0.35), u(0.13, 0.19), u(0.14, 0.22), 0.3)
            opacity += 0.3 * blob
        else:  # COVID-19: patchy peripheral ground glass, both lungs
            for side in (-1, 1):
                for _ in range(rng.integers(2, 4)):
                    cx = side * u(0.46, 0.58)
                    blob = _ellipse(x, y, cx, lung_cy + u(0.0, 0.45), u(0.09, 0.14), u(0.12, 0.18), 0.4)
                    opacity = np.maximum(opacity, 0.2 * blob)
        opacity *= lung > 0.5
        opacity *= 1 + 0.35 * _smooth_noise(rng, size, 12)
        mask = opacity > 0.05
        image += opacity

    image += 0.03 * _smooth_noise(rng, size, 24) + 0.015 * rng.standard_normal((size, size))
    gamma = u(0.8, 1.25)
    image = np.clip(image, 0, 1) ** gamma
    return np.round(image * 255).astype(np.uint8), mask


def write_phantoms(out: Path, n: int, size: int = 256, seed: int = 0) -> Path:
    """Write `n` phantoms (balanced labels) as PNGs with lesion masks and a manifest.csv; returns the manifest path."""
    from PIL import Image

    out = Path(out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "masks").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        label = CLASSES[i % len(CLASSES)]
        image, mask = phantom(rng, label, size)
        name = f"phantom_{i:05d}.png"
        Image.fromarray(image).save(out / "images" / name)
        Image.fromarray(mask.astype(np.uint8) * 255).save(out / "masks" / name)
        rows.append({"file": str(out / "images" / name), "label": label, "patient_id": f"phantom_{i:05d}",
                     "source": "phantom", "view": "PA", "mask": str(out / "masks" / name)})
    manifest = out / "manifest.csv"
    write_manifest(manifest, rows)
    return manifest
