"""A JPEG is refused by what its markers say before libjpeg decodes it: a progressive file repeating a tiny scan
thousands of times (minutes of CPU per upload at the pixel limit) is refused with a clear message; ordinary
baseline and progressive files, and an EXIF thumbnail's own scans, pass; a progressive JPEG's coefficient buffer
counts in the memory estimate."""

import io

import numpy as np
import pytest
from PIL import Image

from brainclf.errors import ImageError
from brainclf.input import limits
from brainclf.input.jpeg import jpeg_markers
from brainclf.input.preprocess import decode_image


def _jpeg(side=64, **kw) -> bytes:
    rng = np.random.default_rng(0)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (side, side), dtype=np.uint8)).save(buf, "JPEG", quality=90, **kw)
    return buf.getvalue()


def _scans(data: bytes) -> list[tuple[int, int]]:
    """(start, end) of every scan, walked independently of brainclf.input.jpeg: a scan runs from its FFDA to the
    next marker that is neither a stuffed byte nor a restart marker."""
    out, i = [], 2
    while data[i + 1] != 0xD9:
        length = int.from_bytes(data[i + 2:i + 4], "big")
        if data[i + 1] != 0xDA:
            i += 2 + length
            continue
        j = i + 2 + length
        while not (data[j] == 0xFF and data[j + 1] != 0x00 and not 0xD0 <= data[j + 1] <= 0xD7):
            j += 1
        out.append((i, j))
        i = j
    return out


def _repeated_scans(copies: int) -> bytes:
    data = _jpeg(progressive=True)
    scans = _scans(data)
    start, end = min(scans, key=lambda s: s[1] - s[0])
    last = scans[-1][1]
    return data[:last] + data[start:end] * copies + data[last:]


def test_scan_count_matches_the_files_structure():
    assert jpeg_markers(_jpeg())[0] == 1
    progressive = _jpeg(progressive=True)
    assert jpeg_markers(progressive)[0] == len(_scans(progressive)) > 1
    assert jpeg_markers(_repeated_scans(500))[0] == len(_scans(progressive)) + 500


def test_a_jpeg_of_thousands_of_scans_is_refused_before_decoding():
    crafted = _repeated_scans(limits.MAX_JPEG_SCANS * 3)
    Image.open(io.BytesIO(crafted)).load()  # Pillow alone decodes it (the cost this guards against)
    with pytest.raises(ImageError, match=r"stored in [\d,]+ scans .*at most 100"):
        decode_image(crafted, "upload.jpg")


def test_ordinary_jpegs_and_a_thumbnail_in_exif_pass():
    assert decode_image(_jpeg(), "a.jpg").size == (64, 64)
    assert decode_image(_jpeg(progressive=True), "b.jpg").size == (64, 64)
    thumb = _jpeg(side=16, progressive=True)  # FFDA bytes inside an APP1 segment are not this file's scans
    exif = Image.Exif()
    exif[0x010E] = "x"
    payload = exif.tobytes() + thumb * 40
    data = _jpeg()
    assert payload.count(b"\xff\xda") > limits.MAX_JPEG_SCANS
    app1 = b"\xff\xe1" + (len(payload) + 2).to_bytes(2, "big") + payload
    with_thumbs = data[:2] + app1 + data[2:]
    assert jpeg_markers(with_thumbs)[0] == 1
    assert decode_image(with_thumbs, "c.jpg").size == (64, 64)


def test_a_progressive_jpegs_coefficients_count_in_its_memory_estimate():
    baseline = limits.raster_decode_bytes(4000, 4000, "RGB")
    progressive = limits.raster_decode_bytes(4000, 4000, "RGB", progressive_jpeg=True)
    assert progressive == baseline + 4000 * 4000 * 2 * 3
    assert limits.raster_decode_bytes(7000, 7000, "RGB") <= limits.MAX_DECODE_BYTES  # baseline keeps its limit
    assert limits.raster_decode_bytes(7000, 7000, "RGB", progressive_jpeg=True) > limits.MAX_DECODE_BYTES


def test_a_large_progressive_jpeg_is_refused_on_its_header():
    buf = io.BytesIO()
    Image.new("RGB", (5000, 5000)).save(buf, "JPEG", progressive=True)
    with pytest.raises(ImageError, match="needs ~.* to decode"):
        decode_image(buf.getvalue(), "big.jpg")
