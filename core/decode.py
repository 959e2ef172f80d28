"""Turn a PNG, JPEG or DICOM file (path or bytes) into a grayscale float32 image, or raise DecodeError.

This is the one decoder for training, export calibration and tests. docs/decoding.md states every formula used
here; the browser app follows that document, so change both together.
"""

from __future__ import annotations

import codecs
import io
import math
import os
import warnings
from pathlib import Path

import numpy as np
import pydicom
from PIL import Image, ImageOps, JpegImagePlugin, PngImagePlugin
from pydicom.multival import MultiValue
from pydicom.pixels import pixel_array as dicom_pixel_array
from pydicom.uid import UID

GRAY_WEIGHTS = (0.299, 0.587, 0.114)  # ITU-R BT.601 luma; the browser uses the same
MAX_PIXELS = 2**26  # rows * cols; checked from the header, before any pixel is decoded

# The browser app supports exactly this list too (dicom-parser + the browser's JPEG decoder).
DICOM_TRANSFER_SYNTAXES = {
    "1.2.840.10008.1.2": "Implicit VR Little Endian",
    "1.2.840.10008.1.2.1": "Explicit VR Little Endian",
    "1.2.840.10008.1.2.1.99": "Deflated Explicit VR Little Endian",
    "1.2.840.10008.1.2.2": "Explicit VR Big Endian",
    "1.2.840.10008.1.2.4.50": "JPEG Baseline",
    "1.2.840.10008.1.2.4.51": "JPEG Extended (8-bit only)",
}
_JPEG_BASELINE = "1.2.840.10008.1.2.4.50"
_JPEG_EXTENDED = "1.2.840.10008.1.2.4.51"
_JPEG_SYNTAXES = (_JPEG_BASELINE, _JPEG_EXTENDED)
_JPEG_YCBCR = ("YBR_FULL", "YBR_FULL_422")  # pydicom converts these to RGB after JPEG decoding
_BIG_ENDIAN = "1.2.840.10008.1.2.2"

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_JPEG_SOI = b"\xff\xd8\xff"

# (offset, magic bytes, what it is): only to tell the user what an unsupported file looks like.
_OTHER_FORMATS = (
    (0, b"GIF8", "a GIF image"),
    (0, b"%PDF", "a PDF document"),
    (0, b"II*\x00", "a TIFF image"),
    (0, b"MM\x00*", "a TIFF image"),
    (8, b"WEBP", "a WebP image"),
    (4, b"ftyp", "an HEIC/AVIF image or MP4 video"),
    (0, b"\x00\x00\x00\x0cjP  ", "a JPEG 2000 image"),
    (0, b"\xff\x4f\xff\x51", "a JPEG 2000 codestream"),
    (0, b"PK\x03\x04", "a ZIP archive"),
    (0, b"\x1f\x8b", "a gzip archive"),
    (0, b"BM", "a BMP image"),
)


class DecodeError(ValueError):
    """The one error decode() raises: which file, and why it cannot be used."""

    def __init__(self, source, reason: str):
        super().__init__(f"{source}: {reason}")
        self.source = str(source)
        self.reason = reason

    def __reduce__(self):  # keep both fields when crossing process boundaries (DataLoader workers)
        return type(self), (self.source, self.reason)


def decode(src, *, name=None, max_pixels=MAX_PIXELS) -> np.ndarray:
    """Decode a PNG, JPEG or DICOM (path or bytes) to a C-contiguous float32 (H, W) array with values in 0..255."""
    source, data = _read(src, name)
    kind = sniff(data, name=source)
    try:
        # Pillow's own bomb check can fire inside pydicom's JPEG decoding: make its warning an error too.
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = _DECODERS[kind](data, source, max_pixels)
    except DecodeError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise DecodeError(source, f"image too large: {_describe(e)}") from e
    except Exception as e:  # the contract: callers only ever see DecodeError
        raise DecodeError(source, f"{_FAILURE[kind]}: {_describe(e)}") from e
    return np.ascontiguousarray(image, dtype=np.float32)


def sniff(data: bytes, *, name="<bytes>") -> str:
    """Return "png", "jpeg" or "dicom" from the magic bytes (never the file name), else raise DecodeError."""
    if data.startswith(_PNG_SIGNATURE):
        return "png"
    if data.startswith(_JPEG_SOI):
        return "jpeg"
    if data[128:132] == b"DICM":
        return "dicom"
    if not data:
        raise DecodeError(name, "empty file (0 bytes)")
    raise DecodeError(name, f"not a PNG, JPEG or DICOM file (looks like {_looks_like(data)})")


def _read(src, name) -> tuple[str, bytes]:
    if isinstance(src, (bytes, bytearray, memoryview)):
        return name or "<bytes>", bytes(src)
    if isinstance(src, (str, os.PathLike)):
        source = name or os.fspath(src)
        try:
            return source, Path(src).read_bytes()
        except OSError as e:
            raise DecodeError(source, f"cannot read file: {e.strerror or _describe(e)}") from e
    raise DecodeError(name or repr(src), f"expected a file path or bytes, got {type(src).__name__}")


def _looks_like(data: bytes) -> str:
    for offset, magic, what in _OTHER_FORMATS:
        if data[offset : offset + len(magic)] == magic:
            return what
    if data[:2] in (b"\x02\x00", b"\x08\x00") and data[3:4] == b"\x00":
        # Group 0002/0008 tag, little endian: an old-style dataset. Not supported (the browser's DICOM parser
        # needs the Part 10 header too); DCMTK's dcmconv or pydicom can re-save it as a Part 10 file.
        return "a DICOM data set without the 128-byte preamble and 'DICM' prefix, which is not supported"
    text = _as_text(data[:1024])
    if text is None:
        return f"unrecognised binary data starting with {data[:8].hex(' ')}"
    head = text.lstrip().lower()
    if head.startswith(("<!doctype html", "<html")) or "<html" in head:
        return "an HTML page"
    if head.startswith("<?xml") or head.startswith("<"):
        return "XML/markup text"
    return "text"


def _as_text(head: bytes) -> str | None:
    """The head as text if it is printable UTF-8 (a multi-byte character cut at the end is fine)."""
    try:
        text = codecs.getincrementaldecoder("utf-8")().decode(head).lstrip("\ufeff")
    except UnicodeDecodeError:
        return None
    return text if all(ch.isprintable() or ch in "\t\n\r\f" for ch in text) else None


def _describe(e: Exception) -> str:
    return " ".join(str(e).split()) or type(e).__name__


def _check_size(source, width: int, height: int, max_pixels: int) -> None:
    if width <= 0 or height <= 0:
        raise DecodeError(source, f"image has zero width or height ({width} x {height} pixels)")
    if width * height > max_pixels:
        raise DecodeError(source, f"image too large: {width} x {height} pixels ({pixel_count(width * height)}) is "
                                  f"larger than the {pixel_count(max_pixels, limit=True)} limit")


def pixel_count(n: int, limit: bool = False) -> str:
    """A pixel count in human terms: "900 megapixels", "67.1 megapixels", "20 pixels"; `limit` gives the adjective
    form ("67.1-megapixel"). One decimal below 100 megapixels, rounded half up; errors.js formats it the same way."""
    if n < 100_000:
        return f"{n}-pixel" if limit else f"{n} pixels"
    megapixels = n / 1e6
    text = str(math.floor(megapixels + 0.5)) if megapixels >= 100 else f"{math.floor(n / 1e5 + 0.5) / 10:g}"
    return f"{text}-megapixel" if limit else f"{text} megapixels"


# --- PNG and JPEG (Pillow) ---------------------------------------------------------------------------------------


def _decode_png(data: bytes, source, max_pixels) -> np.ndarray:
    # The plugin class instead of Image.open: Image.open runs Pillow's own bomb check (Image.MAX_IMAGE_PIXELS),
    # which would pre-empt ours with a different message and ignore max_pixels.
    image = PngImagePlugin.PngImageFile(io.BytesIO(data))
    _check_size(source, image.width, image.height, max_pixels)
    image.load()
    return _pillow_to_gray(image, source)


def _decode_jpeg(data: bytes, source, max_pixels) -> np.ndarray:
    image = JpegImagePlugin.JpegImageFile(io.BytesIO(data))
    _check_size(source, image.width, image.height, max_pixels)
    image.load()
    return _pillow_to_gray(ImageOps.exif_transpose(image), source)


def _pillow_to_gray(image: Image.Image, source) -> np.ndarray:
    if "transparency" in image.info and image.mode in ("L", "RGB", "P"):
        image = image.convert("LA" if image.mode == "L" else "RGBA")  # tRNS chunk -> real alpha channel
    mode = image.mode
    if mode in ("1", "L"):
        return np.asarray(image.convert("L"), dtype=np.float32)
    if mode == "I" or mode.startswith("I;16"):
        return np.asarray(image, dtype=np.float32) * np.float32(255) / np.float32(65535)
    if mode in ("P", "CMYK"):
        return _rgb_to_gray(np.asarray(image.convert("RGB")))
    if mode == "RGB":
        return _rgb_to_gray(np.asarray(image))
    if mode == "LA":
        la = np.asarray(image, dtype=np.float32)
        return _on_black(la[..., 0], la[..., 1])
    if mode == "RGBA":
        rgba = np.asarray(image)
        return _on_black(_rgb_to_gray(rgba), rgba[..., 3].astype(np.float32))
    raise DecodeError(source, f"unsupported pixel mode {mode}")


def _rgb_to_gray(rgb: np.ndarray) -> np.ndarray:
    """(R*w0 + G*w1) + B*w2, every step in float32, no rounding (docs/decoding.md)."""
    r, g, b = (rgb[..., i].astype(np.float32) for i in range(3))
    w = [np.float32(x) for x in GRAY_WEIGHTS]
    return r * w[0] + g * w[1] + b * w[2]


def _on_black(gray: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    return gray * alpha / np.float32(255)  # composite on black: (gray * alpha) / 255 in float32


# --- DICOM (pydicom) ---------------------------------------------------------------------------------------------


def _decode_dicom(data: bytes, source, max_pixels) -> np.ndarray:
    ds = pydicom.dcmread(io.BytesIO(data))
    ts = _check_dicom(ds, source, max_pixels)
    # pydicom may use pylibjpeg or GDCM when installed; the project (like the browser) relies on Pillow only.
    stored = dicom_pixel_array(ds, decoding_plugin="pillow" if ts in _JPEG_SYNTAXES else "")
    if ds.get("SamplesPerPixel", 1) == 3:
        return _rgb_to_gray(stored)
    gray = _voi(_modality(stored, ds), ds, ts, source)
    return 255.0 - gray if ds.PhotometricInterpretation == "MONOCHROME1" else gray


def _check_dicom(ds, source, max_pixels) -> str:
    """Refuse everything the pipeline (or the browser) does not support, before decoding pixels. Returns the TS."""
    if not ds:  # pydicom stops quietly at the end of a file cut inside its header
        raise DecodeError(source, "truncated or corrupt DICOM: no data elements after the file meta header")
    if "PixelData" not in ds:
        raise DecodeError(source, "DICOM has no pixel data")
    ts = ds.file_meta.get("TransferSyntaxUID")
    if ts is None:
        raise DecodeError(source, "DICOM file meta has no Transfer Syntax UID")
    bits = ds.get("BitsAllocated")
    if ts not in DICOM_TRANSFER_SYNTAXES or (ts == _JPEG_EXTENDED and bits != 8):
        detail = f" with BitsAllocated {bits}" if ts == _JPEG_EXTENDED else ""
        raise DecodeError(
            source,
            f"DICOM transfer syntax {UID(ts).name} ({ts}){detail} is not supported "
            "(supported: uncompressed, deflated, JPEG Baseline, 8-bit JPEG Extended)",
        )
    rows, cols = ds.get("Rows"), ds.get("Columns")
    if rows is None or cols is None:
        raise DecodeError(source, "DICOM has pixel data but no Rows/Columns")
    _check_size(source, cols, rows, max_pixels)
    frames = int(ds.get("NumberOfFrames") or 1)
    if frames > 1:
        raise DecodeError(source, f"multi-frame DICOM ({frames} frames) is not supported")
    samples, photometric = ds.get("SamplesPerPixel", 1), ds.get("PhotometricInterpretation")
    if samples == 1 and photometric in ("MONOCHROME1", "MONOCHROME2"):
        allowed_bits = (8, 16)
    elif samples == 3 and (photometric == "RGB" or (photometric in _JPEG_YCBCR and ts in _JPEG_SYNTAXES)):
        allowed_bits = (8,)
    else:
        raise DecodeError(
            source, f"DICOM photometric interpretation {photometric} ({samples} samples per pixel) is not supported"
        )
    if bits not in allowed_bits:
        raise DecodeError(source, f"DICOM {photometric} with BitsAllocated {bits} is not supported")
    if "ModalityLUTSequence" in ds:
        raise DecodeError(source, "DICOM Modality LUT Sequence is not supported (only Rescale Slope/Intercept)")
    if ts not in _JPEG_SYNTAXES:
        needed = (rows * cols * samples * bits + 7) // 8
        if len(ds.PixelData) < needed:
            raise DecodeError(
                source,
                f"DICOM pixel data is truncated: {len(ds.PixelData)} bytes, but {rows} x {cols} x {samples} "
                f"samples of {bits} bits need {needed}",
            )
    return ts


def _number(ds, keyword: str) -> float | None:
    """First value of a numeric element, or None when absent or empty."""
    value = ds.get(keyword)
    if isinstance(value, MultiValue):
        value = value[0] if len(value) else None
    return None if value is None or value == "" else float(value)


def _modality(stored: np.ndarray, ds) -> np.ndarray:
    slope, intercept = _number(ds, "RescaleSlope"), _number(ds, "RescaleIntercept")
    return stored.astype(np.float64) * (1.0 if slope is None else slope) + (0.0 if intercept is None else intercept)


def _voi(x: np.ndarray, ds, ts, source) -> np.ndarray:
    center, width = _number(ds, "WindowCenter"), _number(ds, "WindowWidth")
    if center is not None and width is not None:
        return _window(x, center, width, str(ds.get("VOILUTFunction") or "LINEAR").strip().upper(), source)
    if ds.get("VOILUTSequence"):
        return _voi_lut(x, ds.VOILUTSequence[0], little_endian=ts != _BIG_ENDIAN, source=source)
    lo, hi = x.min(), x.max()
    if int(ds.get("BitsAllocated", 16)) == 8 and lo >= 0 and hi <= 255:
        return x  # 8-bit data already in display range: kept as is, like the same image saved as PNG
    return np.zeros_like(x) if hi == lo else (x - lo) / (hi - lo) * 255.0


def _window(x: np.ndarray, c: float, w: float, function: str, source) -> np.ndarray:
    """DICOM PS3.3 C.11.2.1.2 (and C.11.2.1.3.1 for SIGMOID), output range 0..255."""
    if function == "LINEAR":
        if w < 1:
            raise DecodeError(source, f"invalid DICOM window width {w} (LINEAR needs >= 1)")
        if w == 1:
            return np.where(x <= c - 0.5, 0.0, 255.0)
        return np.clip(((x - (c - 0.5)) / (w - 1) + 0.5) * 255.0, 0.0, 255.0)
    if w <= 0:
        raise DecodeError(source, f"invalid DICOM window width {w} ({function} needs > 0)")
    if function == "LINEAR_EXACT":
        return np.clip(((x - c) / w + 0.5) * 255.0, 0.0, 255.0)
    if function == "SIGMOID":
        with np.errstate(over="ignore"):  # exp overflow -> inf -> 0, which is the right limit
            return 255.0 / (1.0 + np.exp(-4.0 * (x - c) / w))
    raise DecodeError(source, f"DICOM VOI LUT function {function} is not supported")


def _voi_lut(x: np.ndarray, item, *, little_endian: bool, source) -> np.ndarray:
    entries, first, bits = (int(v) for v in item.LUTDescriptor)
    entries = entries or 65536  # PS3.3 C.11.2.1.1: 0 means 2**16
    data = item.LUTData
    if isinstance(data, bytes):  # OW: 16-bit words in the dataset's byte order
        lut = np.frombuffer(data, dtype="<u2" if little_endian else ">u2")
    else:
        lut = np.atleast_1d(np.asarray(data))
    if len(lut) < entries:
        raise DecodeError(source, f"DICOM VOI LUT has {len(lut)} entries, its descriptor says {entries}")
    index = np.clip(np.floor(x) - first, 0, entries - 1).astype(np.int64)
    return lut[index].astype(np.float64) * 255.0 / (2**bits - 1)


_DECODERS = {"png": _decode_png, "jpeg": _decode_jpeg, "dicom": _decode_dicom}
_FAILURE = {kind: f"truncated or corrupt {kind.upper()}" for kind in _DECODERS}  # reason prefix for library errors
