// @ts-check
// Pictures for the viewer, made in the worker: the gray image (reduced to at most `maxSide` pixels a side by
// averaging blocks) and the heatmap at the same size, both as transferable ImageBitmaps.
import { heatRgba } from "./heatmap.js";

export const DISPLAY_MAX_SIDE = 1024;

/** Display size for an image: a whole-number reduction factor, so blocks average cleanly. */
export function displaySize(width, height, maxSide = DISPLAY_MAX_SIDE) {
  const factor = Math.max(1, Math.ceil(Math.max(width, height) / maxSide));
  return { factor, width: Math.max(1, Math.floor(width / factor)), height: Math.max(1, Math.floor(height / factor)) };
}

export function grayBitmap(image, maxSide = DISPLAY_MAX_SIDE) {
  const { factor, width, height } = displaySize(image.width, image.height, maxSide);
  const rgba = new Uint8ClampedArray(width * height * 4);
  const area = factor * factor;
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      let sum = 0;
      for (let dy = 0; dy < factor; dy++) {
        const row = (y * factor + dy) * image.width + x * factor;
        for (let dx = 0; dx < factor; dx++) sum += image.data[row + dx];
      }
      const j = 4 * (y * width + x);
      rgba[j] = rgba[j + 1] = rgba[j + 2] = sum / area; // Uint8ClampedArray rounds and clamps
      rgba[j + 3] = 255;
    }
  }
  return createImageBitmap(new ImageData(rgba, width, height));
}

/** `scale`: "weighted" (by the class probability, one scale for the image; the default) or "own" (heatmap.js).
 * `box`: where the map lies, in the picture's pixels (a lung-cropping model's crop box, scaled); null: everywhere. */
export function heatBitmap(cam, h, w, k, width, height, lut, scale, probabilities, box = null) {
  const weights = scale === "own" ? null : probabilities;
  return createImageBitmap(new ImageData(heatRgba(cam, h, w, k, width, height, lut, weights, box), width, height));
}

/** The lung mask's outline (probability above 0.5, upsampled bilinearly to width x height) as a bitmap. */
export function outlineBitmap(mask, size, width, height) {
  const up = upsampleMask(mask, size, width, height);
  const rgba = new Uint8ClampedArray(width * height * 4);
  const inside = (x, y) => x >= 0 && y >= 0 && x < width && y < height && up[y * width + x] > 0.5;
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      if (!inside(x, y) || (inside(x - 1, y) && inside(x + 1, y) && inside(x, y - 1) && inside(x, y + 1))) continue;
      const j = 4 * (y * width + x);
      rgba[j] = 64; rgba[j + 1] = 224; rgba[j + 2] = 255; rgba[j + 3] = 255;
    }
  }
  return createImageBitmap(new ImageData(rgba, width, height));
}

function upsampleMask(mask, size, width, height) {
  const out = new Float32Array(width * height);
  for (let y = 0; y < height; y++) {
    const sy = Math.min(Math.max(((y + 0.5) * size) / height - 0.5, 0), size - 1);
    const y0 = Math.floor(sy), y1 = Math.min(y0 + 1, size - 1), ty = sy - y0;
    for (let x = 0; x < width; x++) {
      const sx = Math.min(Math.max(((x + 0.5) * size) / width - 0.5, 0), size - 1);
      const x0 = Math.floor(sx), x1 = Math.min(x0 + 1, size - 1), tx = sx - x0;
      const top = mask[y0 * size + x0] * (1 - tx) + mask[y0 * size + x1] * tx;
      const bottom = mask[y1 * size + x0] * (1 - tx) + mask[y1 * size + x1] * tx;
      out[y * width + x] = top * (1 - ty) + bottom * ty;
    }
  }
  return out;
}
