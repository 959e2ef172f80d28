// @ts-check
// The heatmap of one class from the model's `cam` output [3, h, w] (already ReLU'd Grad-CAM): its hottest cell,
// and a coloured RGBA overlay at display size: bilinear upsampling with half-pixel centres (core/heatmap.py
// `upsample`), put on a display scale (`heatValues`, the same formula as heatmap.py's `heat_values`), inferno
// colours, alpha = the scaled value (the slider scales the whole layer).
//
// Two scales. "weighted" (the default): map_k * p_k / max_c(p_c * max(map_c)), one scale for every class of the
// image, so the strength of the colour says how much the class matters: the Pneumonia map of a 99.9 %-Normal
// image stays dark. "own": each class to its own maximum, which shows the shape of a map whatever its
// probability (and makes a 0.1 % class look as hot as the predicted one).

/** [row, col] of the maximum of class k's raw map (the first one, like numpy's argmax). */
export function hottestCell(cam, h, w, k) {
  const offset = k * h * w;
  let best = -Infinity, at = 0;
  for (let i = 0; i < h * w; i++) {
    if (cam[offset + i] > best) {
      best = cam[offset + i];
      at = i;
    }
  }
  return [Math.floor(at / w), at % w];
}

function axisWeights(nIn, nOut) {
  const lo = new Int32Array(nOut), hi = new Int32Array(nOut), frac = new Float32Array(nOut);
  for (let i = 0; i < nOut; i++) {
    const src = Math.min(Math.max(((i + 0.5) * nIn) / nOut - 0.5, 0), nIn - 1);
    lo[i] = Math.floor(src);
    hi[i] = Math.min(lo[i] + 1, nIn - 1);
    frac[i] = src - lo[i];
  }
  return { lo, hi, frac };
}

/** Class k's [h, w] map -> [outH, outW], bilinear, half-pixel centres (align_corners=False). */
export function upsample(cam, h, w, k, outH, outW) {
  const offset = k * h * w;
  const r = axisWeights(h, outH), c = axisWeights(w, outW);
  const out = new Float32Array(outH * outW);
  const row = new Float32Array(w);
  for (let y = 0; y < outH; y++) {
    const a = offset + r.lo[y] * w, b = offset + r.hi[y] * w, t = r.frac[y];
    for (let x = 0; x < w; x++) row[x] = cam[a + x] * (1 - t) + cam[b + x] * t;
    for (let x = 0; x < outW; x++) {
      const u = c.frac[x];
      out[y * outW + x] = row[c.lo[x]] * (1 - u) + row[c.hi[x]] * u;
    }
  }
  return out;
}

/** max over classes of p_c * max(map_c), on the raw maps: the divisor shared by all classes of one image. */
export function commonScale(cam, h, w, probabilities) {
  let scale = 0;
  probabilities.forEach((p, c) => {
    let max = 0;
    for (let i = c * h * w; i < (c + 1) * h * w; i++) if (cam[i] > max) max = cam[i];
    scale = Math.max(scale, p * max);
  });
  return scale;
}

/** {top, left, rows, cols} in whole pixels of `box` ([x0, y0, x1, y1] in pixels of an outW x outH picture; null:
 * the whole picture): where a lung-cropping model's map lies. core/heatmap.py `box_region`. */
export function boxRegion(box, outH, outW) {
  if (!box) return { top: 0, left: 0, rows: outH, cols: outW };
  const left = Math.round(box[0]), top = Math.round(box[1]);
  return { top, left, rows: Math.max(1, Math.round(box[3]) - top), cols: Math.max(1, Math.round(box[2]) - left) };
}

/** Class k's map at outH x outW in 0..1, upsampled over `box` and zero outside it: weighted by its probability on
 * the image's common scale when `probabilities` is given ("weighted"), else normalised to its own upsampled
 * maximum ("own"). */
export function heatValues(cam, h, w, k, outH, outW, probabilities = null, box = null) {
  const { top, left, rows, cols } = boxRegion(box, outH, outW);
  const up = upsample(cam, h, w, k, rows, cols);
  let divisor = 0, weight = 1;
  if (probabilities) {
    divisor = commonScale(cam, h, w, probabilities);
    weight = probabilities[k];
  } else {
    for (let i = 0; i < up.length; i++) if (up[i] > divisor) divisor = up[i];
  }
  const values = new Float32Array(outH * outW);
  if (divisor <= 0) return values;
  for (let y = 0; y < rows && top + y < outH; y++) {
    for (let x = 0; x < cols && left + x < outW; x++) {
      values[(top + y) * outW + left + x] = Math.min(1, (up[y * cols + x] * weight) / divisor);
    }
  }
  return values;
}

/** RGBA pixels of class k's heatmap at outW x outH on the chosen scale; `lut` is 256 RGB entries (768 bytes). */
export function heatRgba(cam, h, w, k, outW, outH, lut, probabilities = null, box = null) {
  const values = heatValues(cam, h, w, k, outH, outW, probabilities, box);
  const rgba = new Uint8ClampedArray(values.length * 4);
  for (let i = 0, j = 0; i < values.length; i++, j += 4) {
    const v = values[i];
    const index = Math.min(255, Math.floor(v * 256)) * 3; // matplotlib's float -> colour index
    rgba[j] = lut[index];
    rgba[j + 1] = lut[index + 1];
    rgba[j + 2] = lut[index + 2];
    rgba[j + 3] = Math.round(v * 255);
  }
  return rgba;
}

/** The colour map as bytes from its hex form in contract.js. */
export function lutFromHex(hex) {
  const lut = new Uint8Array(hex.length / 2);
  for (let i = 0; i < lut.length; i++) lut[i] = parseInt(hex.substr(2 * i, 2), 16);
  return lut;
}
