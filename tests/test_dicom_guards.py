"""DICOM inputs a review found getting past the limits: uncompressed pixel data far longer than its header says,
JPEG frames of thousands of scans or cut short, floods of tiny data elements, and window presets (or rescaled
values) that the full-size viewer's number inputs cannot take. Each is refused with a clear message, or shown
through the frame's own range."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset, write_file_meta_info
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLosslessSV1,
)
from test_dicom import RAMP, make_dicom
from test_dicom_limits import encapsulated, header
from test_jpeg_scans import _jpeg, _repeated_scans

from brainclf.errors import ImageError
from brainclf.input import apply_window, frame_values, limits, read_dicom
from brainclf.input.dicom import read_header


def _with_elements(data: bytes, elements: bytes) -> bytes:
    """`data` (Explicit VR Little Endian) with `elements` inserted just before its Pixel Data element."""
    at = data.find(b"\xe0\x7f\x10\x00OW")
    assert at > 0
    return data[:at] + elements + data[at:]


def _empty_private(count: int, group: int = 0x0029) -> bytes:
    """`count` empty private CS elements of `group` (8 bytes each), in ascending tag order."""
    return b"".join(struct.pack("<HH2sH", group, 0x1000 + k, b"CS", 0) for k in range(count))


# ---- 1. uncompressed pixel data longer than its header declares --------------------------------------------
def test_native_pixel_data_longer_than_the_header_is_refused_before_decoding(monkeypatch):
    import pydicom.pixels

    slice_ = make_dicom(RAMP.astype(np.uint8), bits=8)  # 32x64 8-bit, no Number of Frames
    ds = dcmread(io.BytesIO(slice_))
    ds.PixelData = ds.PixelData * 400  # 800 KB: pydicom took the excess for 399 more frames and decoded them all
    buf = io.BytesIO()
    ds.save_as(buf)
    for read in (read_dicom, frame_values):
        with pytest.raises(ImageError, match=r"pixel data is 800 KB, more than the 2 KB of the 1 frame\(s\) of "
                                             r"64x32 its header declares .*refused before decoding"):
            read(buf.getvalue(), "long.dcm")
    indices = []
    real = pydicom.pixels.pixel_array
    monkeypatch.setattr(pydicom.pixels, "pixel_array",
                        lambda ds, **kw: indices.append(kw.get("index")) or real(ds, **kw))
    odd = make_dicom(np.tile(np.arange(63, dtype=np.uint8), (63, 1)), bits=8)  # 3,969 bytes, padded to even
    assert read_dicom(odd, "odd.dcm").image.size == (63, 63)
    assert indices == [0]  # one frame asked for by index, not "every frame pydicom finds"


# ---- 2. and 3. JPEG frames as a .jpg upload is checked: the scan limit, and whole --------------------------
def test_a_jpeg_frame_of_thousands_of_scans_is_refused_before_decoding():
    crafted = _repeated_scans(limits.MAX_JPEG_SCANS * 3)  # 64x64 8-bit grey
    Image.open(io.BytesIO(crafted)).load()  # a decoder alone reads it (the cost the limit guards against)
    for syntax in (JPEGBaseline8Bit, JPEGExtended12Bit):
        with pytest.raises(ImageError, match=r"stored in [\d,]+ JPEG scans .*at most 100 are accepted"):
            read_dicom(encapsulated(crafted, syntax, 64, 64), "scans.dcm")
    progressive = read_dicom(encapsulated(_jpeg(progressive=True), JPEGBaseline8Bit, 64, 64), "p.dcm")
    assert progressive.image.size == (64, 64)  # an ordinary progressive frame still decodes


def test_a_truncated_jpeg_frame_is_refused_not_classified():
    buf = io.BytesIO()
    Image.fromarray((np.tile(np.arange(64), (64, 1)) * 4).astype(np.uint8)).save(buf, "JPEG", quality=95)
    whole = buf.getvalue()
    cut = whole[:len(whole) * 2 // 3]
    with pytest.raises(ImageError, match="JPEG frame is truncated"):
        read_dicom(encapsulated(cut, JPEGBaseline8Bit, 64, 64), "cut.dcm")
    for frame in (whole, whole + b"\x00"):  # the zero byte an item pads an odd-length frame with is not truncation
        assert read_dicom(encapsulated(frame, JPEGBaseline8Bit, 64, 64), "whole.dcm").image.size == (64, 64)
    with pytest.raises(ImageError, match="truncated"):  # a lossless frame is held to the same
        read_dicom(encapsulated(b"\xff\xd8\xff\xc3\x00\x0b\x08\x00\x40\x00\x40\x01\x01\x11\x00"
                                + b"\xff\xda\x00\x08\x01\x01\x00\x01\x00\x00" + b"\x12" * 40, JPEGLosslessSV1, 64, 64),
                   "lossless.dcm")


# ---- 4. floods of tiny data elements -----------------------------------------------------------------------
def test_a_flood_of_empty_elements_is_refused_before_pydicom_parses_it():
    flood = _with_elements(make_dicom(RAMP), _empty_private(limits.MAX_DICOM_ELEMENTS + 1))
    assert len(flood) < 100_000  # 80 KB here; the review's 49 MB (6 million elements) took tens of seconds, GBs
    with pytest.raises(ImageError, match=r"holds more than 10,000 data elements .*refused before reading them"):
        read_dicom(flood, "flood.dcm")
    with pytest.raises(ImageError, match="more than 10,000 data elements"):
        read_header(flood, "flood.dcm")  # frame counts and series grouping read the header alone
    ok = _with_elements(make_dicom(RAMP), _empty_private(limits.MAX_DICOM_ELEMENTS - 200))
    assert read_dicom(ok, "many.dcm").image.size == (64, 32)


def test_elements_inside_sequences_and_a_deflate_file_are_counted(monkeypatch):
    monkeypatch.setattr(limits, "MAX_DICOM_ALL_ELEMENTS", 500)
    inner = _empty_private(501, group=0x0031)  # in one item of an undefined-length private sequence
    nested = (struct.pack("<HH2sHI", 0x0029, 0x0010, b"SQ", 0, 0xFFFFFFFF) + b"\xfe\xff\x00\xe0\xff\xff\xff\xff"
              + inner + b"\xfe\xff\x0d\xe0" + bytes(4) + b"\xfe\xff\xdd\xe0" + bytes(4))
    with pytest.raises(ImageError, match="more than 500 data elements in its sequences too"):
        read_dicom(_with_elements(make_dicom(RAMP), nested), "nested.dcm")
    monkeypatch.setattr(limits, "MAX_DICOM_ELEMENTS", 100)
    ds = header(32, 32, None, DeflatedExplicitVRLittleEndian)  # its dataset deflated, 150 empty elements in it
    meta, body = DicomBytesIO(), DicomBytesIO()
    write_file_meta_info(meta, ds.file_meta, enforce_standard=True)
    body.is_little_endian, body.is_implicit_VR = True, False
    write_dataset(body, ds)
    pixels = b"\xe0\x7f\x10\x00OB\x00\x00" + (32 * 32).to_bytes(4, "little") + bytes(32 * 32)
    z = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
    deflated = z.compress(body.getvalue() + _empty_private(150) + pixels) + z.flush()
    with pytest.raises(ImageError, match="more than 100 data elements"):
        read_dicom(bytes(128) + b"DICM" + meta.getvalue() + deflated, "deflated.dcm")


def test_ordinary_files_pass_the_element_walk(monkeypatch):
    """Explicit and implicit VR, sequences and items of defined and undefined length, and the header-size bound."""
    ds = dcmread(io.BytesIO(make_dicom(RAMP * 10, frames=1)))
    group = Dataset()  # an undefined-length item in an undefined-length sequence, holding a defined-length one
    group.is_undefined_length_sequence_item = True
    group.PixelMeasuresSequence = [Dataset()]
    group.PixelMeasuresSequence[0].PixelSpacing = ["0.5", "0.5"]
    for k in range(40):
        group.add_new((0x0029, 0x1000 + k), "CS", "")
    ds.PerFrameFunctionalGroupsSequence = [group]
    ds["PerFrameFunctionalGroupsSequence"].is_undefined_length = True
    monkeypatch.setattr(limits, "MAX_DICOM_ELEMENTS", 30)  # more than the file's own; fewer than in its item
    for syntax in (ExplicitVRLittleEndian, ImplicitVRLittleEndian):
        ds.file_meta.TransferSyntaxUID = syntax
        buf = io.BytesIO()
        ds.save_as(buf)
        assert b"\xfe\xff\xdd\xe0" in buf.getvalue()  # the undefined-length sequence's delimiter
        assert read_dicom(buf.getvalue(), "enhanced.dcm").image.size == (64, 32)
    monkeypatch.setattr(limits, "MAX_DICOM_HEADER_BYTES", 2000)
    big = _with_elements(make_dicom(RAMP), struct.pack("<HH2sHI", 0x0029, 0x1000, b"OB", 0, 4000) + bytes(4000))
    with pytest.raises(ImageError, match="header is larger than 2.0 KB before its pixel data"):
        read_dicom(big, "big-header.dcm")


# ---- 5. window presets and rescaled values the viewer can use ----------------------------------------------
@pytest.mark.parametrize("width", ["0", "-100", "1e-300"])
def test_a_window_width_under_1_is_1_as_apply_window_takes_it(width):
    values = frame_values(make_dicom(RAMP * 10, WindowCenter="300", WindowWidth=width), "w.dcm")
    assert (values.centre, values.width) == (300.0, 1.0)  # Streamlit's number input refuses a width under 1


def test_window_ends_beyond_any_float_fall_back_to_the_frames_range():
    values = frame_values(make_dicom(RAMP * 10, WindowCenter="1.7e308", WindowWidth="1.7e308"), "w.dcm")
    assert (values.centre, values.width) == (315.0, 630.0)
    pixels = np.array([[0, 100, 200]], dtype=np.float32)
    full = apply_window(pixels, 100, 200)
    for centre, width in ((float("nan"), 100), (1.7e308, 1.7e308), (0, float("inf")), (0, float("nan"))):
        assert np.array_equal(apply_window(pixels, centre, width), full)  # not NaN cast to a byte


def test_rescaled_values_beyond_float32_are_refused_by_the_viewer_with_a_message():
    data = make_dicom(RAMP * 10, RescaleSlope="1e36", RescaleIntercept="0")
    assert read_dicom(data, "slope.dcm").image.size == (64, 32)  # the model's float64 path reads it
    with pytest.raises(ImageError, match="grey values cannot be shown"):
        frame_values(data, "slope.dcm")  # not an infinite centre and width for the number inputs


def test_a_palette_colour_frame_has_no_window_and_a_malformed_preset_falls_back():
    lut = (np.arange(64)[::-1] * 1024).astype(np.uint16).tobytes()
    tables = {f"{c}PaletteColorLookupTable{part}": value for c in ("Red", "Green", "Blue")
              for part, value in (("Descriptor", [64, 0, 16]), ("Data", lut))}
    assert frame_values(make_dicom(RAMP, bits=8, photometric="PALETTE COLOR", **tables), "p.dcm") is None
    data = bytearray(make_dicom(RAMP * 10, WindowCenter="12345", WindowWidth="100"))
    at = data.find(b"\x28\x00\x50\x10DS")
    data[at + 4:at + 6] = b"\x44\x07"  # Window Center's VR made unknown: reading it raises NotImplementedError
    values = frame_values(bytes(data), "badwc.dcm")  # it leaked NotImplementedError, which crashed the page
    assert (values.centre, values.width) == (315.0, 630.0)
