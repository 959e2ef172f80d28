// @ts-check
// JPEG -> gray (docs/decoding.md §5): this module reads the marker segments itself (size and components from the
// frame header, checked before decoding; a file that ends before its EOI marker is truncated, as Pillow says),
// and the browser's decoder (libjpeg-turbo in Chromium, like Pillow) turns the scans into pixels.
import { checkSize } from "./errors.js";
import { rgbaToGray } from "./gray.js";

const isFrameMarker = (m) => m >= 0xc0 && m <= 0xcf && m !== 0xc4 && m !== 0xc8 && m !== 0xcc;
const isStandalone = (m) => m === 0x01 || (m >= 0xd0 && m <= 0xd7);

/** Position of the next marker after entropy-coded data that starts at `pos`, or -1 at the end of the data. */
function skipScan(bytes, pos) {
  for (let i = pos; i + 1 < bytes.length; i++) {
    if (bytes[i] !== 0xff) continue;
    const next = bytes[i + 1];
    if (next === 0x00 || next === 0xff || (next >= 0xd0 && next <= 0xd7)) continue; // stuffing, fill, restarts
    return i;
  }
  return -1;
}

/**
 * Walk the marker segments: {width, height, components} from the frame header (SOFn), and `complete` = an EOI
 * marker was found after the scans. Throws on a malformed file.
 */
export function jpegInfo(bytes) {
  let frame = null, pos = 2, sawScan = false;
  for (;;) {
    if (pos + 1 >= bytes.length) return { ...requireFrame(frame), complete: false };
    if (bytes[pos] !== 0xff) throw new Error(`no JPEG marker at byte ${pos}`);
    const marker = bytes[pos + 1];
    if (marker === 0xff) { pos += 1; continue; } // fill byte
    if (marker === 0xd9) {
      if (!sawScan) throw new Error("no image data before the end marker");
      return { ...requireFrame(frame), complete: true };
    }
    if (isStandalone(marker)) { pos += 2; continue; }
    if (pos + 3 >= bytes.length) return { ...requireFrame(frame), complete: false };
    const length = (bytes[pos + 2] << 8) | bytes[pos + 3];
    if (length < 2) throw new Error(`bad segment length ${length} at byte ${pos}`);
    if (isFrameMarker(marker) && !frame) {
      if (pos + 11 > bytes.length) return { ...requireFrame(frame), complete: false };
      frame = {
        precision: bytes[pos + 4],
        height: (bytes[pos + 5] << 8) | bytes[pos + 6],
        width: (bytes[pos + 7] << 8) | bytes[pos + 8],
        components: bytes[pos + 9],
      };
    }
    pos += 2 + length;
    if (marker === 0xda) { // start of scan: entropy-coded data follows, up to the next marker
      if (!frame) throw new Error("scan before the frame header");
      sawScan = true;
      pos = skipScan(bytes, pos);
      if (pos < 0) return { ...frame, complete: false };
    }
  }
}

function requireFrame(frame) {
  if (!frame) throw new Error("image file is truncated (no frame header)");
  return frame;
}

/** Decode with the browser: RGBA bytes as they come out of the decoder (EXIF orientation applied). */
export async function decodeJpegRgba(bytes) {
  const bitmap = await createImageBitmap(new Blob([bytes], { type: "image/jpeg" }), {
    colorSpaceConversion: "none", premultiplyAlpha: "none", imageOrientation: "from-image",
  });
  try {
    const { width, height } = bitmap;
    const context = /** @type {OffscreenCanvasRenderingContext2D} */ (
      new OffscreenCanvas(width, height).getContext("2d", { willReadFrequently: true }));
    context.drawImage(bitmap, 0, 0);
    return { width, height, rgba: context.getImageData(0, 0, width, height).data };
  } finally {
    bitmap.close();
  }
}

/** JPEG bytes -> {width, height, data: Float32Array}; other errors become "truncated or corrupt JPEG: ...". */
export async function decodeJpeg(bytes, source, maxPixels) {
  const info = jpegInfo(bytes);
  checkSize(source, info.width, info.height, maxPixels);
  if (!info.complete) throw new Error("image file is truncated");
  const { width, height, rgba } = await decodeJpegRgba(bytes);
  const n = width * height;
  if (info.components === 1) { // gray: the sample is the value (R = G = B in the decoder's RGBA)
    const data = new Float32Array(n);
    for (let i = 0; i < n; i++) data[i] = rgba[4 * i];
    return { width, height, data };
  }
  // YCbCr/RGB: the decoder's RGB; CMYK/YCCK: the browser's own CMYK -> RGB (not Pillow's; docs/pwa.md)
  return { width, height, data: rgbaToGray(rgba, n) };
}
