"""DICOM values far longer than any real one: an Implicit VR value has a 4-byte length, and pydicom turns a
multi-valued one into millions of Python objects when it is read (2 million Pixel Spacing values took 6 s and left a
6 MB caption). Such a value is refused from its header's length, before pydicom reads it; the long values real files
hold (vendors' private headers, bytes, full 16-bit LUTs) still read, and a shown tag is cut to a caption line."""

from __future__ import annotations

import io
import struct

import numpy as np
import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, generate_uid
from test_dicom import RAMP, make_dicom
from test_dicom_guards import _with_elements

from brainclf.errors import ImageError
from brainclf.input import frame_values, read_dicom
from brainclf.input.dicom import MAX_SHOWN_CHARS, read_header
from brainclf.input.dicom_elements import MAX_VALUE_BYTES, check_element_count
from brainclf.input.dicom_stack import series_groups

HUGE = b"0.5\\" * 1_000_000 + b"1 "  # 2,000,001 decimal strings: 3.8 MB


def _implicit(tag: int, value: bytes, **tags) -> bytes:
    """An Implicit VR Little Endian slice (pydicom) whose element `tag`, set in `tags`, holds the bytes `value`."""
    data = make_dicom(RAMP, transfer_syntax=ImplicitVRLittleEndian, **tags)
    at = data.find(struct.pack("<HH", tag >> 16, tag & 0xFFFF), 132)
    assert at > 0
    old = struct.unpack_from("<I", data, at + 4)[0]
    return data[:at + 4] + struct.pack("<I", len(value)) + value + data[at + 8 + old:]


WINDOW = {"WindowCenter": "100", "WindowWidth": "200"}
POSITION = {"ImagePositionPatient": ["0", "0", "0"], "ImageOrientationPatient": ["1", "0", "0", "0", "1", "0"]}


@pytest.mark.parametrize("keyword,tag,tags", [("PixelSpacing", 0x00280030, {}),
                                              ("WindowCenter", 0x00281050, WINDOW),
                                              ("ImagePositionPatient", 0x00200032, POSITION)])
def test_a_value_of_millions_is_refused_from_its_length_before_pydicom_reads_it(keyword, tag, tags):
    data = _implicit(tag, HUGE, **tags)
    message = (rf"huge\.dcm: the DICOM declares a 3\.8 MB value for its {keyword} \({tag >> 16:04X},"
               rf"{tag & 0xFFFF:04X}\), over the 64 KB allowed for a value of its kind; refused before reading it\.")
    with pytest.raises(ImageError, match=message):
        check_element_count(data, "huge.dcm")  # the byte walk that runs before pydicom parses anything
    for read in (read_dicom, frame_values, read_header):
        with pytest.raises(ImageError, match=message):
            read(data, "huge.dcm")


def test_slices_with_a_huge_position_are_cases_of_their_own():
    series = generate_uid()
    slices = [("a.dcm", _implicit(0x00200032, HUGE, SeriesInstanceUID=series, **POSITION)),
              ("b.dcm", _implicit(0x00200032, HUGE, SeriesInstanceUID=series, **POSITION))]
    assert series_groups(slices) == [[0], [1]]  # each then refused by its decoding, with the message above
    at_limit = b"0\\" * (MAX_VALUE_BYTES // 2 - 1) + b"0 "  # allowed, but no position: InstanceNumber orders them
    slices = [(f"{n}.dcm", _implicit(0x00200032, at_limit, SeriesInstanceUID=series, InstanceNumber=str(n),
                                     **POSITION)) for n in (2, 1)]
    assert series_groups(slices) == [[1, 0]]


def test_an_undefined_length_value_is_measured_to_its_delimiter():
    data = make_dicom(RAMP, transfer_syntax=ImplicitVRLittleEndian)
    at = data.find(struct.pack("<HH", 0x0028, 0x0030), 132)
    old = struct.unpack_from("<I", data, at + 4)[0]
    value = b"0.5\\" * 30_000 + b"1 "  # 117 KB, then the sequence delimiter pydicom reads an undefined length to
    data = data[:at + 4] + b"\xff\xff\xff\xff" + value + b"\xfe\xff\xdd\xe0" + bytes(4) + data[at + 8 + old:]
    with pytest.raises(ImageError, match=r"declares a 117 KB value for its PixelSpacing \(0028,0030\)"):
        read_dicom(data, "undefined.dcm")


@pytest.mark.filterwarnings("ignore:The value length")  # an 80-character CS value: invalid, still read and shown
def test_a_long_allowed_value_is_shown_cut_to_a_caption_line():
    centres = b"\\".join(b"%d" % (100 + k) for k in range(5000)) + b" "  # 20 KB of window presets
    s = read_dicom(_implicit(0x00281050, centres, **WINDOW), "presets.dcm")
    shown = s.metadata["Window centre"]
    assert len(shown) == MAX_SHOWN_CHARS and shown.startswith("[100, 101, 102, ") and shown.endswith("…")
    assert s.metadata["Pixel spacing (mm)"] == "[0.5, 0.5]" and s.metadata["Window width"] == "200"  # as before
    comment = read_dicom(make_dicom(RAMP, MRAcquisitionType="2D" * 40), "long.dcm").metadata["MR acquisition"]
    assert comment == "2D" * 31 + "2…"


def test_long_values_that_real_files_hold_still_read():
    csa = Dataset()  # a Siemens-like CSA header: a private value of 200 KB, in Implicit VR (read as bytes)
    csa.add_new(0x00290010, "LO", "SIEMENS CSA HEADER")
    csa.add_new(0x00291010, "OB", bytes(200_000))
    ds = dcmread(io.BytesIO(make_dicom(RAMP)))
    ds.update(csa)
    ds.add_new(0x0040A160, "UT", "x" * 100_000)  # Text Value: one text, not split into values
    lut = Dataset()  # a full 16-bit VOI LUT: 65,536 entries of 2 bytes (128 KB)
    lut.LUTDescriptor, lut.LUTData = [0, 0, 16], np.arange(65_536, dtype=np.uint16).tobytes()
    ds.VOILUTSequence = [lut]
    for syntax in (ImplicitVRLittleEndian, ExplicitVRLittleEndian):
        ds.file_meta.TransferSyntaxUID = syntax
        buf = io.BytesIO()
        ds.save_as(buf)
        assert read_dicom(buf.getvalue(), "siemens.dcm").image.size == (64, 32)
    private_ob = struct.pack("<HH2sHI", 0x0029, 0x1000, b"OB", 0, 300_000) + bytes(300_000)
    assert read_dicom(_with_elements(make_dicom(RAMP), private_ob), "ob.dcm").image.size == (64, 32)


def test_sv_and_uv_values_have_a_4_byte_length_in_explicit_vr():
    """The walk reads an SV/UV length from 4 bytes as pydicom does; from 2 it lost its place in the file."""
    small = struct.pack("<HH2sHIq", 0x0029, 0x1000, b"SV", 0, 8, -1)
    assert read_dicom(_with_elements(make_dicom(RAMP), small), "sv.dcm").image.size == (64, 32)
    big = struct.pack("<HH2sHI", 0x0029, 0x1000, b"UV", 0, 80_000) + bytes(80_000)
    with pytest.raises(ImageError, match=r"declares a 78\.1 KB value for its data element \(0029,1000\)"):
        read_dicom(_with_elements(make_dicom(RAMP), big), "uv.dcm")


def test_an_implicit_item_inside_an_explicit_file_is_walked_as_pydicom_reads_it():
    """A writer may encode a sequence item implicit in an explicit-VR file; pydicom reads the whole item implicit,
    as its first element says. Read per element, a 70-byte value's length bytes (b"F\\x00") passed for a VR and the
    walk lost its place, so 10,005 elements after it went uncounted."""
    from test_dicom_guards import _empty_private

    undefined = 0xFFFFFFFF
    item = struct.pack("<HHI", 0xFFFE, 0xE000, undefined) + struct.pack("<HHI", 0x0008, 0x4000, 70) + b"t" * 70
    sequence = (struct.pack("<HH2sHI", 0x0008, 0x1115, b"SQ", 0, undefined) + item
                + struct.pack("<HHI", 0xFFFE, 0xE00D, 0) + struct.pack("<HHI", 0xFFFE, 0xE0DD, 0))
    ok = _with_elements(make_dicom(RAMP), sequence)
    assert len(dcmread(io.BytesIO(ok)).ReferencedSeriesSequence[0].IdentifyingComments) == 70
    assert read_dicom(ok, "item.dcm").image.size == (64, 32)
    with pytest.raises(ImageError, match="more than 10,000 data elements"):
        check_element_count(_with_elements(make_dicom(RAMP), sequence + _empty_private(10_005)), "many.dcm")
