"""Heatmap display helpers without torch (the predict CLI runs on numpy and onnxruntime alone): bilinear
upsampling with half-pixel centres (what the browser draws), the hottest point, the display scale, and a coloured
overlay.

The display scale (the browser's pwa/static/worker/heatmap.js `heatValues` is the same formula): by default a
class's map is weighted by its probability and put on one scale shared by every class of the image,
map_k * p_k / max_c(p_c * max(map_c)), so the map of a class the model gives 0.1 % stays dark instead of showing a
bright spot; normalising each class to its own maximum (what `overlay` does) remains available as a choice."""

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
    region a lung-cropping model's map covers. The browser rounds the same way (worker/heatmap.js boxRegion)."""
    if box is None:
        return 0, 0, height, width
    x0, y0, x1, y1 = (float(v) for v in box)
    left, top = int(round(x0)), int(round(y0))
    return top, left, max(1, int(round(y1)) - top), max(1, int(round(x1)) - left)


def hottest_point(cam: np.ndarray, height: int, width: int, box=None) -> tuple[int, int]:
    """(row, col) in image pixels of the maximum of the upsampled map (over its box): where the heatmap points."""
    top, left, rows, cols = box_region(box, height, width)
    up = upsample(cam, rows, cols)
    row, col = np.unravel_index(int(np.argmax(up)), up.shape)
    return int(row) + top, int(col) + left


def common_scale(cams: np.ndarray, probabilities) -> float:
    """max over classes of p_c * max(map_c), on the raw [classes, h, w] maps: the one divisor for all classes."""
    cams = np.asarray(cams, dtype=np.float32)
    return float(max(float(p) * float(cams[c].max()) for c, p in enumerate(probabilities)))


def heat_values(cams: np.ndarray, k: int, height: int, width: int, probabilities=None, box=None) -> np.ndarray:
    """Class k's map at height x width, in 0..1, upsampled over `box` (the region it covers; None: the whole image)
    and zero outside it. With `probabilities`: weighted by p_k on the image's common scale (the default display);
    without: normalised to its own (upsampled) maximum."""
    top, left, rows, cols = box_region(box, height, width)
    up = upsample(cams[k], rows, cols)
    if probabilities is None:
        divisor, weight = float(up.max()), 1.0
    else:
        divisor, weight = common_scale(cams, probabilities), float(probabilities[k])
    values = np.zeros((height, width), np.float32)
    if divisor > 0:
        values[top : top + rows, left : left + cols] = np.minimum(up * weight / divisor, 1)
    return values


def colorize(gray: np.ndarray, values: np.ndarray, opacity: float = 0.45, colormap: str = "inferno") -> np.ndarray:
    """RGB uint8: the gray image with `values` (0..1, the image's size) coloured and blended on top, alpha = value."""
    from matplotlib import colormaps

    gray = np.asarray(gray, dtype=np.float32)
    up = np.asarray(values, dtype=np.float32)
    heat = colormaps[colormap](up)[..., :3] * 255
    alpha = opacity * up[..., None]
    return np.clip(gray[..., None] * (1 - alpha) + heat * alpha, 0, 255).astype(np.uint8)


def overlay(gray: np.ndarray, cam: np.ndarray, opacity: float = 0.45, colormap: str = "inferno",
            box=None) -> np.ndarray:
    """RGB uint8: the gray image with one map (normalised to its own max, upsampled over its box) blended on top."""
    gray = np.asarray(gray, dtype=np.float32)
    return colorize(gray, heat_values(np.asarray(cam)[None], 0, *gray.shape, box=box), opacity, colormap)
