"""DICOM limits: frame bombs, Deflate bombs and oversized frames are refused from the header, before decoding
or inflating; only the frame the model reads is decoded."""

from __future__ import annotations

import io
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate, generate_frames
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset, write_file_meta_info
from pydicom.uid import (
    MPEG2MPML,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGLosslessSV1,
    JPEGLSLossless,
    MRImageStorage,
    RLELossless,
    generate_uid,
)
from test_dicom import make_dicom

from brainclf.errors import ImageError
from brainclf.input import limits, read_dicom


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


# ---- compressed frames: the codestream's own size, before a decoder allocates it (issue #25) ---------------
def j2k_512() -> bytes:
    """A real 512x512 8-bit JPEG 2000 codestream (pylibjpeg-openjpeg, via pydicom)."""
    ds = header(512, 512, None, ExplicitVRLittleEndian)
    ds.PixelData = np.zeros((512, 512), np.uint8).tobytes()
    ds.compress(JPEG2000Lossless)
    return next(generate_frames(ds.PixelData, number_of_frames=1))


def resized_j2k(side: int) -> bytes:
    """j2k_512 with its SIZ marker (image and tile size) rewritten to `side` x `side`."""
    cs = bytearray(j2k_512())
    assert cs[:4] == b"\xff\x4f\xff\x51"
    for at in (8, 12, 24, 28):  # Xsiz, Ysiz, XTsiz, YTsiz
        cs[at:at + 4] = side.to_bytes(4, "big")
    return bytes(cs)


def box(kind: bytes, body: bytes) -> bytes:
    return (8 + len(body)).to_bytes(4, "big") + kind + body


def jp2(codestream: bytes) -> bytes:
    """The codestream in a minimal JP2 file: signature, file type, a 512x512 grey header, the codestream."""
    ihdr = box(b"ihdr", struct.pack(">IIHBBBB", 512, 512, 1, 7, 7, 0, 0))
    colr = box(b"colr", struct.pack(">BBBI", 1, 0, 0, 17))
    return (box(b"jP  ", b"\r\n\x87\n") + box(b"ftyp", b"jp2 \x00\x00\x00\x00jp2 ") + box(b"jp2h", ihdr + colr)
            + box(b"jp2c", codestream))


def jpeg_with_sof(marker: int, width: int, height: int) -> bytes:
    """SOI, a frame header (SOFn or JPEG-LS SOF55) of one 8-bit component, a scan header and EOI."""
    sof = bytes([0xFF, marker, 0, 11, 8]) + height.to_bytes(2, "big") + width.to_bytes(2, "big") + b"\x01\x01\x11\x00"
    return b"\xff\xd8" + sof + b"\xff\xda\x00\x08\x01\x01\x00\x00\x3f\x00" + b"\x00" * 64 + b"\xff\xd9"


def encapsulated(frame: bytes, syntax, rows: int = 512, cols: int = 512, bits: int = 8) -> bytes:
    ds = header(rows, cols, None, syntax, bits)
    ds.PixelData = encapsulate([frame])
    ds["PixelData"].VR = "OB"
    return save(ds)


def test_j2k_codestream_larger_than_its_header_is_refused():
    data = encapsulated(resized_j2k(20000), JPEG2000Lossless)
    assert len(data) < 2000  # a few hundred bytes that declared 20000x20000 took the CLI to 2.7 GB
    match = r"JPEG 2000.*codestream declares 20000x20000 pixels.*header says 512x512.*refused before decoding"
    with pytest.raises(ImageError, match=match):
        read_dicom(data, name="j2k.dcm")
    with pytest.raises(ImageError, match=match):  # the same codestream wrapped in a JP2 file
        read_dicom(encapsulated(jp2(resized_j2k(20000)), JPEG2000Lossless), name="jp2.dcm")
    assert read_dicom(encapsulated(jp2(j2k_512()), JPEG2000Lossless), name="ok.dcm").image.size == (512, 512)


def test_j2k_bomb_is_refused_without_allocating(tmp_path):
    """Peak memory of a fresh process reading the file: it must not grow by anything like 20000 x 20000."""
    path = tmp_path / "bomb.dcm"
    path.write_bytes(encapsulated(resized_j2k(20000), JPEG2000Lossless))
    code = ("import resource, sys, pydicom.pixels; from brainclf.input.dicom import read_dicom; "
            "from brainclf.errors import ImageError; data = open(sys.argv[1], 'rb').read(); "
            "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
            "try:\n    read_dicom(data, 'bomb.dcm')\nexcept ImageError as e:\n    print(e)\n"
            "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before)")
    out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=120,
                         cwd=Path(__file__).resolve().parent.parent)
    message, growth_kb = out.stdout.strip().splitlines()
    assert "20000x20000" in message, out.stderr
    assert int(growth_kb) < 100 * 1024  # KB (Linux ru_maxrss); the decoder took ~420 MB more before the check


@pytest.mark.parametrize("syntax, marker", [(JPEGBaseline8Bit, 0xC0), (JPEGLosslessSV1, 0xC3),
                                            (JPEGLSLossless, 0xF7)])
def test_jpeg_and_jpeg_ls_frame_headers_larger_than_the_header_are_refused(syntax, marker):
    data = encapsulated(jpeg_with_sof(marker, 20000, 20000), syntax)
    with pytest.raises(ImageError, match=r"codestream declares 20000x20000 pixels.*header says 512x512"):
        read_dicom(data, name="jpeg.dcm")
    with pytest.raises(ImageError, match="no frame header"):  # a scan before any frame header
        read_dicom(encapsulated(b"\xff\xd8\xff\xda\x00\x02\xff\xd9", syntax), name="nosof.dcm")


def test_rle_segment_that_decodes_past_its_plane_is_refused():
    # 1 MB of run headers asking for 128 bytes each: 64 MB for a 32x32 frame (pydicom decoded it all, then
    # kept the first 1024 bytes with a warning).
    runs = b"\x81\x00" * (1 << 19)
    frame = struct.pack("<16I", 1, 64, *[0] * 14) + runs
    with pytest.raises(ImageError, match=r"RLE segment 1 decodes to more than the 1,024 bytes"):
        read_dicom(rle_dicom([frame], 32, 32), name="rle.dcm")
    # A 16-bit frame needs 2 segments (high and low bytes): a 1-segment header is refused by name.
    with pytest.raises(ImageError, match=r"declares 1 segment\(s\), but the DICOM header needs 2"):
        read_dicom(rle_dicom([rle_frame(np.zeros((32, 32), np.uint8))], 32, 32, bits=16), name="rle16.dcm")


def test_unsupported_compressed_syntax_is_refused_before_decoding():
    with pytest.raises(ImageError, match=r"MPEG2.*decodes JPEG, JPEG-LS, JPEG 2000 and RLE"):
        read_dicom(encapsulated(b"\x00\x00\x01\xb3" + bytes(60), MPEG2MPML), name="video.dcm")


def test_a_deflated_multi_frame_file_is_inflated_once_and_its_header_read_without_its_pixels(monkeypatch):
    """A 255 KB upload inflating to 256 MiB was inflated again for every frame read and on every rerun."""
    from brainclf.input import dicom_deflate
    from brainclf.input.dicom_stack import frame_count, series_slice

    calls = []
    real = dicom_deflate._inflate
    monkeypatch.setattr(dicom_deflate, "_inflate", lambda *a: calls.append(a[-1]) or real(*a))
    monkeypatch.setattr(dicom_deflate, "_INFLATED", type(dicom_deflate._INFLATED)())
    data = deflated_dicom(64, 64, 8, value=7)
    assert frame_count(data, "d.dcm") == 8 and series_slice(data, "d.dcm") is None  # a multi-frame file
    assert calls == [True]  # the header only, once
    for frame in range(8):
        assert read_dicom(data, "d.dcm", frame).n_frames == 8
    assert calls == [True, False]  # the whole file once for all eight frames
    monkeypatch.setattr(dicom_deflate, "INFLATED_CACHE_BYTES", 40_000)  # one such file: the older ones go
    read_dicom(deflated_dicom(64, 64, 8, value=9), "e.dcm", 0)
    assert len(dicom_deflate._INFLATED) == 1
    monkeypatch.setattr(dicom_deflate, "INFLATED_CACHE_BYTES", 0)  # a file over the budget is not kept at all
    read_dicom(deflated_dicom(64, 64, 1, value=5), "f.dcm")  # (one frame: several over it are refused)
    assert len(dicom_deflate._INFLATED) == 1 and calls[-1] is False


def test_a_palette_colour_file_is_budgeted_at_three_samples_and_a_non_mr_stack_is_one_refusal():
    from brainclf.input.dicom_frames import check_pixel_budget
    from brainclf.input.dicom_stack import study_frames

    mono = header(512, 512, 1, ExplicitVRLittleEndian)
    palette = header(512, 512, 1, ExplicitVRLittleEndian)
    palette.PhotometricInterpretation = "PALETTE COLOR"
    assert check_pixel_budget(palette, "p.dcm") == 3 * check_pixel_budget(mono, "m.dcm")
    ct = make_dicom(np.zeros((6, 16, 16)), frames=6, modality="CT")
    assert study_frames(ct, "ct.dcm") == 1  # one case, whose decoding says "not MR", not six


def test_a_j2k_frame_split_into_thousands_of_tiny_tiles_is_refused_before_decoding():
    """A codestream whose size matches the header but whose tiles are 6x6 pixels (openjpeg allocates per tile:
    58,000 of them took 551 MB before it gave up)."""
    cs = bytearray(j2k_512())
    for at in (24, 28):  # XTsiz, YTsiz
        cs[at:at + 4] = (6).to_bytes(4, "big")
    with pytest.raises(ImageError, match=r"splits the frame into 7,396 tiles .*at most 1,024 are accepted"):
        read_dicom(encapsulated(bytes(cs), JPEG2000Lossless), name="tiles.dcm")
    cs[24:32] = (0).to_bytes(4, "big") * 2
    with pytest.raises(ImageError, match="impossible tile grid"):
        read_dicom(encapsulated(bytes(cs), JPEG2000Lossless), name="zero.dcm")
    assert read_dicom(encapsulated(j2k_512(), JPEG2000Lossless), name="ok.dcm").image.size == (512, 512)


def test_a_multi_frame_deflate_file_too_big_to_keep_inflated_is_refused_before_inflating_it():
    """Each frame the page reads inflated the whole file again: 64 frames of 1448x1448 16-bit took 0.75 s and
    600 MB a frame. Within the kept size, a multi-frame Deflate file is read frame by frame as before."""
    from brainclf.input import decode_upload
    from brainclf.input.dicom_deflate import INFLATED_CACHE_BYTES

    frames = INFLATED_CACHE_BYTES // (1024 * 1024) + 1
    with pytest.raises(ImageError, match="several frames that inflates to more than 64 MB is not read"):
        decode_upload(deflated_dicom(1024, 1024, frames), "big.dcm", frame=0)
    image, _ = decode_upload(deflated_dicom(64, 64, 4, value=90), "small.dcm", frame=2)
    assert image.size == (64, 64)
