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

/** `scale`: "weighted" (by the class probability, one scale for the image; the default) or "own" (heatmap.js). */
export function heatBitmap(cam, h, w, k, width, height, lut, scale, probabilities) {
  const weights = scale === "own" ? null : probabilities;
  return createImageBitmap(new ImageData(heatRgba(cam, h, w, k, width, height, lut, weights), width, height));
}
