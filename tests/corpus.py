"""Small image files for decoder tests: inputs that must be refused with a clear reason, and good files.

Everything is built in memory from seeded numpy arrays with Pillow and pydicom, so the corpus is the same on every
machine and takes milliseconds. The Python decoder tests, `prepare` and the browser tests all use it.
"""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.sequence import Sequence

EXPLICIT_LE = "1.2.840.10008.1.2.1"
IMPLICIT_LE = "1.2.840.10008.1.2"
EXPLICIT_BE = "1.2.840.10008.1.2.2"
JPEG_BASELINE = "1.2.840.10008.1.2.4.50"
JPEG_2000 = "1.2.840.10008.1.2.4.91"

_CR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.1"
_INSTANCE_UID = "1.2.826.0.1.3680043.8.498.1"  # fixed, so the files are byte-for-byte reproducible


# --- builders ----------------------------------------------------------------------------------------------------


def png_bytes(image: np.ndarray | Image.Image, mode: str | None = None, **save_options) -> bytes:
    if isinstance(image, np.ndarray):
        image = Image.fromarray(image, mode)
    buffer = io.BytesIO()
    image.save(buffer, "PNG", **save_options)
    return buffer.getvalue()


def jpeg_bytes(image: Image.Image, **save_options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", **save_options)
    return buffer.getvalue()


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def handmade_png(width: int, height: int, idat: bytes) -> bytes:
    """An 8-bit gray PNG with the given IHDR size and IDAT payload, every CRC correct."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")


def make_dicom(pixels: np.ndarray, *, photometric="MONOCHROME2", transfer_syntax=EXPLICIT_LE, **elements) -> bytes:
    """A single-frame Part 10 DICOM file of `pixels` ((H, W) or (H, W, 3); uint8, uint16 or int16).

    `elements` set or override data elements by keyword (e.g. WindowCenter=40); None deletes one (PixelData=None).
    For a compressed transfer syntax pass the encapsulated PixelData yourself.
    """
    pixels = np.asarray(pixels)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = _CR_IMAGE_STORAGE
    meta.MediaStorageSOPInstanceUID = _INSTANCE_UID
    meta.TransferSyntaxUID = transfer_syntax
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = _CR_IMAGE_STORAGE
    ds.SOPInstanceUID = _INSTANCE_UID
    ds.Modality = "CR"
    ds.Rows, ds.Columns = pixels.shape[:2]
    ds.SamplesPerPixel = 3 if pixels.ndim == 3 else 1
    if pixels.ndim == 3:
        ds.PlanarConfiguration = 0
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated = ds.BitsStored = pixels.dtype.itemsize * 8
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = int(pixels.dtype.kind == "i")
    # pydicom writes PixelData bytes as given, so they must already be in the transfer syntax's byte order.
    byte_order = ">" if transfer_syntax == EXPLICIT_BE else "<"
    ds.PixelData = pixels.astype(pixels.dtype.newbyteorder(byte_order)).tobytes()
    for keyword, value in elements.items():
        if value is None:
            delattr(ds, keyword)
        else:
            setattr(ds, keyword, value)
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def encapsulated_jpeg(gray: np.ndarray) -> bytes:
    """PixelData for JPEG Baseline: one frame, one fragment."""
    return encapsulate([jpeg_bytes(Image.fromarray(gray), quality=95)])


def _rng() -> np.random.Generator:
    return np.random.default_rng(20240601)


def _gray8(height=64, width=64) -> np.ndarray:
    return _rng().integers(0, 256, (height, width), dtype=np.uint8)


def _with_jpeg_size(jpeg: bytes, width: int, height: int) -> bytes:
    """Rewrite the frame size in the SOF segment (walking the marker segments, not searching for bytes)."""
    data, pos = bytearray(jpeg), 2
    while data[pos + 1] not in (0xC0, 0xC1, 0xC2):
        pos += 2 + struct.unpack(">H", data[pos + 2 : pos + 4])[0]
    data[pos + 5 : pos + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def _raw_dataset() -> bytes:
    """An old-style DICOM data set: no 128-byte preamble, no 'DICM', no file meta; starts with group 0008."""
    full = make_dicom(_gray8(4, 4), transfer_syntax=IMPLICIT_LE)
    meta_length = struct.unpack("<I", full[140:144])[0]  # (0002,0000) group length value
    return full[144 + meta_length :]


def _gif() -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(_gray8(8, 8)).save(buffer, "GIF")
    return buffer.getvalue()


def _modality_lut_item() -> Dataset:
    item = Dataset()
    item.LUTDescriptor = [256, 0, 16]
    item.ModalityLUTType = "HU"
    item.LUTData = np.arange(0, 512, 2, dtype="<u2").tobytes()  # OW, little endian like the file
    return item


def _png_with_bad_ihdr_crc() -> bytes:
    data = bytearray(png_bytes(_gray8()))
    data[29] ^= 0xFF  # last byte of the IHDR CRC
    return bytes(data)


def _truncated(data: bytes) -> bytes:
    return data[: len(data) // 2]


_HTML = b"<!DOCTYPE html>\n<html><head><title>404 Not Found</title></head><body><h1>Not Found</h1></body></html>\n"
_NOT_SUPPORTED = "not a PNG, JPEG or DICOM file"

# (file name, what it is, substring the DecodeError reason must contain, builder)
_CASES = [
    ("empty.png", "empty file", "empty file", lambda: b""),
    ("truncated.png", "8-bit gray PNG cut in half", "truncated", lambda: _truncated(png_bytes(_gray8()))),
    ("truncated.jpg", "JPEG cut in half", "truncated", lambda: _truncated(jpeg_bytes(Image.fromarray(_gray8())))),
    ("bad_crc.png", "PNG whose IHDR checksum is wrong", "corrupt PNG", _png_with_bad_ihdr_crc),
    ("corrupt_idat.png", "PNG whose IDAT is not zlib data", "corrupt PNG", lambda: handmade_png(8, 8, bytes(40))),
    ("notes.png", "plain text renamed .png", f"{_NOT_SUPPORTED} (looks like text)", lambda: b"Patient notes\n"),
    ("page.dcm", "HTML page renamed .dcm", f"{_NOT_SUPPORTED} (looks like an HTML page)", lambda: _HTML),
    ("animation.gif", "GIF image", f"{_NOT_SUPPORTED} (looks like a GIF image)", _gif),
    (
        "random.jpg",
        "random bytes renamed .jpg",
        f"{_NOT_SUPPORTED} (looks like unrecognised binary data",
        lambda: _rng().integers(0, 256, 512, dtype=np.uint8).tobytes(),
    ),
    ("raw_dataset.dcm", "DICOM data set without preamble and 'DICM'", "without the 128-byte preamble", _raw_dataset),
    (
        "huge.png",
        "PNG whose IHDR says 100000 x 100000",
        "too large",
        lambda: handmade_png(100_000, 100_000, zlib.compress(bytes(1000))),
    ),
    (
        "huge.jpg",
        "JPEG whose frame header says 65535 x 65535",
        "too large",
        lambda: _with_jpeg_size(jpeg_bytes(Image.fromarray(_gray8(16, 16))), 65535, 65535),
    ),
    (
        "huge.dcm",
        "DICOM whose Rows x Columns is 30000 x 30000",
        "too large",
        lambda: make_dicom(_gray8(4, 4), Rows=30000, Columns=30000),
    ),
    ("zero_rows.dcm", "DICOM with Rows 0", "zero width or height", lambda: make_dicom(_gray8(4, 4), Rows=0)),
    ("no_pixels.dcm", "DICOM without Pixel Data", "no pixel data", lambda: make_dicom(_gray8(4, 4), PixelData=None)),
    (
        "short_pixels.dcm",
        "DICOM whose pixel data is half of Rows x Columns",
        "pixel data is truncated",
        lambda: make_dicom(_gray8(8, 8), PixelData=bytes(32)),
    ),
    (
        "multiframe.dcm",
        "DICOM with 3 frames",
        "multi-frame DICOM (3 frames) is not supported",
        lambda: make_dicom(_gray8(12, 4), Rows=4, NumberOfFrames=3),
    ),
    (
        "jpeg2000.dcm",
        "DICOM in JPEG 2000 transfer syntax",
        f"({JPEG_2000}) is not supported",
        lambda: make_dicom(
            _gray8(4, 4), transfer_syntax=JPEG_2000, PixelData=encapsulate([b"\xff\x4f\xff\x51" + bytes(60)])
        ),
    ),
    (
        "palette.dcm",
        "DICOM PALETTE COLOR",
        "photometric interpretation PALETTE COLOR (1 samples per pixel) is not supported",
        lambda: make_dicom(_gray8(4, 4), photometric="PALETTE COLOR"),
    ),
    (
        "modality_lut.dcm",
        "DICOM with a Modality LUT Sequence",
        "Modality LUT Sequence is not supported",
        lambda: make_dicom(_gray8(4, 4), ModalityLUTSequence=Sequence([_modality_lut_item()])),
    ),
    (
        "zero_window.dcm",
        "DICOM with WindowWidth 0",
        "invalid DICOM window width",
        lambda: make_dicom(_gray8(4, 4), WindowCenter=100, WindowWidth=0),
    ),
    (
        "truncated.dcm",
        "DICOM file cut inside its header",
        "truncated or corrupt DICOM",
        lambda: make_dicom(_gray8(4, 4))[:200],
    ),
]

BAD_INPUTS = [case[:3] for case in _CASES]


def write_bad_corpus(folder) -> list[Path]:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for file_name, _, _, build in _CASES:
        path = folder / file_name
        path.write_bytes(build())
        paths.append(path)
    return paths


def half_black_jpeg(orientation: int) -> bytes:
    """A 32 x 16 (W x H) RGB JPEG, left half black, right half white, with this EXIF orientation.

    Orientation 6 (rotate 90 degrees clockwise to display) shows it 16 x 32 with the black half on top.
    """
    rgb = np.zeros((16, 32, 3), dtype=np.uint8)
    rgb[:, 16:] = 255
    exif = Image.Exif()
    exif[0x0112] = orientation
    return jpeg_bytes(Image.fromarray(rgb), quality=95, exif=exif.tobytes())


def write_good_images(folder) -> dict[str, Path]:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    gray16 = (_rng().integers(0, 4096, (20, 24)) * 16).astype(np.uint16)
    stored12 = _rng().integers(0, 4096, (24, 20)).astype(np.uint16)
    files = {
        "png_gray8": ("gray8.png", png_bytes(_gray8(24, 32))),
        "png_gray16": ("gray16.png", png_bytes(gray16)),
        "jpeg_rgb_exif6": ("rgb_exif6.jpg", half_black_jpeg(6)),
        "dicom_mono1_16bit": (
            "mono1_16bit.dcm",
            make_dicom(
                stored12,
                photometric="MONOCHROME1",
                BitsStored=12,
                HighBit=11,
                RescaleSlope=2,
                RescaleIntercept=-1024,
                WindowCenter=3000,
                WindowWidth=5000,
            ),
        ),
        "dicom_mono2_8bit": ("mono2_8bit.dcm", make_dicom(_gray8(16, 20))),
        "dicom_jpeg_baseline": (
            "jpeg_baseline.dcm",
            make_dicom(_gray8(16, 24), transfer_syntax=JPEG_BASELINE, PixelData=encapsulated_jpeg(_gray8(16, 24))),
        ),
    }
    paths = {}
    for key, (file_name, data) in files.items():
        paths[key] = folder / file_name
        paths[key].write_bytes(data)
    return paths

