"""The browser's decoder (app/worker/decode.js) gives Python's training.decode.decode values bit for bit, on every PNG
type, JPEG (the browser's libjpeg-turbo and Pillow's agree here), and the DICOM variants of docs/decoding.md; and
it refuses the bad-input corpus with the same reasons. The module is imported into the page directly."""

from __future__ import annotations

import base64
import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from tests.corpus import BAD_INPUTS, make_dicom, png_bytes, png_chunk, write_bad_corpus, write_good_images

pytestmark = pytest.mark.browser

DECODE = """async ([b64, name]) => {
  const { decodeBytes } = await import("./app/worker/decode.js");
  const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
  try {
    const image = await decodeBytes(bytes, name);
    const raw = new Uint8Array(image.data.buffer, image.data.byteOffset, image.data.byteLength);
    let text = "";
    for (let i = 0; i < raw.length; i += 8192) text += String.fromCharCode(...raw.subarray(i, i + 8192));
    return { width: image.width, height: image.height, data: btoa(text) };
  } catch (e) {
    return { error: e.reason ?? String(e), message: e.message };
  }
}"""

ADAM7 = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]


def _png(width, height, depth, color_type, scanlines: bytes, extra=b"", interlace=0) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, depth, color_type, 0, 0, interlace)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + extra + png_chunk(b"IDAT", zlib.compress(scanlines))
            + png_chunk(b"IEND", b""))


def _rows(array) -> bytes:
    return b"".join(b"\x00" + row.tobytes() for row in array)


def _adam7(array) -> bytes:
    return b"".join(_rows(array[y0::dy, x0::dx]) for x0, y0, dx, dy in ADAM7 if array[y0::dy, x0::dx].size)


def _packed(values, depth) -> bytes:
    out = b""
    for row in values:
        bits = "".join(format(int(v), f"0{depth}b") for v in row)
        bits += "0" * (-len(bits) % 8)
        out += b"\x00" + int(bits, 2).to_bytes(len(bits) // 8, "big")
    return out


def _variants(folder) -> dict:
    rng = np.random.default_rng(7)
    g8 = rng.integers(0, 256, (13, 17), dtype=np.uint8)
    rgb = rng.integers(0, 256, (13, 17, 3), dtype=np.uint8)
    rgba = rng.integers(0, 256, (13, 17, 4), dtype=np.uint8)
    palette = Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE, colors=20)
    u12 = rng.integers(0, 4096, (20, 24)).astype(np.uint16)
    s16 = rng.integers(-2000, 2000, (20, 24)).astype(np.int16)
    lut = Dataset()
    lut.LUTDescriptor = [4096, 0, 12]
    lut.LUTData = np.arange(4096)[::-1].astype("<u2").tobytes()
    ramp = (np.add.outer(np.arange(60), np.arange(70)) % 256).astype(np.uint8)
    jpeg = io.BytesIO()
    Image.fromarray(rgb).resize((37, 23)).save(jpeg, "JPEG", quality=90)
    gray_jpeg = io.BytesIO()
    Image.fromarray(g8).save(gray_jpeg, "JPEG", quality=90)
    files = {
        "rgb.png": png_bytes(rgb),
        "rgba.png": png_bytes(rgba),
        "la.png": png_bytes(Image.merge("LA", [Image.fromarray(rgba[..., 0].copy()),
                                               Image.fromarray(rgba[..., 3].copy())])),
        "palette.png": png_bytes(palette),
        "palette_trns.png": png_bytes(palette, transparency=bytes([0, 128, 255, 30])),
        "gray_trns.png": png_bytes(g8, transparency=int(g8[0, 0])),
        "rgb_trns.png": png_bytes(rgb, transparency=tuple(int(v) for v in rgb[0, 0])),
        "filtered.png": png_bytes(np.stack([ramp, ramp[::-1], ramp], -1), optimize=True),
        "interlaced.png": _png(17, 13, 8, 2, _adam7(rgb), interlace=1),
        "gray16_interlaced.png": _png(17, 13, 16, 0, _adam7(rng.integers(0, 65536, (13, 17)).astype(">u2")),
                                      interlace=1),
        "rgba16.png": _png(17, 13, 16, 6, _rows(rng.integers(0, 65536, (13, 17, 4)).astype(">u2"))),
        "la16.png": _png(17, 13, 16, 4, _rows(rng.integers(0, 65536, (13, 17, 2)).astype(">u2"))),
        "wide.jpg": jpeg.getvalue(),
        "gray.jpg": gray_jpeg.getvalue(),
        "signed16_minmax.dcm": make_dicom(s16),
        "signed16_sigmoid.dcm": make_dicom(s16, WindowCenter=10, WindowWidth=800, VOILUTFunction="SIGMOID"),
        "signed16_linear_exact.dcm": make_dicom(s16, WindowCenter=10, WindowWidth=800, VOILUTFunction="LINEAR_EXACT"),
        "big_endian.dcm": make_dicom(u12, transfer_syntax="1.2.840.10008.1.2.2", RescaleSlope=0.5, RescaleIntercept=3),
        "implicit.dcm": make_dicom(u12, transfer_syntax="1.2.840.10008.1.2", WindowCenter="2000", WindowWidth="1000"),
        "rgb.dcm": make_dicom(rgb, photometric="RGB"),
        "voi_lut.dcm": make_dicom(u12, VOILUTSequence=Sequence([lut])),
        "deflated.dcm": _deflated(make_dicom(u12, WindowCenter=1000, WindowWidth=3000)),
    }
    for depth in (1, 2, 4):
        values = rng.integers(0, 2**depth, (13, 17))
        files[f"gray{depth}.png"] = _png(17, 13, depth, 0, _packed(values, depth))
        # Pillow compares the scaled sample with the raw tRNS value (and ignores tRNS for 1-bit): same in the app
        files[f"gray{depth}_trns.png"] = _png(17, 13, depth, 0, _packed(values, depth),
                                              png_chunk(b"tRNS", struct.pack(">H", 2**depth - 1)))
    paths = {}
    for name, data in files.items():
        paths[name] = folder / name
        paths[name].write_bytes(data)
    paths.update({path.name: path for path in write_good_images(folder / "good").values()})
    return paths


def _deflated(dicom: bytes) -> bytes:
    import pydicom

    ds = pydicom.dcmread(io.BytesIO(dicom))
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.1.99"
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def _empty_transfer_syntax(dicom: bytes) -> bytes:
    """The file with its Transfer Syntax UID element present but empty (length 0), the group length adjusted."""
    tag = b"\x02\x00\x10\x00UI"
    at = dicom.index(tag)
    length = struct.unpack("<H", dicom[at + 6:at + 8])[0]
    out = dicom[:at] + tag + b"\x00\x00" + dicom[at + 8 + length:]
    group = out.index(b"\x02\x00\x00\x00UL\x04\x00") + 8
    return out[:group] + struct.pack("<I", struct.unpack("<I", out[group:group + 4])[0] - length) + out[group + 4:]


def _browser_decode(page, path):
    return page.evaluate(DECODE, [base64.b64encode(path.read_bytes()).decode(), path.name])


def test_decoded_pixels_are_bit_exact(app, tmp_path):
    from core.decode import decode

    app.open(offline_ready=False)
    mismatches = []
    for name, path in sorted(_variants(tmp_path).items()):
        result = _browser_decode(app.page, path)
        assert "error" not in result, (name, result)
        got = np.frombuffer(base64.b64decode(result["data"]), dtype=np.float32).reshape(result["height"],
                                                                                         result["width"])
        want = decode(path)
        if got.shape != want.shape or not np.array_equal(got, want):
            mismatches.append((name, got.shape, want.shape))
    assert not mismatches


def test_bad_inputs_are_refused_with_python_reasons(app, tmp_path):
    from core.decode import DecodeError, decode

    app.open(offline_ready=False)
    for (name, what, expected), path in zip(BAD_INPUTS, write_bad_corpus(tmp_path)):
        result = _browser_decode(app.page, path)
        assert "error" in result, (name, what)
        assert expected in result["error"], (name, result["error"])
        assert result["message"].startswith(f"{name}: "), result["message"]
        with pytest.raises(DecodeError) as python:
            decode(path)
        assert expected in python.value.reason


def test_empty_transfer_syntax_is_refused_like_python(app, tmp_path):
    """A Transfer Syntax UID that is there but empty: Python refuses the transfer syntax "", and so does the browser
    (it used to fail on it with a TypeError: dicom-parser's string() is undefined for an empty element)."""
    from core.decode import DecodeError, decode

    path = tmp_path / "empty_ts.dcm"
    path.write_bytes(_empty_transfer_syntax(make_dicom(np.arange(16, dtype=np.uint8).reshape(4, 4))))
    with pytest.raises(DecodeError) as python:
        decode(path)
    assert "DICOM transfer syntax  () is not supported" in python.value.reason
    app.open(offline_ready=False)
    assert _browser_decode(app.page, path)["error"] == python.value.reason


def test_contract_constants_match_python(app):
    from core.decode import DICOM_TRANSFER_SYNTAXES, GRAY_WEIGHTS, MAX_PIXELS

    app.open(offline_ready=False)
    contract = app.page.evaluate("""async () => {
      const m = await import("./app/shared/contract.js");
      return { syntaxes: m.DICOM_TRANSFER_SYNTAXES, weights: m.GRAY_WEIGHTS, maxPixels: m.MAX_PIXELS };
    }""")
    assert contract == {"syntaxes": DICOM_TRANSFER_SYNTAXES, "weights": list(GRAY_WEIGHTS), "maxPixels": MAX_PIXELS}


def test_heatmap_upsampling_matches_python(app):
    from core.heatmap import upsample

    app.open(offline_ready=False)
    cam = np.random.default_rng(3).random((3, 7, 7)).astype(np.float32)
    got = app.page.evaluate("""async ([cam, k, h, w]) => {
      const { upsample } = await import("./app/worker/heatmap.js");
      return Array.from(upsample(Float32Array.from(cam), 7, 7, k, h, w));
    }""", [cam.ravel().tolist(), 1, 45, 31])
    np.testing.assert_allclose(np.array(got).reshape(45, 31), upsample(cam[1], 45, 31), atol=1e-5)


@pytest.mark.parametrize("scale", ["weighted", "own"])
def test_heatmap_scale_matches_python(app, scale):
    """The worker's display values (heatmap.js heatValues) are core/heatmap.py's heat_values, on both
    scales: weighted by the class probability on the image's common scale (the default), and each class to its own
    maximum."""
    from core.heatmap import heat_values

    app.open(offline_ready=False)
    cam = np.random.default_rng(5).random((3, 7, 7)).astype(np.float32)
    probabilities = [0.02, 0.9, 0.08]
    weights = probabilities if scale == "weighted" else None
    for k in range(3):
        got = app.page.evaluate("""async ([cam, k, h, w, p]) => {
          const { heatValues } = await import("./app/worker/heatmap.js");
          return Array.from(heatValues(Float32Array.from(cam), 7, 7, k, h, w, p));
        }""", [cam.ravel().tolist(), k, 45, 31, weights])
        np.testing.assert_allclose(np.array(got).reshape(45, 31), heat_values(cam, k, 45, 31, weights), atol=1e-6)
