"""brainclf.input.preprocess: decoding every kind of input file and the one model-input function."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from brainclf.errors import ImageError
from brainclf.input.preprocess import (
    MAX_PIXELS,
    InputContract,
    decode_image,
    load_model_input,
    pad_to_square,
    to_8bit,
    to_model_input,
)


def enc(img: Image.Image, fmt: str = "PNG", **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_header_only(w: int, h: int) -> bytes:
    """A tiny, well-formed PNG whose IHDR claims w x h pixels (its pixel data is far too short)."""
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", zlib.compress(b"\0" * 16))
            + png_chunk(b"IEND", b""))


def gradient(w: int, h: int) -> np.ndarray:
    return (np.add.outer(np.arange(h), np.arange(w)) * 255 / max(1, w + h - 2)).astype(np.uint8)


def check_input(x: np.ndarray, contract: InputContract) -> None:
    assert x.shape == contract.shape
    assert x.dtype == np.float32
    assert 0.0 <= x.min() <= x.max() <= 1.0


MODE_IMAGES = {
    "L": lambda: Image.fromarray(gradient(50, 40), "L"),
    "RGB": lambda: Image.fromarray(np.dstack([gradient(50, 40)] * 3), "RGB"),
    "RGBA": lambda: Image.fromarray(np.dstack([gradient(50, 40)] * 3 + [np.full((40, 50), 128, np.uint8)]), "RGBA"),
    "P": lambda: Image.fromarray(gradient(50, 40), "L").convert("P"),
    "LA": lambda: Image.fromarray(np.dstack([gradient(50, 40), np.full((40, 50), 255, np.uint8)]), "LA"),
    "1": lambda: Image.fromarray(gradient(50, 40) > 100),
}


@pytest.mark.parametrize("mode", sorted(MODE_IMAGES))
@pytest.mark.parametrize("channels", [1, 3])
def test_png_modes_give_valid_model_input(mode, channels):
    img = MODE_IMAGES[mode]()
    assert img.mode == mode
    contract = InputContract(size=32, channels=channels)
    x = load_model_input(enc(img), contract)
    check_input(x, contract)
    assert x.max() > 0.3  # the content survived (not all black)


def test_16bit_png_is_stretched_to_full_range():
    arr = (np.add.outer(np.arange(64), np.arange(64)) * 300 + 1000).astype(np.uint16)
    data = enc(Image.fromarray(arr))
    img = decode_image(data)
    assert img.mode.startswith("I")
    eight = np.asarray(to_8bit(img))
    assert eight.dtype == np.uint8
    assert eight.min() == 0 and eight.max() == 255  # min-max stretch, not truncation to the low byte
    # Monotone: a brighter 16-bit pixel is never darker after conversion.
    assert np.all(np.diff(eight[0].astype(int)) >= 0)
    check_input(load_model_input(data, InputContract(32, 1)), InputContract(32, 1))


def test_constant_16bit_image_becomes_black_not_nan():
    x = to_model_input(Image.fromarray(np.full((20, 20), 5000, np.uint16)), InputContract(32, 1))
    assert np.isfinite(x).all() and x.max() == 0.0


@pytest.mark.parametrize("mode", ["I", "F"])
def test_32bit_modes(mode):
    img = Image.fromarray(gradient(30, 30).astype(np.int32 if mode == "I" else np.float32) * 100, mode)
    x = to_model_input(img, InputContract(32, 3))
    check_input(x, InputContract(32, 3))
    assert x.max() > 0.9


def test_cmyk_jpeg():
    img = Image.new("CMYK", (40, 40), (0, 0, 0, 0))  # white in CMYK
    data = enc(img, "JPEG")
    assert Image.open(io.BytesIO(data)).mode == "CMYK"
    x = load_model_input(data, InputContract(32, 3))
    check_input(x, InputContract(32, 3))
    assert x.mean() > 0.9


def test_rgba_alpha_is_composited_over_black():
    img = Image.new("RGBA", (20, 20), (255, 255, 255, 0))  # fully transparent white
    x = to_model_input(img, InputContract(32, 1))
    assert x.max() == 0.0


def test_pad_to_square_centres_content_without_distortion():
    img = Image.new("L", (60, 20), 255)  # wide white strip
    sq = pad_to_square(img)
    assert sq.size == (60, 60)
    a = np.asarray(sq)
    assert (a[:20] == 0).all() and (a[40:] == 0).all()  # black bars above and below, equal height
    assert (a[20:40] == 255).all()  # the content itself is untouched
    tall = np.asarray(pad_to_square(Image.new("RGB", (10, 30), (200, 100, 50))))
    assert tall.shape == (30, 30, 3)
    assert (tall[:, :10] == 0).all() and (tall[:, 20:] == 0).all()
    assert (tall[:, 10:20] == (200, 100, 50)).all()


def test_pad_to_square_leaves_square_images_alone():
    img = Image.new("L", (17, 17), 3)
    assert pad_to_square(img) is img


def test_model_input_keeps_aspect_ratio():
    """A wide white bar becomes a centred band, not a stretched full square."""
    x = to_model_input(Image.new("L", (64, 32), 255), InputContract(32, 1))[..., 0]
    assert x[:6].max() == 0 and x[-6:].max() == 0
    assert x[10:22].min() == 1.0


def test_exif_orientation_is_honoured():
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise
    img = Image.new("L", (40, 20), 120)
    data = enc(img, "JPEG", exif=exif.tobytes())
    assert Image.open(io.BytesIO(data)).size == (40, 20)
    assert decode_image(data).size == (20, 40)


def test_decode_from_path_and_bytes_agree(tmp_path):
    img = Image.fromarray(gradient(30, 30))
    p = tmp_path / "g.png"
    img.save(p)
    assert np.array_equal(np.asarray(decode_image(p)), np.asarray(decode_image(p.read_bytes())))
    assert np.array_equal(np.asarray(decode_image(str(p))), np.asarray(img))


def test_missing_file_is_image_error(tmp_path):
    with pytest.raises(ImageError, match="cannot read"):
        decode_image(tmp_path / "nope.png")


def test_empty_bytes():
    with pytest.raises(ImageError, match="empty"):
        decode_image(b"", name="e.png")


def test_text_named_jpg():
    with pytest.raises(ImageError, match=r"notes\.jpg: not a recognised image"):
        decode_image(b"just some text, not a picture\n" * 5, name="notes.jpg")


def test_pdf_bytes():
    with pytest.raises(ImageError, match="PDF"):
        decode_image(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n", name="scan.pdf")


def test_truncated_jpeg():
    data = enc(Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64), dtype=np.uint8)), "JPEG")
    with pytest.raises(ImageError, match="truncated or corrupt"):
        decode_image(data[: len(data) // 2])


def test_png_with_corrupted_header_crc():
    data = bytearray(enc(Image.fromarray(gradient(16, 16))))
    data[29] ^= 0xFF  # last byte of the IHDR CRC
    with pytest.raises(ImageError, match="PNG file is corrupt"):
        decode_image(bytes(data))


def test_png_with_corrupted_pixel_data():
    data = bytearray(enc(Image.fromarray(np.random.default_rng(1).integers(0, 255, (64, 64), dtype=np.uint8))))
    start = data.index(b"IDAT") + 20
    for k in range(start, start + 40):
        data[k] ^= 0x55
    with pytest.raises(ImageError, match="truncated or corrupt"):
        decode_image(bytes(data))


def test_header_above_max_pixels_refused_before_decoding():
    side = int(MAX_PIXELS**0.5) + 100  # above our limit, below Pillow's own bomb limit
    with pytest.raises(ImageError, match="refused before decoding"):
        decode_image(png_header_only(side, side))


def test_decompression_bomb_header_refused():
    with pytest.raises(ImageError, match="too large|refused before decoding"):
        decode_image(png_header_only(20000, 20000))


def test_elongated_image_refused():
    with pytest.raises(ImageError, match="elongated"):
        decode_image(enc(Image.new("L", (1, 500), 255)))


def test_one_pixel_image_is_refused():
    with pytest.raises(ImageError, match="only 1x1 pixels"):
        load_model_input(enc(Image.new("L", (1, 1), 200)), InputContract(32, 1))
    x = load_model_input(enc(Image.new("L", (16, 16), 200)), InputContract(32, 1))  # the smallest accepted
    check_input(x, InputContract(32, 1))
    assert np.allclose(x, 200 / 255, atol=1 / 255)


@pytest.mark.parametrize("size", [(15, 15), (15, 40), (40, 15)])
def test_an_image_one_pixel_under_the_smallest_side_is_refused(size):
    from brainclf.input.limits import MIN_SIDE

    assert MIN_SIDE == 16  # the side the accepted 16x16 above is the smallest of
    with pytest.raises(ImageError, match=rf"only {size[0]}x{size[1]} pixels; an MRI slice needs at least 16 px a side"):
        load_model_input(enc(Image.new("L", size, 200)), InputContract(32, 1))
    wider = tuple(max(side, MIN_SIDE) for side in size)
    assert load_model_input(enc(Image.new("L", wider, 200)), InputContract(32, 1)).shape == (32, 32, 1)


def test_animated_png_is_refused():
    frames = [Image.new("L", (16, 16), v) for v in (200, 30, 90)]
    buf = io.BytesIO()
    frames[0].save(buf, "PNG", save_all=True, append_images=frames[1:])
    with pytest.raises(ImageError, match="holds 3 frames"):
        load_model_input(buf.getvalue(), InputContract(32, 1), name="x.png")


def other_formats() -> dict[str, bytes]:
    out = {}
    for fmt in ("TIFF", "WEBP", "GIF", "BMP"):
        buf = io.BytesIO()
        Image.new("L", (64, 64), 120).save(buf, fmt)
        out[fmt] = buf.getvalue()
    out["EPS"] = (b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 64 64\n%%EndComments\n"
                  b"newpath 0 0 moveto 64 64 lineto stroke\nshowpage\n%%EOF\n")
    return out


@pytest.mark.parametrize("fmt, what", [("TIFF", "a TIFF image"), ("WEBP", "a WebP image"), ("GIF", "a GIF image"),
                                       ("BMP", "a BMP image"), ("EPS", "a PostScript/EPS document")])
def test_only_jpeg_png_and_dicom_are_decoded(fmt, what, monkeypatch):
    """Issue #25: any Pillow format was opened; an EPS renamed .jpg reached Pillow's Ghostscript call."""
    from PIL import EpsImagePlugin

    data = other_formats()[fmt]
    called = []
    monkeypatch.setattr(EpsImagePlugin, "Ghostscript", lambda *a, **k: called.append(a))
    monkeypatch.setattr(Image.Image, "load", lambda self: called.append(self.format))  # no plugin decodes
    for name in ("slice.jpg", "slice.png", "slice"):
        with pytest.raises(ImageError, match=rf"this is {what}; only JPEG, PNG or DICOM files are accepted"):
            decode_image(data, name=name)
    # Without its signature (as a format this check does not name), Pillow still opens JPEG and PNG only.
    with pytest.raises(ImageError, match="not a recognised image; only JPEG, PNG or DICOM files are accepted"):
        decode_image(b"\x00" + data, name="slice.jpg")
    assert called == []


def test_input_contract_roundtrip():
    c = InputContract(size=96, channels=3)
    assert InputContract.from_dict({**c.to_dict(), "unknown": 1}) == c
    assert c.shape == (96, 96, 3)
    assert InputContract.from_dict({"size": 64}) == InputContract(size=64)


def test_exif_orientation_is_applied_to_the_decoded_image_itself():
    """The transpose happens in place (a returned copy doubled every decoded image's memory): a slice stored
    sideways with orientation 6 (rotate 90° clockwise to view) comes out upright, and an untagged one unchanged."""
    import io

    from PIL import Image

    from brainclf.input import decode_image

    wide = Image.new("L", (40, 20), 0)
    wide.paste(255, (0, 0, 10, 20))  # a bright band on the left
    exif = Image.Exif()
    exif[0x0112] = 6
    tagged, plain = io.BytesIO(), io.BytesIO()
    wide.save(tagged, "JPEG", exif=exif, quality=95)
    wide.save(plain, "JPEG", quality=95)
    upright = decode_image(tagged.getvalue(), name="a.jpg")
    assert upright.size == (20, 40)
    assert upright.getpixel((10, 3)) > 200 and upright.getpixel((10, 36)) < 50  # the band is now at the top
    assert decode_image(plain.getvalue(), name="b.jpg").size == (40, 20)
