// @ts-check
// PNG -> gray, read by this module rather than by the browser's decoder (docs/decoding.md §4).
//
// A canvas cannot give the values Python has: it reduces 16-bit samples to 8 bits and stores colours
// premultiplied by alpha, which loses low bits where alpha < 255. Reading the file here (chunks, CRCs,
// DecompressionStream for zlib, unfiltering, Adam7) gives every PNG type bit for bit the values Pillow gives,
// quirks included (they are noted where they apply). The size is checked from IHDR before anything is inflated.
import { checkSize } from "./errors.js";
import { inflate } from "./inflate.js";
import { onBlack, rgbToGray } from "./gray.js";

const f = Math.fround;
const CHANNELS = { 0: 1, 2: 3, 3: 1, 4: 2, 6: 4 };
const DEPTHS = { 0: [1, 2, 4, 8, 16], 2: [8, 16], 3: [1, 2, 4, 8], 4: [8, 16], 6: [8, 16] };
// Adam7 passes: [x start, y start, x step, y step]
const ADAM7 = [[0, 0, 8, 8], [4, 0, 8, 8], [0, 4, 4, 8], [2, 0, 4, 4], [0, 2, 2, 4], [1, 0, 2, 2], [0, 1, 1, 2]];

let crcTable = null;

function crc32(bytes, start, end) {
  if (!crcTable) {
    crcTable = new Uint32Array(256);
    for (let n = 0; n < 256; n++) {
      let c = n;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
      crcTable[n] = c >>> 0;
    }
  }
  let c = 0xffffffff;
  for (let i = start; i < end; i++) c = crcTable[(c ^ bytes[i]) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

const ascii = (bytes, start, length) => String.fromCharCode(...bytes.subarray(start, start + length));

/** The chunks that matter. Like Pillow, CRCs are checked for every chunk before the first IDAT. */
function readChunks(bytes) {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const idat = [];
  let header = null, palette = null, trns = null, truncated = false, pos = 8;
  for (;;) {
    if (pos + 8 > bytes.length) {
      truncated = true;
      break;
    }
    const length = view.getUint32(pos);
    const type = ascii(bytes, pos + 4, 4);
    const end = pos + 12 + length;
    if (end > bytes.length) {
      truncated = true;
      if (type === "IDAT") idat.push(bytes.subarray(pos + 8, Math.min(bytes.length, pos + 8 + length)));
      break;
    }
    if (!idat.length && crc32(bytes, pos + 4, pos + 8 + length) !== view.getUint32(pos + 8 + length)) {
      throw new Error(`broken PNG file (bad checksum in chunk ${type})`);
    }
    const data = bytes.subarray(pos + 8, pos + 8 + length);
    if (!header && type !== "IHDR") throw new Error(`the first chunk is ${type}, not IHDR`);
    if (type === "IHDR") header = readHeader(data);
    else if (type === "PLTE") palette = data;
    else if (type === "tRNS") trns = data;
    else if (type === "IDAT") idat.push(data);
    else if (type === "IEND") break;
    pos = end;
  }
  if (!header) throw new Error("image file is truncated (no IHDR)");
  return { header, palette, trns, idat, truncated };
}

function readHeader(data) {
  if (data.length !== 13) throw new Error(`IHDR has ${data.length} bytes, not 13`);
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const header = {
    width: view.getUint32(0), height: view.getUint32(4), depth: data[8], colorType: data[9], interlace: data[12],
  };
  if (!(header.colorType in DEPTHS) || !DEPTHS[header.colorType].includes(header.depth)) {
    throw new Error(`unknown color type / bit depth ${header.colorType} / ${header.depth}`);
  }
  if (data[10] !== 0 || data[11] !== 0 || header.interlace > 1) {
    throw new Error("unknown compression, filter or interlace method");
  }
  return header;
}

function paeth(a, b, c) {
  const p = a + b - c, pa = Math.abs(p - a), pb = Math.abs(p - b), pc = Math.abs(p - c);
  return pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
}

/** Undo the per-row filters of one (sub-)image in place; returns its offset after the last row. */
function unfilter(raw, offset, rows, rowBytes, unit) {
  let prev = -1;
  for (let y = 0; y < rows; y++) {
    const type = raw[offset];
    const start = offset + 1;
    if (type > 4) throw new Error(`unknown filter type ${type} in row ${y}`);
    for (let i = 0; i < rowBytes; i++) {
      const a = i >= unit ? raw[start + i - unit] : 0;
      const b = prev >= 0 ? raw[prev + i] : 0;
      const c = prev >= 0 && i >= unit ? raw[prev + i - unit] : 0;
      let x = raw[start + i];
      if (type === 1) x += a;
      else if (type === 2) x += b;
      else if (type === 3) x += (a + b) >> 1;
      else if (type === 4) x += paeth(a, b, c);
      raw[start + i] = x & 0xff;
    }
    prev = start;
    offset = start + rowBytes;
  }
  return offset;
}

/** Every sample of the image at its own bit depth, channels interleaved: Uint8Array, or Uint16Array for 16 bits. */
async function readSamples(header, idat, truncated) {
  const { width, height, depth, colorType, interlace } = header;
  const channels = CHANNELS[colorType];
  const bits = channels * depth;
  const unit = Math.max(1, bits >> 3);
  const passes = (interlace ? ADAM7 : [[0, 0, 1, 1]]).map(([x0, y0, dx, dy]) => {
    const w = Math.ceil((width - x0) / dx), h = Math.ceil((height - y0) / dy);
    return { x0, y0, dx, dy, w, h, rowBytes: w > 0 && h > 0 ? Math.ceil((w * bits) / 8) : 0 };
  }).filter((p) => p.rowBytes > 0);
  const expected = passes.reduce((sum, p) => sum + p.h * (1 + p.rowBytes), 0);
  let raw;
  try {
    raw = await inflate(idat, "deflate", expected);
  } catch (e) {
    throw truncated ? new Error("image file is truncated") : e;
  }
  if (raw.length < expected) {
    throw new Error(truncated ? "image file is truncated"
      : `image data is incomplete (${raw.length} of ${expected} bytes)`);
  }
  const samples = depth === 16 ? new Uint16Array(width * height * channels) : new Uint8Array(width * height * channels);
  const mask = (1 << depth) - 1;
  let offset = 0;
  for (const p of passes) {
    const rowStart = offset;
    offset = unfilter(raw, offset, p.h, p.rowBytes, unit);
    for (let y = 0; y < p.h; y++) {
      const row = rowStart + y * (1 + p.rowBytes) + 1;
      const outRow = (p.y0 + y * p.dy) * width;
      for (let x = 0; x < p.w; x++) {
        const out = (outRow + p.x0 + x * p.dx) * channels;
        for (let c = 0; c < channels; c++) {
          const s = x * channels + c; // sample index within the row
          if (depth === 8) samples[out + c] = raw[row + s];
          else if (depth === 16) samples[out + c] = (raw[row + 2 * s] << 8) | raw[row + 2 * s + 1];
          else {
            const bit = s * depth;
            samples[out + c] = (raw[row + (bit >> 3)] >> (8 - depth - (bit & 7))) & mask;
          }
        }
      }
    }
  }
  return samples;
}

/** The samples as Pillow presents them, then gray (docs/decoding.md §4). */
function toGray(samples, header, palette, trns) {
  const { width, height, depth, colorType } = header;
  const n = width * height;
  const out = new Float32Array(n);
  const hi = depth === 16 ? 8 : 0; // Pillow keeps the high byte of 16-bit colour samples
  const u16 = (data, i) => (data[2 * i] << 8) | data[2 * i + 1];
  if (colorType === 0) {
    if (depth === 16) { // mode I;16; its tRNS is ignored
      for (let i = 0; i < n; i++) out[i] = f(f(samples[i] * 255) / 65535);
    } else if (depth === 1) { // mode "1": 0/255, tRNS ignored
      for (let i = 0; i < n; i++) out[i] = samples[i] ? 255 : 0;
    } else {
      const scale = 255 / ((1 << depth) - 1); // 1, 17 or 85: exact integers
      // Pillow compares the scaled value with the raw tRNS value (equal only for 8-bit files): kept as it is.
      const key = trns && trns.length >= 2 ? u16(trns, 0) : -1;
      for (let i = 0; i < n; i++) {
        const v = samples[i] * scale;
        out[i] = key < 0 ? v : onBlack(v, v === key ? 0 : 255);
      }
    }
  } else if (colorType === 2) {
    const key = trns && trns.length >= 6 ? [u16(trns, 0), u16(trns, 1), u16(trns, 2)] : null;
    for (let i = 0, j = 0; i < n; i++, j += 3) {
      const r = samples[j] >> hi, g = samples[j + 1] >> hi, b = samples[j + 2] >> hi;
      const gray = rgbToGray(r, g, b);
      // Pillow compares the 8-bit pixel with the raw (16-bit field) tRNS colour.
      out[i] = key ? onBlack(gray, r === key[0] && g === key[1] && b === key[2] ? 0 : 255) : gray;
    }
  } else if (colorType === 3) {
    if (!palette) throw new Error("palette image without a PLTE chunk");
    const entries = Math.floor(palette.length / 3);
    for (let i = 0; i < n; i++) {
      const k = samples[i];
      const [r, g, b] = k < entries ? [palette[3 * k], palette[3 * k + 1], palette[3 * k + 2]] : [0, 0, 0];
      const gray = rgbToGray(r, g, b);
      out[i] = trns ? onBlack(gray, k < trns.length ? trns[k] : 255) : gray;
    }
  } else if (colorType === 4) {
    for (let i = 0, j = 0; i < n; i++, j += 2) {
      if (depth === 8) out[i] = onBlack(samples[j], samples[j + 1]); // mode LA
      else { // Pillow opens 16-bit gray+alpha as RGBA with R = G = B = L
        const l = samples[j] >> 8;
        out[i] = onBlack(rgbToGray(l, l, l), samples[j + 1] >> 8);
      }
    }
  } else { // 6: RGBA
    for (let i = 0, j = 0; i < n; i++, j += 4) {
      out[i] = onBlack(rgbToGray(samples[j] >> hi, samples[j + 1] >> hi, samples[j + 2] >> hi), samples[j + 3] >> hi);
    }
  }
  return out;
}

/** PNG bytes -> {width, height, data: Float32Array}.
 * Errors other than DecodeError become "truncated or corrupt PNG". */
export async function decodePng(bytes, source, maxPixels) {
  const { header, palette, trns, idat, truncated } = readChunks(bytes);
  checkSize(source, header.width, header.height, maxPixels);
  if (!idat.length) throw new Error(truncated ? "image file is truncated" : "no image data (IDAT)");
  const samples = await readSamples(header, idat, truncated);
  return { width: header.width, height: header.height, data: toGray(samples, header, palette, trns) };
}
