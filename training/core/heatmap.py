"""Heatmap display helpers without torch (the predict CLI runs on numpy and onnxruntime alone): bilinear
upsampling with half-pixel centres (what the browser draws), the hottest point, and a coloured overlay."""

from __future__ import annotations

import numpy as np


def _axis_weights(n_in: int, n_out: int):
    src = np.clip((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0, n_in - 1)
    lo = np.floor(src).astype(int)
    hi = np.minimum(lo + 1, n_in - 1)
    return lo, hi, (src - lo).astype(np.float32)


def upsample(cam: np.ndarray, height: int, width: int) -> np.ndarray:
    """One [h, w] map -> [height, width] float32, bilinear, half-pixel centres (align_corners=False)."""
    cam = np.asarray(cam, dtype=np.float32)
    r0, r1, rw = _axis_weights(cam.shape[0], height)
    c0, c1, cw = _axis_weights(cam.shape[1], width)
    rows = cam[r0] * (1 - rw)[:, None] + cam[r1] * rw[:, None]
    return rows[:, c0] * (1 - cw) + rows[:, c1] * cw


def box_region(box, height: int, width: int) -> tuple[int, int, int, int]:
    """(top, left, rows, cols) in whole pixels of `box` (x0, y0, x1, y1 in pixels; None: the whole image), the
    region a cropping model's map covers. The browser rounds the same way."""
    if box is None:
        return 0, 0, height, width
    x0, y0, x1, y1 = (float(v) for v in box)
    left, top = int(round(x0)), int(round(y0))
    return top, left, max(1, int(round(y1)) - top), max(1, int(round(x1)) - left)


def full_map(cam: np.ndarray, height: int, width: int, box=None) -> np.ndarray:
    """The map upsampled over its box of a height x width image, zero outside it."""
    top, left, rows, cols = box_region(box, height, width)
    out = np.zeros((height, width), np.float32)
    out[top : top + rows, left : left + cols] = upsample(cam, rows, cols)
    return out


def hottest_point(cam: np.ndarray, height: int, width: int, box=None) -> tuple[int, int]:
    """(row, col) in image pixels of the maximum of the upsampled map: where the heatmap points."""
    top, left, rows, cols = box_region(box, height, width)
    up = upsample(cam, rows, cols)
    row, col = np.unravel_index(int(np.argmax(up)), up.shape)
    return int(row) + top, int(col) + left


def overlay(gray: np.ndarray, cam: np.ndarray, opacity: float = 0.45, colormap: str = "inferno",
            box=None) -> np.ndarray:
    """RGB uint8: the gray image with the map (normalised to its max, upsampled over its box) blended on top."""
    from matplotlib import colormaps

    gray = np.asarray(gray, dtype=np.float32)
    up = full_map(cam, *gray.shape, box)
    up = up / up.max() if up.max() > 0 else up
    heat = colormaps[colormap](up)[..., :3] * 255
    alpha = opacity * up[..., None]
    return np.clip(gray[..., None] * (1 - alpha) + heat * alpha, 0, 255).astype(np.uint8)
