"""DICOM limits: frame bombs, Deflate bombs and oversized frames are refused from the header, before decoding
or inflating; only the frame the model reads is decoded."""

from __future__ import annotations

import io
import zlib

import numpy as np
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate, generate_frames
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset, write_file_meta_info
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    MRImageStorage,
    RLELossless,
    generate_uid,
)

from brainclf import limits
from brainclf.dicom import read_dicom
from brainclf.errors import ImageError


def header(rows: int, cols: int, frames: int | None, syntax, bits: int = 8) -> Dataset:
    fm = FileMetaDataset()
    fm.MediaStorageSOPClassUID, fm.MediaStorageSOPInstanceUID = MRImageStorage, generate_uid()
    fm.TransferSyntaxUID = syntax
    ds = Dataset()
    ds.file_meta = fm
    ds.SOPClassUID, ds.SOPInstanceUID = MRImageStorage, fm.MediaStorageSOPInstanceUID
    ds.Modality = "MR"
    ds.Rows, ds.Columns = rows, cols
    if frames:
        ds.NumberOfFrames = frames
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = bits, bits, bits - 1, 0
    return ds


def save(ds: Dataset) -> bytes:
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def rle_frame(arr: np.ndarray) -> bytes:
    """One RLE Lossless frame of `arr`, encoded by pydicom."""
    ds = header(*arr.shape, None, ExplicitVRLittleEndian, bits=arr.dtype.itemsize * 8)
    ds.PixelData = arr.tobytes()
    ds.compress(RLELossless)
    return next(generate_frames(ds.PixelData, number_of_frames=1))


def rle_dicom(frames: list[bytes], rows: int, cols: int, bits: int = 8) -> bytes:
    ds = header(rows, cols, len(frames), RLELossless, bits)
    ds.PixelData = encapsulate(frames)
    ds["PixelData"].VR = "OB"
    return save(ds)


def deflated_dicom(rows: int, cols: int, frames: int, pixel_bytes: int | None = None, trailing: int = 0,
                   value: int = 0) -> bytes:
    """A Deflated Explicit VR Little Endian file, inflated in the stream chunk by chunk so that the test
    never holds the inflated pixel data: `pixel_bytes` (default: what the header declares) bytes of
    `value`, then optionally a private OB element of `trailing` zero bytes after the pixel data."""
    ds = header(rows, cols, frames, DeflatedExplicitVRLittleEndian)
    meta = DicomBytesIO()
    write_file_meta_info(meta, ds.file_meta, enforce_standard=True)
    body = DicomBytesIO()
    body.is_little_endian, body.is_implicit_VR = True, False
    write_dataset(body, ds)
    n = rows * cols * frames if pixel_bytes is None else pixel_bytes
    z = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
    parts = [bytes(128) + b"DICM", meta.getvalue(), z.compress(body.getvalue()),
             z.compress(b"\xe0\x7f\x10\x00OB\x00\x00" + n.to_bytes(4, "little"))]

    def stream(count: int, byte: int) -> None:
        chunk = bytes([byte]) * (1 << 20)
        for start in range(0, count, len(chunk)):
            parts.append(z.compress(chunk[:min(len(chunk), count - start)]))

    stream(n, value)
    if trailing:
        parts.append(z.compress(b"\xe1\x7f\x10\x00OB\x00\x00" + trailing.to_bytes(4, "little")))
        stream(trailing, 0)
    parts.append(z.flush())
    return b"".join(parts)


def test_frame_bomb_is_refused_from_the_header():
    # 300 RLE frames of 1024x1024 (16 KB each compressed, 300 MiB decoded): the old code decoded them all.
    data = rle_dicom([rle_frame(np.zeros((1024, 1024), np.uint8))] * 300, 1024, 1024)
    assert len(data) < 6_000_000
    with pytest.raises(ImageError, match=r"300 frame\(s\) of 1024x1024.* 300 MB once decoded, above the limit of "
                                         r"256 MB; refused before decoding"):
        read_dicom(data, name="bomb.dcm")


def test_only_the_middle_frame_is_decoded():
    good = rle_frame(np.full((32, 32), 7, np.uint8))
    junk = b"\x01\x00\x00\x00" + b"\xff" * 60  # an RLE header pointing past its data: undecodable
    data = rle_dicom([junk, good, junk], 32, 32)
    s = read_dicom(data, name="three.dcm")
    assert (s.frame, s.n_frames, s.image.size) == (1, 3, (32, 32))
    with pytest.raises(ImageError, match="cannot decode pixel data"):
        read_dicom(data, name="three.dcm", frame=0)  # a chosen bad frame still fails, with the usual message


def test_one_frame_too_large_to_window_is_refused():
    # 3000x3000 16-bit: under the 50 MP pixel limit, but ~290 MB with the float64 windowing copies.
    data = rle_dicom([rle_frame(np.zeros((3000, 3000), np.uint16))], 3000, 3000, bits=16)
    with pytest.raises(ImageError, match="one 3000x3000 DICOM frame needs ~29[0-9] MB to decode"):
        read_dicom(data, name="huge.dcm")


def test_deflate_bomb_is_refused_before_inflating():
    data = deflated_dicom(1024, 1024, 300)  # ~300 KB that inflates to 300 MiB
    assert len(data) < 1_000_000
    with pytest.raises(ImageError, match=r"300 frame\(s\) of 1024x1024.*above the limit of 256 MB"):
        read_dicom(data, name="deflate.dcm")


def test_deflate_stream_longer_than_its_header_is_refused(monkeypatch):
    # Read the header from the first 64 KB (16 MB by default, which would take these 8 MB in whole).
    monkeypatch.setattr(limits, "MAX_DICOM_HEADER_BYTES", 64 * 1024)
    # The header declares one 64x64 frame; 8 MB of an element after the pixel data follow it.
    data = deflated_dicom(64, 64, 1, trailing=8 * limits.MiB)
    with pytest.raises(ImageError, match="inflates to more than its header declares"):
        read_dicom(data, name="long.dcm")
    # Pixel data longer than its header declares is refused the same way.
    with pytest.raises(ImageError, match="inflates to more than its header declares"):
        read_dicom(deflated_dicom(64, 64, 1, pixel_bytes=64 * 64 + 4 * limits.MiB), name="long.dcm")


def test_small_deflate_dicom_still_decodes():
    s = read_dicom(deflated_dicom(32, 48, 3, value=9, trailing=1000), name="ok.dcm")
    assert (s.frame, s.n_frames, s.image.size, s.image.mode) == (1, 3, (48, 32), "L")
    assert s.metadata["Modality"] == "MR"


def test_truncated_deflate_dicom_is_reported():
    data = deflated_dicom(256, 256, 2, value=9)
    for cut in (len(data) // 2, len(data) - 8):
        with pytest.raises(ImageError, match="Deflate-compressed DICOM data is truncated"):
            read_dicom(data[:cut], name="cut.dcm")


def test_deflate_header_larger_than_its_limit_is_refused(monkeypatch):
    monkeypatch.setattr(limits, "MAX_DICOM_HEADER_BYTES", 200)
    with pytest.raises(ImageError, match="header is larger than"):
        read_dicom(deflated_dicom(32, 32, 1), name="big-header.dcm")
