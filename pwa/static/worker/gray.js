// @ts-check
// docs/decoding.md §3: RGB -> gray and compositing on black, every step rounded to float32 like numpy does.
// fround of a + - * / done in double on two float32 values is exactly the float32 result of that operation.
import { GRAY_WEIGHTS } from "../shared/contract.js";

const f = Math.fround;
export const W0 = f(GRAY_WEIGHTS[0]);
export const W1 = f(GRAY_WEIGHTS[1]);
export const W2 = f(GRAY_WEIGHTS[2]);

/** fround(fround(fround(R * w0) + fround(G * w1)) + fround(B * w2)) */
export function rgbToGray(r, g, b) {
  return f(f(f(r * W0) + f(g * W1)) + f(b * W2));
}

/** Composite on black: fround(fround(gray * A) / 255), A in 0..255. */
export function onBlack(gray, alpha) {
  return f(f(gray * alpha) / 255);
}

/** Gray from RGBA bytes (a canvas's getImageData), ignoring alpha. */
export function rgbaToGray(rgba, count) {
  const out = new Float32Array(count);
  for (let i = 0, j = 0; i < count; i++, j += 4) out[i] = rgbToGray(rgba[j], rgba[j + 1], rgba[j + 2]);
  return out;
}
