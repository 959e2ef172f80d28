// @ts-check
// A file (Blob) -> {width, height, data: Float32Array of gray values 0..255}, or a DecodeError naming the file and
// the reason: the browser's side of core/decode.py. docs/decoding.md is the contract for both.
import { MAX_PIXELS, OTHER_FORMATS } from "../shared/contract.js";
import { decodeDicom } from "./dicom.js";
import { DecodeError, describe } from "./errors.js";
import { decodeJpeg } from "./jpeg.js";
import { decodePng } from "./png.js";

export { DecodeError, MAX_PIXELS };

const PNG_SIGNATURE = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];
const DECODERS = { png: decodePng, jpeg: decodeJpeg, dicom: decodeDicom };
const FAILURE = {
  png: "truncated or corrupt PNG", jpeg: "truncated or corrupt JPEG", dicom: "truncated or corrupt DICOM",
};

const startsWith = (bytes, magic, offset = 0) =>
  bytes.length >= offset + magic.length && magic.every((b, i) => bytes[offset + i] === b);
const hexBytes = (hex) => hex.match(/../g).map((h) => parseInt(h, 16));
const OTHER = OTHER_FORMATS.map(([offset, hex, what]) => [offset, hexBytes(hex), what]);

/** "png", "jpeg" or "dicom" from the magic bytes (never the file name), else a DecodeError (docs/decoding.md §1). */
export function sniff(bytes, source = "<bytes>") {
  if (startsWith(bytes, PNG_SIGNATURE)) return "png";
  if (startsWith(bytes, [0xff, 0xd8, 0xff])) return "jpeg";
  if (startsWith(bytes, [0x44, 0x49, 0x43, 0x4d], 128)) return "dicom";
  if (!bytes.length) throw new DecodeError(source, "empty file (0 bytes)");
  throw new DecodeError(source, `not a PNG, JPEG or DICOM file (looks like ${looksLike(bytes)})`);
}

function looksLike(bytes) {
  for (const [offset, magic, what] of OTHER) if (startsWith(bytes, magic, offset)) return what;
  if ((bytes[0] === 0x02 || bytes[0] === 0x08) && bytes[1] === 0x00 && bytes[3] === 0x00) {
    return "a DICOM data set without the 128-byte preamble and 'DICM' prefix, which is not supported";
  }
  const text = asText(bytes.subarray(0, 1024));
  if (text === null) {
    const hex = Array.from(bytes.subarray(0, 8), (b) => b.toString(16).padStart(2, "0")).join(" ");
    return `unrecognised binary data starting with ${hex}`;
  }
  const head = text.trimStart().toLowerCase();
  if (head.startsWith("<!doctype html") || head.startsWith("<html") || head.includes("<html")) return "an HTML page";
  if (head.startsWith("<?xml") || head.startsWith("<")) return "XML/markup text";
  return "text";
}

/** The head as text if it is printable UTF-8 (a character cut at the end is fine), like Python's str.isprintable. */
function asText(head) {
  let text;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(head, { stream: true }); // drops a leading BOM
  } catch {
    return null;
  }
  for (const ch of text) {
    if (ch === " " || ch === "\t" || ch === "\n" || ch === "\r" || ch === "\f") continue;
    if (/[\p{C}\p{Z}]/u.test(ch)) return null;
  }
  return text;
}

/** Decode bytes; `source` names the file in every error. */
export async function decodeBytes(bytes, source = "<bytes>", maxPixels = MAX_PIXELS) {
  const kind = sniff(bytes, source);
  try {
    return await DECODERS[kind](bytes, source, maxPixels);
  } catch (e) {
    if (e instanceof DecodeError) throw e;
    throw new DecodeError(source, `${FAILURE[kind]}: ${describe(e)}`);
  }
}

/** Decode a File or Blob. */
export async function decode(blob, source = blob.name || "<bytes>", maxPixels = MAX_PIXELS) {
  let buffer;
  try {
    buffer = await blob.arrayBuffer();
  } catch (e) {
    throw new DecodeError(source, `cannot read file: ${describe(e)}`);
  }
  return decodeBytes(new Uint8Array(buffer), source, maxPixels);
}
