// @ts-check
// DICOM -> gray with dicom-parser (docs/decoding.md §6): the same checks, in the same order, with the same
// reasons as core/decode.py, then modality LUT, VOI (window or VOI LUT), MONOCHROME1, all in float64 and
// rounded to float32 once at the end. JPEG frames are decoded by the browser, like Pillow decodes them for pydicom.
import dicomParser from "../../vendor/dicom-parser/dicom-parser.mjs";
import { DICOM_TRANSFER_SYNTAXES, TRANSFER_SYNTAX_NAMES } from "../shared/contract.js";
import { DecodeError, checkSize, pyFloat, pyValue } from "./errors.js";
import { rgbToGray } from "./gray.js";
import { inflate } from "./inflate.js";
import { decodeJpegRgba, jpegInfo } from "./jpeg.js";

const IMPLICIT_LE = "1.2.840.10008.1.2";
const DEFLATED = "1.2.840.10008.1.2.1.99";
const BIG_ENDIAN = "1.2.840.10008.1.2.2";
const JPEG_BASELINE = "1.2.840.10008.1.2.4.50";
const JPEG_EXTENDED = "1.2.840.10008.1.2.4.51";
const JPEG_SYNTAXES = [JPEG_BASELINE, JPEG_EXTENDED];
const JPEG_YCBCR = ["YBR_FULL", "YBR_FULL_422"];

const TAG = {
  TransferSyntaxUID: "x00020010",
  SamplesPerPixel: "x00280002",
  PhotometricInterpretation: "x00280004",
  PlanarConfiguration: "x00280006",
  NumberOfFrames: "x00280008",
  Rows: "x00280010",
  Columns: "x00280011",
  BitsAllocated: "x00280100",
  BitsStored: "x00280101",
  PixelRepresentation: "x00280103",
  WindowCenter: "x00281050",
  WindowWidth: "x00281051",
  RescaleIntercept: "x00281052",
  RescaleSlope: "x00281053",
  VOILUTFunction: "x00281056",
  ModalityLUTSequence: "x00283000",
  LUTDescriptor: "x00283002",
  LUTData: "x00283006",
  VOILUTSequence: "x00283010",
  PixelData: "x7fe00010",
};

const text = (ds, tag) => {
  const value = ds.elements[tag] ? ds.string(tag) : undefined;
  return value === undefined || value === "" ? undefined : value;
};
const uint16 = (ds, tag, index = 0) => (ds.elements[tag] ? ds.uint16(tag, index) : undefined);

/** First value of a numeric (DS/IS) element, or null when absent or empty (core/decode.py `_number`). */
function number(ds, tag) {
  const value = text(ds, tag);
  if (value === undefined) return null;
  const first = value.split("\\")[0].trim();
  if (first === "") return null;
  const x = Number(first);
  if (Number.isNaN(x)) throw new Error(`could not convert string to float: '${first}'`);
  return x;
}

/** The data set (file meta + body). Deflated bodies are inflated first (DecompressionStream), then parsed. */
async function parse(bytes, source, maxPixels) {
  const meta = dicomParser.readPart10Header(bytes);
  if (meta.position >= bytes.length) {
    throw new DecodeError(source, "truncated or corrupt DICOM: no data elements after the file meta header");
  }
  if (!meta.elements[TAG.TransferSyntaxUID]) {
    throw new DecodeError(source, "DICOM file meta has no Transfer Syntax UID");
  }
  // One that is there but empty (string() is undefined for length 0) is the transfer syntax "", which check()
  // refuses as core/decode.py does.
  const ts = (meta.string(TAG.TransferSyntaxUID) ?? "").replace(/\0/g, "").trim();
  let body = bytes, start = meta.position;
  if (ts === DEFLATED) {
    // generous cap: the largest allowed image (3 samples of 8 bits, or 1 of 16) plus room for the other elements
    const limit = maxPixels * 3 + (16 << 20);
    const deflated = bytes.subarray(start);
    try {
      body = await inflate([deflated], "deflate-raw", limit);
    } catch (e) {
      // PS3.5 A.5: an odd-length deflated stream is padded with one null byte, which DecompressionStream
      // refuses as data after the end of the stream; without it the stream must be whole.
      if (deflated.length < 2 || deflated[deflated.length - 1] !== 0) throw e;
      body = await inflate([deflated.subarray(0, deflated.length - 1)], "deflate-raw", limit);
    }
    start = 0;
    if (!body.length) {
      throw new DecodeError(source, "truncated or corrupt DICOM: no data elements after the file meta header");
    }
  }
  const parser = ts === BIG_ENDIAN ? dicomParser.bigEndianByteArrayParser : dicomParser.littleEndianByteArrayParser;
  const stream = new dicomParser.ByteStream(parser, body, start);
  const ds = new dicomParser.DataSet(parser, body, {});
  ds.warnings = stream.warnings;
  const parseBody = ts === IMPLICIT_LE ? dicomParser.parseDicomDataSetImplicit : dicomParser.parseDicomDataSetExplicit;
  parseBody(ds, stream, body.length, {});
  if (!Object.keys(ds.elements).length) {
    throw new DecodeError(source, "truncated or corrupt DICOM: no data elements after the file meta header");
  }
  return { ds, ts };
}

/** Refuse what the pipeline does not support, before decoding pixels (core/decode.py `_check_dicom`). */
function check(ds, ts, source, maxPixels) {
  const fail = (reason) => new DecodeError(source, reason);
  const pixels = ds.elements[TAG.PixelData];
  if (!pixels) throw fail("DICOM has no pixel data");
  const bits = uint16(ds, TAG.BitsAllocated);
  if (!(ts in DICOM_TRANSFER_SYNTAXES) || (ts === JPEG_EXTENDED && bits !== 8)) {
    const detail = ts === JPEG_EXTENDED ? ` with BitsAllocated ${pyValue(bits)}` : "";
    throw fail(`DICOM transfer syntax ${TRANSFER_SYNTAX_NAMES[ts] ?? ts} (${ts})${detail} is not supported ` +
      "(supported: uncompressed, deflated, JPEG Baseline, 8-bit JPEG Extended)");
  }
  const rows = uint16(ds, TAG.Rows), cols = uint16(ds, TAG.Columns);
  if (rows === undefined || cols === undefined) throw fail("DICOM has pixel data but no Rows/Columns");
  checkSize(source, cols, rows, maxPixels);
  const frames = Math.trunc(number(ds, TAG.NumberOfFrames) || 1);
  if (frames > 1) throw fail(`multi-frame DICOM (${frames} frames) is not supported`);
  const samples = uint16(ds, TAG.SamplesPerPixel) ?? 1;
  const photometric = text(ds, TAG.PhotometricInterpretation)?.trim();
  const jpeg = JPEG_SYNTAXES.includes(ts);
  let allowedBits;
  if (samples === 1 && (photometric === "MONOCHROME1" || photometric === "MONOCHROME2")) allowedBits = [8, 16];
  else if (samples === 3 && (photometric === "RGB" || (JPEG_YCBCR.includes(photometric) && jpeg))) allowedBits = [8];
  else {
    throw fail(`DICOM photometric interpretation ${pyValue(photometric)} (${samples} samples per pixel) ` +
      "is not supported");
  }
  if (!allowedBits.includes(bits)) {
    throw fail(`DICOM ${photometric} with BitsAllocated ${pyValue(bits)} is not supported`);
  }
  if (ds.elements[TAG.ModalityLUTSequence]) {
    throw fail("DICOM Modality LUT Sequence is not supported (only Rescale Slope/Intercept)");
  }
  if (!jpeg) {
    const needed = Math.floor((rows * cols * samples * bits + 7) / 8);
    const have = Math.max(0, Math.min(pixels.length, ds.byteArray.length - pixels.dataOffset));
    if (have < needed) {
      throw fail(`DICOM pixel data is truncated: ${have} bytes, but ${rows} x ${cols} x ${samples} samples of ` +
        `${bits} bits need ${needed}`);
    }
  }
  return {
    rows, cols, samples, bits, photometric, jpeg,
    bitsStored: uint16(ds, TAG.BitsStored) ?? bits,
    signed: uint16(ds, TAG.PixelRepresentation) === 1,
    planar: uint16(ds, TAG.PlanarConfiguration) ?? 0,
    littleEndian: ts !== BIG_ENDIAN,
  };
}

/** Stored values of uncompressed gray data: sign-extended or masked to BitsStored, like pydicom. */
function storedGray(ds, info) {
  const { rows, cols, bits, bitsStored, signed, littleEndian } = info;
  const n = rows * cols;
  const el = ds.elements[TAG.PixelData];
  const bytes = ds.byteArray;
  const view = new DataView(bytes.buffer, bytes.byteOffset + el.dataOffset, n * (bits >> 3));
  const stored = new Float64Array(n);
  const used = Math.max(1, Math.min(bitsStored, bits));
  const shift = 32 - used, mask = used >= 32 ? -1 : (2 ** used) - 1;
  for (let i = 0; i < n; i++) {
    const raw = bits === 8 ? view.getUint8(i) : view.getUint16(2 * i, littleEndian);
    stored[i] = signed ? (raw << shift) >> shift : raw & mask;
  }
  return stored;
}

/** Uncompressed 8-bit RGB (interleaved or planar) -> gray. */
function rgbGray(ds, info) {
  const { rows, cols, planar } = info;
  const n = rows * cols;
  const el = ds.elements[TAG.PixelData];
  const p = ds.byteArray.subarray(el.dataOffset, el.dataOffset + 3 * n);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    out[i] = planar === 1 ? rgbToGray(p[i], p[n + i], p[2 * n + i]) : rgbToGray(p[3 * i], p[3 * i + 1], p[3 * i + 2]);
  }
  return out;
}

/** The single JPEG frame, decoded by the browser: RGBA bytes of Rows x Columns. */
async function jpegFrame(ds, info, source, maxPixels) {
  const el = ds.elements[TAG.PixelData];
  if (!el.encapsulatedPixelData || !el.fragments || !el.fragments.length) {
    throw new Error("JPEG transfer syntax, but the pixel data is not encapsulated");
  }
  const frame = dicomParser.readEncapsulatedPixelDataFromFragments(ds, el, 0, el.fragments.length);
  const header = jpegInfo(frame);
  checkSize(source, header.width, header.height, maxPixels); // the frame's own size: a bomb inside a small header
  const { width, height, rgba } = await decodeJpegRgba(frame);
  if (width !== info.cols || height !== info.rows) {
    throw new Error(`the JPEG frame is ${width} x ${height} pixels, but Columns x Rows is ${info.cols} x ${info.rows}`);
  }
  return rgba;
}

function modality(stored, ds) {
  const slope = number(ds, TAG.RescaleSlope), intercept = number(ds, TAG.RescaleIntercept);
  const s = slope === null ? 1.0 : slope, b = intercept === null ? 0.0 : intercept;
  const x = new Float64Array(stored.length);
  for (let i = 0; i < x.length; i++) x[i] = stored[i] * s + b;
  return x;
}

const clip = (v) => (v < 0 ? 0 : v > 255 ? 255 : v);

/** DICOM PS3.3 C.11.2.1.2 (and C.11.2.1.3.1 for SIGMOID), output 0..255, in place. */
function applyWindow(x, c, w, fn, source) {
  if (fn === "LINEAR") {
    if (w < 1) throw new DecodeError(source, `invalid DICOM window width ${pyFloat(w)} (LINEAR needs >= 1)`);
    for (let i = 0; i < x.length; i++) {
      x[i] = w === 1 ? (x[i] <= c - 0.5 ? 0 : 255) : clip(((x[i] - (c - 0.5)) / (w - 1) + 0.5) * 255.0);
    }
    return x;
  }
  if (w <= 0) throw new DecodeError(source, `invalid DICOM window width ${pyFloat(w)} (${fn} needs > 0)`);
  if (fn === "LINEAR_EXACT") {
    for (let i = 0; i < x.length; i++) x[i] = clip(((x[i] - c) / w + 0.5) * 255.0);
    return x;
  }
  if (fn === "SIGMOID") {
    for (let i = 0; i < x.length; i++) x[i] = 255.0 / (1.0 + Math.exp((-4.0 * (x[i] - c)) / w));
    return x;
  }
  throw new DecodeError(source, `DICOM VOI LUT function ${fn} is not supported`);
}

function applyVoiLut(x, item, littleEndian, source) {
  const descriptor = item.elements[TAG.LUTDescriptor];
  const signedFirst = descriptor && descriptor.vr === "SS";
  const entries = item.uint16(TAG.LUTDescriptor, 0) || 65536; // 0 means 2**16
  const first = signedFirst ? item.int16(TAG.LUTDescriptor, 1) : item.uint16(TAG.LUTDescriptor, 1);
  const bits = item.uint16(TAG.LUTDescriptor, 2);
  const data = item.elements[TAG.LUTData];
  const available = data ? Math.floor(Math.min(data.length, item.byteArray.length - data.dataOffset) / 2) : 0;
  if (available < entries) {
    throw new DecodeError(source, `DICOM VOI LUT has ${available} entries, its descriptor says ${entries}`);
  }
  const view = new DataView(item.byteArray.buffer, item.byteArray.byteOffset + data.dataOffset, 2 * entries);
  const top = 2 ** bits - 1;
  for (let i = 0; i < x.length; i++) {
    let k = Math.floor(x[i]) - first;
    k = k < 0 ? 0 : k > entries - 1 ? entries - 1 : k;
    x[i] = (view.getUint16(2 * k, littleEndian) * 255.0) / top;
  }
  return x;
}

/** VOI: window, else VOI LUT, else 8-bit data in 0..255 as it is, else min-max (core/decode.py `_voi`). */
function voi(x, ds, info, source) {
  const c = number(ds, TAG.WindowCenter), w = number(ds, TAG.WindowWidth);
  if (c !== null && w !== null) {
    const fn = (text(ds, TAG.VOILUTFunction) || "LINEAR").trim().toUpperCase();
    return applyWindow(x, c, w, fn, source);
  }
  const sequence = ds.elements[TAG.VOILUTSequence];
  if (sequence && sequence.items && sequence.items.length) {
    return applyVoiLut(x, sequence.items[0].dataSet, info.littleEndian, source);
  }
  let lo = Infinity, hi = -Infinity;
  for (let i = 0; i < x.length; i++) {
    if (x[i] < lo) lo = x[i];
    if (x[i] > hi) hi = x[i];
  }
  if (info.bits === 8 && lo >= 0 && hi <= 255) return x; // already in display range, like the same image as PNG
  for (let i = 0; i < x.length; i++) x[i] = hi === lo ? 0 : ((x[i] - lo) / (hi - lo)) * 255.0;
  return x;
}

/** DICOM Part 10 bytes -> {width, height, data: Float32Array}. */
export async function decodeDicom(bytes, source, maxPixels) {
  const { ds, ts } = await parse(bytes, source, maxPixels);
  const info = check(ds, ts, source, maxPixels);
  const { rows, cols } = info;
  const n = rows * cols;
  let stored;
  if (info.jpeg) {
    const rgba = await jpegFrame(ds, info, source, maxPixels);
    if (info.samples === 3) { // YCbCr/RGB, already RGB from the decoder: gray and nothing else
      const data = new Float32Array(n);
      for (let i = 0; i < n; i++) data[i] = rgbToGray(rgba[4 * i], rgba[4 * i + 1], rgba[4 * i + 2]);
      return { width: cols, height: rows, data };
    }
    stored = new Float64Array(n);
    for (let i = 0; i < n; i++) stored[i] = rgba[4 * i];
  } else if (info.samples === 3) {
    return { width: cols, height: rows, data: rgbGray(ds, info) };
  } else {
    stored = storedGray(ds, info);
  }
  const y = voi(modality(stored, ds), ds, info, source);
  if (info.photometric === "MONOCHROME1") for (let i = 0; i < n; i++) y[i] = 255.0 - y[i];
  return { width: cols, height: rows, data: Float32Array.from(y) };
}

