// @ts-check
// The one error type of decoding, as in core/decode.py: DecodeError("{source}: {reason}").

export class DecodeError extends Error {
  constructor(source, reason) {
    super(`${source}: ${reason}`);
    this.name = "DecodeError";
    this.source = String(source);
    this.reason = reason;
  }
}

/** A library's error as one line (dicom-parser throws strings, or {exception, dataSet} objects). */
export function describe(error) {
  let e = error;
  if (e && typeof e === "object" && "exception" in e && !(e instanceof Error)) e = e.exception;
  const text = String(e instanceof Error ? e.message : e).split(/\s+/).filter(Boolean).join(" ");
  return text || (e && e.name) || "unknown error";
}

/** docs/decoding.md §2: from the header, before any pixel is decoded. */
export function checkSize(source, width, height, maxPixels) {
  if (width <= 0 || height <= 0) {
    throw new DecodeError(source, `image has zero width or height (${width} x ${height} pixels)`);
  }
  if (width * height > maxPixels) {
    throw new DecodeError(source, `image too large: ${width} x ${height} pixels (${pixelCount(width * height)}) ` +
      `is larger than the ${pixelCount(maxPixels, true)} limit`);
  }
}

/** A pixel count in human terms ("900 megapixels", "67.1-megapixel" with `limit`), as decode.py's pixel_count. */
export function pixelCount(n, limit = false) {
  if (n < 100_000) return limit ? `${n}-pixel` : `${n} pixels`;
  const megapixels = n / 1e6;
  const text = megapixels >= 100 ? String(Math.floor(megapixels + 0.5)) : String(Math.floor(n / 1e5 + 0.5) / 10);
  return limit ? `${text}-megapixel` : `${text} megapixels`;
}

/** A number as Python's repr(float) writes it (0.0, 1.5, 1e-05), so messages read the same on both sides. */
export function pyFloat(x) {
  if (!Number.isFinite(x)) return Number.isNaN(x) ? "nan" : (x > 0 ? "inf" : "-inf");
  if (x !== 0 && (Math.abs(x) < 1e-4 || Math.abs(x) >= 1e16)) {
    const [mantissa, exponent] = x.toExponential().split("e");
    const sign = exponent.startsWith("-") ? "-" : "+";
    return `${mantissa}e${sign}${exponent.replace(/^[+-]/, "").padStart(2, "0")}`;
  }
  return Number.isInteger(x) ? x.toFixed(1) : String(x);
}

/** Python's str() of an optional value: None for a missing one. */
export function pyValue(value) {
  return value === undefined || value === null ? "None" : String(value);
}
