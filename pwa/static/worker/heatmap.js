// The heatmap of one class from the model's `cam` output [3, h, w] (already ReLU'd Grad-CAM): its hottest cell,
// and a coloured RGBA overlay at display size: bilinear upsampling with half-pixel centres (training/heatmap.py
// `upsample`), normalised by its maximum, inferno colours, alpha = the normalised value (the slider scales it).

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

/** RGBA pixels of class k's heatmap at outW x outH; `lut` is 256 RGB entries (768 bytes). */
export function heatRgba(cam, h, w, k, outW, outH, lut) {
  const up = upsample(cam, h, w, k, outH, outW);
  let max = 0;
  for (let i = 0; i < up.length; i++) if (up[i] > max) max = up[i];
  const rgba = new Uint8ClampedArray(up.length * 4);
  for (let i = 0, j = 0; i < up.length; i++, j += 4) {
    const v = max > 0 ? up[i] / max : 0;
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
