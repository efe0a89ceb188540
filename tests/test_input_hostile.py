"""Hostile uploads found by fuzzing: each is refused with a library error, in bounded memory, never a raw
exception (the page and the CLI catch only brainclf's errors)."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pydicom
import pytest
from PIL import Image
from test_dicom import make_dicom

from brainclf.errors import ImageError
from brainclf.input import decode_image, decode_upload


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)


def test_a_png_with_an_empty_colour_profile_after_its_pixels_is_called_corrupt():
    """Pillow's iCCP reader indexes an empty body: a raw IndexError reached every caller."""
    buf = io.BytesIO()
    Image.fromarray((np.random.default_rng(0).random((40, 48)) * 255).astype(np.uint8)).save(buf, "PNG")
    good = buf.getvalue()
    end = good.rindex(b"IEND") - 4
    with pytest.raises(ImageError, match="upload.png: the image is truncated or corrupt"):
        decode_image(good[:end] + _chunk(b"iCCP", b"") + good[end:], name="upload.png")


def _segmented_palette(segments: int) -> bytes:
    """A PALETTE COLOR MR slice whose colour tables are segmented: each 'linear segment' of 6 bytes expands to
    65,535 entries inside pydicom, before any length check."""
    data = make_dicom(np.zeros((64, 64)), bits=8, photometric="PALETTE COLOR")
    ds = pydicom.dcmread(io.BytesIO(data))
    table = [0, 1, 0] + [1, 65535, 0] * segments
    for colour in ("Red", "Green", "Blue"):
        ds.add_new(pydicom.datadict.tag_for_keyword(f"{colour}PaletteColorLookupTableDescriptor"), "US", [256, 0, 16])
        ds.add_new(pydicom.datadict.tag_for_keyword(f"Segmented{colour}PaletteColorLookupTableData"), "OW",
                   struct.pack(f"<{len(table)}H", *table))
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def test_a_segmented_colour_table_is_refused_before_it_is_expanded():
    with pytest.raises(ImageError, match="colour table is segmented"):
        decode_upload(_segmented_palette(800), "upload.dcm")  # 19 KB that expanded to ~1 GB of table entries


def test_a_long_modality_is_quoted_cut_short():
    with pytest.raises(ImageError, match="modality is X{16}, not MR") as refused:
        decode_image(make_dicom(np.zeros((8, 8)), modality="X" * 60), name="upload.dcm")
    assert "X" * 17 not in str(refused.value)


def test_a_sequence_of_empty_items_counts_towards_the_element_limit():
    """Items were skipped by the count: 2 million empty ones (15 MB) made 1.3 GB of pydicom objects in 30 s."""
    from brainclf.input.limits import MAX_DICOM_ALL_ELEMENTS

    ok = make_dicom(np.zeros((64, 64)))
    at = ok.index(b"\xe0\x7f\x10\x00")  # Pixel Data's tag: the sequence goes just before it
    n = MAX_DICOM_ALL_ELEMENTS + 1
    sequence = (struct.pack("<HH", 0x5200, 0x9230) + b"SQ\x00\x00" + struct.pack("<I", 8 * n)
                + struct.pack("<HHI", 0xFFFE, 0xE000, 0) * n)
    with pytest.raises(ImageError, match="more than 500,000 data elements in its sequences too"):
        decode_upload(ok[:at] + sequence + ok[at:], "upload.dcm")
    few = struct.pack("<HH", 0x5200, 0x9230) + b"SQ\x00\x00" + struct.pack("<I", 8 * 3) + \
        struct.pack("<HHI", 0xFFFE, 0xE000, 0) * 3
    decode_upload(ok[:at] + few + ok[at:], "upload.dcm")  # a few items, as real files hold, still read


def _jpeg_bytes() -> bytes:
    buf = io.BytesIO()
    Image.new("L", (64, 64), 90).save(buf, "JPEG")
    return buf.getvalue()


def _png_with(chunk: bytes, count: int) -> bytes:
    buf = io.BytesIO()
    Image.new("L", (64, 64), 90).save(buf, "PNG")
    png = buf.getvalue()
    at = png.index(b"IDAT") - 4
    return png[:at] + chunk * count + png[at:]


def test_a_flood_of_empty_jpeg_segments_is_refused_before_pillow_parses_them():
    """12.5 million empty APP1 segments (48 MB) took 22 s and 1.6 GB inside Pillow, and were accepted."""
    from brainclf.input.limits import MAX_JPEG_SEGMENTS

    jpeg = _jpeg_bytes()
    flood = jpeg[:2] + b"\xff\xe1\x00\x02" * (MAX_JPEG_SEGMENTS + 1) + jpeg[2:]
    with pytest.raises(ImageError, match="more than 5,000 marker segments"):
        decode_image(flood, name="upload.jpg")
    few = jpeg[:2] + b"\xff\xe1\x00\x02" * 20 + jpeg[2:]
    assert decode_image(few, name="upload.jpg").size == (64, 64)


@pytest.mark.parametrize("kind", [b"prVt", b"IDAT"])
def test_a_flood_of_png_chunks_is_refused_before_pillow_parses_them(kind):
    """4.3 million empty private chunks (49 MB) took 12 s and 445 MB; no encoder writes an empty IDAT either."""
    from brainclf.input.limits import MAX_PNG_CHUNKS

    empty = _chunk(kind, b"")
    with pytest.raises(ImageError, match="more than 5,000 chunks besides its image data"):
        decode_image(_png_with(empty, MAX_PNG_CHUNKS + 1), name="upload.png")
    assert decode_image(_png_with(_chunk(b"prVt", b"x"), 20), name="upload.png").size == (64, 64)


def test_a_dicom_jpeg_frame_flooded_with_segments_is_refused_before_it_is_walked_twice():
    from pydicom.uid import JPEGBaseline8Bit
    from test_dicom_limits import encapsulated

    from brainclf.input import read_dicom
    from brainclf.input.limits import MAX_JPEG_SEGMENTS

    jpeg = _jpeg_bytes()
    flood = jpeg[:2] + b"\xff\xe1\x00\x02" * (MAX_JPEG_SEGMENTS + 1) + jpeg[2:]
    with pytest.raises(ImageError, match="more than 5,000 marker segments"):
        read_dicom(encapsulated(flood, JPEGBaseline8Bit, 64, 64), "flood.dcm")
    assert read_dicom(encapsulated(jpeg, JPEGBaseline8Bit, 64, 64), "ok.dcm").image.size == (64, 64)


def test_a_file_cut_short_of_its_frames_is_one_refused_case_not_one_per_frame():
    """A header of 64 frames over the pixels of one made 64 cases that each failed; now the file is one case, refused
    with what is wrong."""
    from brainclf.input import read_dicom, study_frames

    whole = make_dicom(np.zeros((4, 32, 32)), bits=8, frames=4)
    ds = pydicom.dcmread(io.BytesIO(whole))
    ds.NumberOfFrames = 64
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    short = out.getvalue()
    assert study_frames(whole, "s.dcm") == 4 and study_frames(short, "s.dcm") == 1
    with pytest.raises(ImageError, match="less than the 64 KB of the 64 frame\\(s\\) of 32x32 .*cut short"):
        read_dicom(short, "s.dcm")
    assert read_dicom(whole, "s.dcm", 3).n_frames == 4


def test_an_uncompressed_ybr_full_422_slice_is_not_called_cut_short():
    """Its two chroma samples are stored at half the horizontal resolution: two thirds of three full planes."""
    from brainclf.input import read_dicom, study_frames

    ds = pydicom.dcmread(io.BytesIO(make_dicom(np.zeros((64, 64, 3)), bits=8, samples=3, photometric="RGB")))
    ds.PhotometricInterpretation = "YBR_FULL_422"
    ds.PixelData = bytes([128]) * (64 * 64 * 2)
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    assert read_dicom(out.getvalue(), "ybr.dcm").image.size == (64, 64)
    ds.NumberOfFrames = 2  # the bytes of one frame: cut short, whatever the photometric interpretation
    short = io.BytesIO()
    ds.save_as(short, enforce_file_format=True)
    assert study_frames(short.getvalue(), "ybr.dcm") == 1
    with pytest.raises(ImageError, match="cut short"):
        read_dicom(short.getvalue(), "ybr.dcm")
