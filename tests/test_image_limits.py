"""Raster limits: a decode-memory budget by bit depth, from the header, before Pillow decodes anything."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from brainclf.errors import ImageError
from brainclf.input import InputContract, decode_image, limits, load_model_input, preprocess, reading


def png16(side: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.zeros((side, side), np.uint16)).save(buf, "PNG")
    return buf.getvalue()


def test_big_16bit_png_is_refused_before_decoding(tmp_path, monkeypatch):
    path = tmp_path / "big16.png"
    path.write_bytes(png16(7000))  # ~95 KB on disk, 49 MP: under the pixel limit, ~1.2 GB to convert
    assert path.stat().st_size < 200_000
    loads = []
    monkeypatch.setattr(Image.Image, "load", lambda self: loads.append(self.size))  # nothing may be decoded
    with pytest.raises(ImageError, match=r"7000x7000 I;16 image needs ~1.2 GB to decode .* limit of 200 MB; "
                                         r"refused before decoding"):
        decode_image(path)
    assert loads == []


def test_16bit_png_within_the_budget_still_decodes():
    x = load_model_input(png16(1000), InputContract(size=32, channels=1), name="ok16.png")
    assert x.shape == (32, 32, 1)


def test_8bit_images_keep_the_pixel_limit():
    # The largest 8-bit image the pixel limit allows fits the decode budget in every 8-bit mode without alpha,
    # so the budget refuses none of them ...
    for mode in ("L", "RGB", "CMYK"):
        assert limits.raster_decode_bytes(7071, 7071, mode) <= limits.MAX_DECODE_BYTES, mode
    # ... while compositing alpha (or a palette) over black costs more, so those stop lower, above any slice's size.
    for mode in ("P", "RGBA", "LA"):
        assert limits.raster_decode_bytes(7071, 7071, mode) > limits.MAX_DECODE_BYTES, mode
        assert limits.raster_decode_bytes(4096, 4096, mode) <= limits.MAX_DECODE_BYTES, mode
    # ... and refuses 16-bit, 32-bit integer and float images of that size.
    for mode in ("I;16", "I;16B", "I", "F"):
        assert limits.raster_decode_bytes(7071, 7071, mode) > limits.MAX_DECODE_BYTES, mode


def test_float_tiff_is_refused_as_a_format():
    buf = io.BytesIO()  # was refused by the decode budget (3000x3000 float); TIFF is not read at all now
    Image.fromarray(np.zeros((3000, 3000), np.float32)).save(buf, "TIFF", compression="tiff_adobe_deflate")
    with pytest.raises(ImageError, match="this is a TIFF image; only JPEG, PNG or DICOM files are accepted"):
        decode_image(buf.getvalue(), name="float.tif")


def test_file_over_the_size_limit_is_refused_before_reading(tmp_path, monkeypatch):
    monkeypatch.setattr(reading, "MAX_FILE_BYTES", 1000)  # the one reader of image files (brainclf.input.reading)
    path = tmp_path / "large.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(2000))
    with pytest.raises(ImageError, match="large.png: the file is 2.0 KB, above the limit of 1,000 bytes for one "
                                         "image; refused before reading"):
        decode_image(path)


def test_colour_check_of_a_large_8bit_photo_makes_no_float64_copies():
    """The OOD colour check ran on the full-size decoded image in float64 (a 7000x7000 colour JPEG, accepted by
    the pixel limit, took the CLI to 3.1 GB); it now sums in integers over blocks of rows, same value."""
    import tracemalloc

    from brainclf.inference import colourfulness

    def float64_formula(img):  # the previous implementation, as the reference value
        rgb = np.asarray(img.convert("RGB"), dtype=np.float64)
        rg, yb = rgb[..., 0] - rgb[..., 1], 0.5 * (rgb[..., 0] + rgb[..., 1]) - rgb[..., 2]
        return float(np.hypot(rg.std(), yb.std()) + 0.3 * np.hypot(rg.mean(), yb.mean()))

    rng = np.random.default_rng(0)
    for shape in ((1, 1, 3), (37, 200, 3), (130, 65, 3)):
        arr = rng.integers(0, 256, shape, dtype=np.uint8)
        for mode in ("RGB", "RGBA", "P"):
            img = Image.fromarray(arr).convert(mode)
            assert colourfulness(img) == pytest.approx(float64_formula(img), rel=1e-12, abs=1e-12)
    big = Image.fromarray(rng.integers(0, 256, (2000, 2000, 3), dtype=np.uint8))  # 12 MB as uint8
    tracemalloc.start()
    try:
        colourfulness(big)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 40 * limits.MiB  # the float64 version: ~180 MiB


def test_a_long_strip_is_shrunk_before_it_is_padded_and_a_slice_is_padded_as_before():
    """A 31600x1580 strip (within MAX_PIXELS and the aspect limit) was padded to a 31600x31600 canvas: 1 GB
    in grayscale, 4 GB in RGB."""
    strip = Image.new("L", (31600, 1580), 0)
    strip.paste(200, (15010, 0, 16590, 1580))  # a bright square in the middle
    padded = preprocess.pad_to_square(strip)
    assert padded.size[0] == padded.size[1] <= 8192 and padded.size[0] * padded.size[1] <= limits.MAX_PAD_CANVAS_BYTES
    assert max(preprocess.pad_to_square(strip.convert("RGB")).size) <= 4096  # 4 bytes a pixel in RGB
    x = preprocess.to_model_input(strip, InputContract(size=64, channels=1))
    assert x[32, 32, 0] > 0.5 and x[2, 2, 0] == 0  # the square, centred on black
    slice_ = Image.fromarray(np.random.default_rng(0).integers(0, 255, (200, 300), np.uint8))
    canvas = Image.new("L", (300, 300), 0)
    canvas.paste(slice_, (0, 50))
    assert preprocess.pad_to_square(slice_).tobytes() == canvas.tobytes()


def _png(width: int, height: int, colour_type: int, rows: bytes, extra: bytes = b"") -> bytes:
    """A PNG written by hand: a tiny file may declare a huge image."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, colour_type, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + extra + chunk(b"IDAT", zlib.compress(rows, 9))
            + chunk(b"IEND", b""))


@pytest.mark.parametrize("colour_type, bytes_per_pixel, extra", [
    (3, 1, b"PLTE"), (4, 2, b""), (6, 4, b"")])  # palette, grey + alpha, RGBA
def test_a_small_png_declaring_a_huge_image_with_alpha_is_refused_before_compositing(colour_type, bytes_per_pixel,
                                                                                     extra):
    """A 47 KB 7000x7000 palette PNG passed the decode budget and took ~800 MB on its way to 8 bits."""
    import struct
    import zlib

    side = 7000
    rows = (b"\x00" + bytes(side * bytes_per_pixel)) * side
    plte = struct.pack(">I", 3) + b"PLTE" + bytes(3) + struct.pack(">I", zlib.crc32(b"PLTE" + bytes(3)) & 0xFFFFFFFF)
    data = _png(side, side, colour_type, rows, plte if extra else b"")
    assert len(data) < 300_000
    with pytest.raises(ImageError, match=r"a 7000x7000 (P|LA|RGBA) image needs ~.* to decode and convert to 8 bits, "
                                         r"above the limit .* without transparency"):
        load_model_input(data, InputContract(size=32, channels=1), name="bomb.png")


@pytest.mark.parametrize("mode", ["RGBA", "LA", "P", "PA", "RGBa"])
def test_alpha_is_composited_over_black_as_before(mode):
    """The paste through the alpha gives the values alpha_composite over black gave."""
    rng = np.random.default_rng(1)
    img = Image.fromarray(rng.integers(0, 256, (37, 53, 4), dtype=np.uint8), "RGBA")
    img = img.convert("RGB").quantize(64) if mode == "P" else img.convert(mode)
    if mode == "P":
        img.info["transparency"] = 3
    reference = Image.alpha_composite(Image.new("RGBA", img.size, (0, 0, 0, 255)), img.convert("RGBA")).convert("RGB")
    np.testing.assert_array_equal(np.asarray(preprocess.to_8bit(img).convert("RGB")), np.asarray(reference))
