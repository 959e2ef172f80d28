"""core/decode.py against hand-computed values (docs/decoding.md is the contract these numbers come from)."""

from __future__ import annotations

import math
import pickle
from pathlib import Path

import numpy as np
import pydicom.data
import pytest
from PIL import Image
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from core.decode import MAX_PIXELS, DecodeError, decode, sniff
from tests.conftest import SHARED_CXR
from tests.corpus import (
    BAD_INPUTS,
    EXPLICIT_BE,
    IMPLICIT_LE,
    JPEG_BASELINE,
    encapsulated_jpeg,
    half_black_jpeg,
    jpeg_bytes,
    make_dicom,
    png_bytes,
    write_bad_corpus,
    write_good_images,
)

SHARED_DATA = SHARED_CXR
PYDICOM_FILES = Path(pydicom.data.__file__).parent / "test_files"  # shipped with pydicom, no download
DEFLATED = "1.2.840.10008.1.2.1.99"


def luma(r, g, b):
    return 0.299 * r + 0.587 * g + 0.114 * b


@pytest.fixture(scope="module")
def bad_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bad")
    write_bad_corpus(folder)
    return folder


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    return write_good_images(tmp_path_factory.mktemp("good"))


# --- errors ------------------------------------------------------------------------------------------------------


def test_bad_corpus_is_big_and_unambiguous():
    names = [name for name, _, _ in BAD_INPUTS]
    assert len(names) >= 14
    assert len(set(names)) == len(names)


@pytest.mark.parametrize("case", BAD_INPUTS, ids=[name for name, _, _ in BAD_INPUTS])
def test_bad_input_is_refused_with_its_name_and_reason(bad_dir, case):
    file_name, _, expected = case
    path = bad_dir / file_name
    with pytest.raises(DecodeError) as caught:
        decode(path)
    assert caught.value.source == str(path)
    assert expected in caught.value.reason
    assert str(caught.value) == f"{path}: {caught.value.reason}"

    with pytest.raises(DecodeError) as caught:
        decode(path.read_bytes(), name=file_name)
    assert str(caught.value).startswith(f"{file_name}: ")
    assert expected in caught.value.reason


def test_bytes_without_a_name_are_called_bytes():
    with pytest.raises(DecodeError, match=r"^<bytes>: empty file"):
        decode(b"")


def test_missing_file_directory_and_wrong_type_are_decode_errors(tmp_path):
    with pytest.raises(DecodeError, match="cannot read file"):
        decode(tmp_path / "absent.png")
    with pytest.raises(DecodeError, match="cannot read file"):
        decode(tmp_path)
    with pytest.raises(DecodeError, match="expected a file path or bytes"):
        decode(42)


def test_decode_error_survives_pickling():  # DataLoader workers send exceptions between processes
    error = pickle.loads(pickle.dumps(DecodeError("a.png", "empty file (0 bytes)")))
    assert (error.source, error.reason, str(error)) == ("a.png", "empty file (0 bytes)", "a.png: empty file (0 bytes)")
    assert isinstance(error, ValueError)


def test_sniff_uses_content_not_extension(good):
    assert sniff(good["png_gray8"].read_bytes()) == "png"
    assert sniff(good["jpeg_rgb_exif6"].read_bytes()) == "jpeg"
    assert sniff(good["dicom_mono2_8bit"].read_bytes()) == "dicom"
    with pytest.raises(DecodeError, match="GIF"):
        sniff(b"GIF89a" + bytes(20), name="x.png")


# --- output contract ---------------------------------------------------------------------------------------------


def test_every_good_image_is_a_contiguous_2d_float32_in_range(good):
    for path in good.values():
        image = decode(path)
        assert image.ndim == 2 and image.dtype == np.float32 and image.flags.c_contiguous, path
        assert 0 <= image.min() and image.max() <= 255, path


# --- pixel limit -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["png_gray8", "jpeg_rgb_exif6", "dicom_mono2_8bit", "dicom_jpeg_baseline"])
def test_pixel_limit(good, kind):
    image = decode(good[kind])
    assert image.size <= MAX_PIXELS
    assert decode(good[kind], max_pixels=image.size).shape == image.shape  # the limit itself is allowed
    with pytest.raises(DecodeError, match="too large: .* pixels .* is larger than the 10-pixel limit"):
        decode(good[kind], max_pixels=10)


def test_pillows_own_bomb_limit_does_not_override_ours(monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    data = png_bytes(np.zeros((24, 32), np.uint8))
    assert decode(data).shape == (24, 32)
    with pytest.raises(DecodeError, match=r"32 x 24 pixels \(768 pixels\) is larger than the 700-pixel limit"):
        decode(data, max_pixels=700)


# --- PNG ---------------------------------------------------------------------------------------------------------


def test_png_gray8_round_trip():
    gray = np.random.default_rng(1).integers(0, 256, (17, 23), dtype=np.uint8)
    np.testing.assert_array_equal(decode(png_bytes(gray)), gray)


def test_png_gray16_is_scaled_to_255():
    values = np.array([[0, 257, 1000, 65535]], np.uint16)
    np.testing.assert_allclose(decode(png_bytes(values)), [[0, 1, 1000 * 255 / 65535, 255]], rtol=1e-6)


def test_png_1bit():
    bits = np.array([[0, 1, 1, 0]], bool)
    np.testing.assert_array_equal(decode(png_bytes(bits)), [[0, 255, 255, 0]])


def test_png_rgb_uses_bt601_weights():
    rgb = np.random.default_rng(2).integers(0, 256, (9, 11, 3), dtype=np.uint8)
    expected = luma(*(rgb[..., i].astype(np.float64) for i in range(3)))
    np.testing.assert_allclose(decode(png_bytes(rgb)), expected, atol=1e-4)


def test_png_rgb_weights_are_bit_exact_float32():
    # The browser reproduces this exact float32 sequence (docs/decoding.md), so pin it bit for bit.
    rgb = np.random.default_rng(3).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    r, g, b = (rgb[..., i].astype(np.float32) for i in range(3))
    expected = (r * np.float32(0.299) + g * np.float32(0.587)) + b * np.float32(0.114)
    np.testing.assert_array_equal(decode(png_bytes(rgb)), expected)


def test_png_palette_with_and_without_transparency():
    index = np.array([[0, 1, 2]], np.uint8)
    palette = [10, 20, 30, 200, 100, 50, 0, 0, 255]
    opaque = Image.fromarray(index, "P")
    opaque.putpalette(palette)
    expected = [luma(10, 20, 30), luma(200, 100, 50), luma(0, 0, 255)]
    np.testing.assert_allclose(decode(png_bytes(opaque)), [expected], atol=1e-4)

    translucent = png_bytes(opaque, transparency=bytes([255, 51, 0]))  # tRNS: alpha per palette entry
    np.testing.assert_allclose(decode(translucent), [[expected[0], expected[1] * 51 / 255, 0]], atol=1e-4)


def test_png_alpha_is_composited_on_black():
    rgba = np.array([[[200, 100, 50, 128], [200, 100, 50, 255], [255, 255, 255, 0]]], np.uint8)
    expected = [luma(200, 100, 50) * 128 / 255, luma(200, 100, 50), 0]
    np.testing.assert_allclose(decode(png_bytes(rgba)), [expected], atol=1e-4)
    la = np.array([[[200, 51], [90, 255]]], np.uint8)
    np.testing.assert_allclose(decode(png_bytes(la, "LA")), [[40, 90]], atol=1e-4)


# --- JPEG --------------------------------------------------------------------------------------------------------


def test_jpeg_gray_is_close_to_source():
    gradient = np.tile(np.linspace(0, 255, 64), (32, 1)).astype(np.uint8)
    image = decode(jpeg_bytes(Image.fromarray(gradient), quality=95))
    assert image.shape == (32, 64)
    assert np.abs(image - gradient).mean() < 2


@pytest.mark.parametrize(("orientation", "top", "bottom"), [(6, 0, 255), (8, 255, 0), (1, None, None)])
def test_jpeg_exif_orientation(orientation, top, bottom):
    # Stored 32 wide x 16 high, left half black. Orientation 6 turns it clockwise (left -> top), 8 anticlockwise.
    image = decode(half_black_jpeg(orientation))
    if orientation == 1:
        assert image.shape == (16, 32)
        assert image[:, :12].max() < 20 and image[:, 20:].min() > 235
        return
    assert image.shape == (32, 16)
    first, last = (image[:12], image[20:])
    assert np.abs(first - top).max() < 20 and np.abs(last - bottom).max() < 20


def test_cmyk_jpeg_decodes_to_gray():
    cmyk = np.zeros((8, 16, 4), np.uint8)
    cmyk[:, 8:, 3] = 255  # right half: full black ink
    image = decode(jpeg_bytes(Image.fromarray(cmyk, "CMYK"), quality=95))
    assert image.shape == (8, 16) and image.dtype == np.float32
    assert image[:, :6].min() > 245 and image[:, 10:].max() < 10


# --- DICOM -------------------------------------------------------------------------------------------------------

# Window c=1000, w=401 (LINEAR): 0 at or below c-0.5-(w-1)/2 = 799.5, 127.5 at c-0.5 = 999.5, 255 above 1199.5.
# With slope 0.5 and intercept -1000 the modality value is stored/2 - 1000, so stored = 2 * (x + 1000).
WINDOW_X = [700, 799.5, 899.5, 999.5, 1099.5, 1199.5, 1300]
WINDOW_Y = [0, 0, 63.75, 127.5, 191.25, 255, 255]
WINDOWED = dict(RescaleSlope=0.5, RescaleIntercept=-1000, WindowCenter=1000, WindowWidth=401)


def stored_for(x_values):
    return np.array([[2 * (x + 1000) for x in x_values]], np.uint16)


def test_dicom_rescale_and_linear_window_by_hand():
    np.testing.assert_allclose(decode(make_dicom(stored_for(WINDOW_X), **WINDOWED)), [WINDOW_Y], atol=1e-4)


def test_dicom_monochrome1_is_the_inverse_of_monochrome2():
    stored = np.random.default_rng(4).integers(3000, 5000, (6, 5)).astype(np.uint16)
    mono2 = decode(make_dicom(stored, **WINDOWED))
    mono1 = decode(make_dicom(stored, photometric="MONOCHROME1", **WINDOWED))
    assert mono2.min() == 0 and mono2.max() == 255 and ((mono2 > 0) & (mono2 < 255)).any()  # all three regimes
    np.testing.assert_allclose(mono1, 255 - mono2, atol=1e-4)


def test_dicom_first_of_several_windows_is_used():
    several = dict(WINDOWED, WindowCenter=[1000, 5], WindowWidth=[401, 3])
    data = make_dicom(stored_for(WINDOW_X), **several)
    np.testing.assert_allclose(decode(data), [WINDOW_Y], atol=1e-4)


def test_dicom_window_width_1_is_a_threshold():
    data = make_dicom(np.array([[98, 99, 100, 101]], np.uint16), WindowCenter=100, WindowWidth=1)
    np.testing.assert_array_equal(decode(data), [[0, 0, 255, 255]])


def test_dicom_linear_exact_window():
    stored = np.array([[700, 800, 1000, 1100, 1200, 1300]], np.uint16)
    data = make_dicom(stored, WindowCenter=1000, WindowWidth=400, VOILUTFunction="LINEAR_EXACT")
    np.testing.assert_allclose(decode(data), [[0, 0, 127.5, 191.25, 255, 255]], atol=1e-4)


def test_dicom_sigmoid_window():
    stored = np.array([[1000, 1100, 0]], np.uint16)
    data = make_dicom(stored, WindowCenter=1000, WindowWidth=400, VOILUTFunction="SIGMOID")
    expected = [127.5, 255 / (1 + math.exp(-1)), 255 / (1 + math.exp(10))]
    np.testing.assert_allclose(decode(data), [expected], atol=1e-4)


def test_dicom_without_window_is_min_max_scaled():
    stored = np.array([[10, 20, 30, 50]], np.uint16)
    np.testing.assert_allclose(decode(make_dicom(stored)), [[0, 63.75, 127.5, 255]], atol=1e-4)
    np.testing.assert_array_equal(decode(make_dicom(np.full((3, 3), 7, np.uint16))), np.zeros((3, 3)))
    inverted = decode(make_dicom(stored, photometric="MONOCHROME1"))
    np.testing.assert_allclose(inverted, [[255, 191.25, 127.5, 0]], atol=1e-4)


def test_dicom_8bit_without_window_is_kept_as_is():
    stored = np.array([[7, 9, 200]], np.uint8)
    np.testing.assert_array_equal(decode(make_dicom(stored)), [[7, 9, 200]])
    np.testing.assert_array_equal(decode(make_dicom(stored, photometric="MONOCHROME1")), [[248, 246, 55]])


def test_dicom_signed_pixels_and_intercept():
    stored = np.array([[-100, 0, 100, 300]], np.int16)
    data = make_dicom(stored, RescaleIntercept=-1024, WindowCenter=-1024, WindowWidth=401)
    # x = stored - 1024; y = ((x - (c - 0.5)) / 400 + 0.5) * 255 = 127.5 + (x + 1024.5) * 255 / 400, clipped.
    expected = [127.5 + d * 255 / 400 for d in (-99.5, 0.5, 100.5)] + [255]
    np.testing.assert_allclose(decode(data), [expected], atol=1e-4)


@pytest.mark.parametrize("byte_order", ["<u2", ">u2"])
def test_dicom_voi_lut_sequence(byte_order):
    item = Dataset()
    item.LUTDescriptor = [4, 10, 12]  # 4 entries, first input value 10, 12-bit output
    item.LUTData = np.array([0, 4095, 2048, 1000], byte_order).tobytes()
    syntax = EXPLICIT_BE if byte_order == ">u2" else IMPLICIT_LE
    stored = np.array([[5, 10, 11, 12, 13, 100]], np.uint16)
    data = make_dicom(stored, transfer_syntax=syntax, VOILUTSequence=Sequence([item]))
    scale = 255 / 4095
    np.testing.assert_allclose(decode(data), [[0, 0, 255, 2048 * scale, 1000 * scale, 1000 * scale]], atol=1e-4)


@pytest.mark.parametrize("syntax", [IMPLICIT_LE, EXPLICIT_BE, DEFLATED])
def test_dicom_other_uncompressed_syntaxes_match(syntax):
    stored = stored_for(WINDOW_X)
    np.testing.assert_allclose(decode(make_dicom(stored, transfer_syntax=syntax, **WINDOWED)), [WINDOW_Y], atol=1e-4)


def test_dicom_rgb_uses_the_weights_and_no_window():
    rgb = np.array([[[200, 100, 50], [0, 0, 255]]], np.uint8)
    data = make_dicom(rgb, photometric="RGB", WindowCenter=10, WindowWidth=2)
    np.testing.assert_allclose(decode(data), [[luma(200, 100, 50), luma(0, 0, 255)]], atol=1e-4)


def test_dicom_ybr_full_uncompressed_is_refused():
    rgb = np.zeros((2, 2, 3), np.uint8)
    with pytest.raises(DecodeError, match="YBR_FULL .*not supported"):
        decode(make_dicom(rgb, photometric="YBR_FULL"))


def test_dicom_jpeg_baseline_matches_the_same_jpeg_decoded_directly():
    gradient = np.tile(np.linspace(0, 255, 24), (16, 1)).astype(np.uint8)
    # Window 128/256 is the identity on 0..255: ((x - 127.5) / 255 + 0.5) * 255 = x.
    pixel_data = encapsulated_jpeg(gradient)
    data = make_dicom(gradient, transfer_syntax=JPEG_BASELINE, PixelData=pixel_data, WindowCenter=128, WindowWidth=256)
    expected = decode(jpeg_bytes(Image.fromarray(gradient), quality=95))
    np.testing.assert_allclose(decode(data), expected, atol=1e-3)


def pydicom_file(name):
    path = PYDICOM_FILES / name
    if not path.exists():
        pytest.skip(f"{name} is not in this pydicom installation")
    return path


def test_pydicom_ycbcr_jpeg_baseline_file():
    image = decode(pydicom_file("SC_rgb_jpeg_dcmtk.dcm"))  # YBR_FULL, 100 x 100, top rows pure red
    assert image.shape == (100, 100)
    assert abs(image[0, 0] - luma(255, 0, 0)) < 2


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("JPEG-lossy.dcm", r"\(1.2.840.10008.1.2.4.51\) with BitsAllocated 16 is not supported"),
        ("MR_small_jpeg_ls_lossless.dcm", r"JPEG-LS .*\(1.2.840.10008.1.2.4.80\) is not supported"),
    ],
)
def test_pydicom_unsupported_compression(name, message):
    with pytest.raises(DecodeError, match=message):
        decode(pydicom_file(name))


def test_real_dicom_chest_radiograph():
    path = SHARED_DATA / "dicom" / "c64d5667-a776-4f95-9e21-bfabafb07740.dcm"
    if not path.exists():
        pytest.skip(f"{path} is absent (set CXR_SHARED_DATA)")
    image = decode(path)
    assert image.shape == (1024, 1024) and image.dtype == np.float32
    assert image.min() == 0 and image.max() == 255 and image.std() > 20
