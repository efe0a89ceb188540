"""Deflated Explicit VR Little Endian DICOM: the whole dataset after the file meta is one deflate stream, which
pydicom would inflate in one call whatever its size. `inflate_deflated` re-encodes such a file uncompressed, reading
at most MAX_DICOM_HEADER_BYTES of it to check the header's pixel budget before inflating the rest."""

from __future__ import annotations

import hashlib
import io
import struct
import threading
import zlib
from collections import OrderedDict

from ..errors import ImageError
from . import limits
from .dicom_frames import check_pixel_budget

DEFLATED_TS = "1.2.840.10008.1.2.1.99"  # Deflated Explicit VR Little Endian: the whole dataset is deflated
PIXEL_TAGS = (0x7FE00010, 0x7FE00008, 0x7FE00009)  # Pixel Data, Float Pixel Data, Double Float Pixel Data
# Inflated files kept, by content, in all (process-wide, so small: it stays allocated after the request). A
# multi-frame file is read one frame at a time and the Predict page reads its uploads on every rerun; a file
# larger than this is inflated for each read (a 255 KB upload inflating to 256 MiB took 0.9 s a frame).
INFLATED_CACHE_BYTES = 64 * limits.MiB
_INFLATED: OrderedDict[tuple[bytes, bool], bytes] = OrderedDict()
_LOCK = threading.Lock()


def _file_meta_end(data: bytes) -> tuple[int, str]:
    """(offset where the dataset starts, transfer syntax UID) of a Part 10 file, from its group 0002 elements
    (Explicit VR Little Endian by the standard); (0, '') when there is no 'DICM' file meta to read."""
    if data[128:132] != b"DICM":
        return 0, ""
    pos, ts = 132, ""
    while pos + 8 <= len(data) and data[pos:pos + 2] == b"\x02\x00":
        vr = data[pos + 4:pos + 6]
        if vr in (b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"UC", b"UN", b"UR", b"UT"):
            start, length = pos + 12, int.from_bytes(data[pos + 8:pos + 12], "little")
        else:
            start, length = pos + 8, int.from_bytes(data[pos + 6:pos + 8], "little")
        if data[pos + 2:pos + 4] == b"\x10\x00":  # (0002,0010) Transfer Syntax UID
            ts = data[start:start + length].rstrip(b"\x00 ").decode("ascii", "replace")
        pos = start + length
    return pos, ts


def inflate_deflated(data: bytes, name: str, header_only: bool = False) -> bytes:
    """A Deflate DICOM re-encoded as the same file uncompressed (Explicit VR Little Endian); any other file
    as it is. Inflates at most MAX_DICOM_HEADER_BYTES to read the header, checks the pixel budget on it, then
    at most what that header declares: a deflate bomb is refused without inflating it (pydicom would inflate
    the whole stream in one call, whatever its size). `header_only`: the file up to its pixel data, which is
    not inflated. The last files inflated are kept (INFLATED_CACHE_BYTES in all): a multi-frame file is read
    one frame at a time, and the Predict page reads its uploads again on every rerun."""
    meta_end, ts = _file_meta_end(data)
    if ts != DEFLATED_TS:
        return data
    key = (hashlib.blake2b(data, digest_size=16).digest(), header_only)
    with _LOCK:
        if key in _INFLATED:
            _INFLATED.move_to_end(key)
            return _INFLATED[key]
    out = _inflate(data, name, meta_end, header_only)
    if len(out) > INFLATED_CACHE_BYTES:
        return out
    with _LOCK:
        _INFLATED[key] = out
        while sum(map(len, _INFLATED.values())) > INFLATED_CACHE_BYTES:
            _INFLATED.popitem(last=False)
    return out


def _inflate(data: bytes, name: str, meta_end: int, header_only: bool) -> bytes:
    from pydicom.filereader import read_dataset

    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    try:
        head = inflater.decompress(memoryview(data)[meta_end:], limits.MAX_DICOM_HEADER_BYTES)
        f = io.BytesIO(head)
        header = read_dataset(f, is_implicit_VR=False, is_little_endian=True,
                              stop_when=lambda tag, vr, length: tag in PIXEL_TAGS)
        at = f.tell()
        group, element = struct.unpack("<HH", head[at:at + 4]) if len(head) >= at + 4 else (0, 0)
        if (group << 16 | element) in PIXEL_TAGS:
            pixels = check_pixel_budget(header, name)
            limit = at + 12 + pixels + limits.DICOM_TRAILING_BYTES
            if pixels > INFLATED_CACHE_BYTES and int(header.get("NumberOfFrames", 1) or 1) > 1:
                # Too big to keep: each of its frames would inflate it whole again (0.75 s and 600 MB a frame).
                raise ImageError(f"{name}: a Deflate-compressed DICOM of several frames that inflates to more than "
                                 f"{limits.size_text(INFLATED_CACHE_BYTES)} is not read (each frame would inflate it "
                                 "all again); export the series uncompressed, or one file per slice.")
            if header_only:
                return _uncompressed(data, meta_end, head[:at])
        elif inflater.eof:
            limit = len(head)  # the whole dataset is in: no pixel data (reported as such below)
        elif len(head) < limits.MAX_DICOM_HEADER_BYTES:  # all the input inflated, yet the stream did not end
            raise ImageError(f"{name}: the Deflate-compressed DICOM data is truncated.")
        else:
            raise ImageError(f"{name}: the Deflate-compressed DICOM header is larger than "
                             f"{limits.size_text(limits.MAX_DICOM_HEADER_BYTES)} before its pixel data; refused "
                             "before inflating the rest.")
        rest = inflater.decompress(inflater.unconsumed_tail, max(limit - len(head), 1))
        if not inflater.eof:
            if inflater.unconsumed_tail or inflater.decompress(b"", 1):
                raise ImageError(f"{name}: the Deflate-compressed DICOM data inflates to more than its header "
                                 f"declares ({limits.size_text(limit)}); refused without inflating the rest.")
            raise ImageError(f"{name}: the Deflate-compressed DICOM data is truncated.")
    except zlib.error:
        raise ImageError(f"{name}: the Deflate-compressed DICOM data is corrupt.") from None
    return _uncompressed(data, meta_end, head, rest)


def _uncompressed(data: bytes, meta_end: int, *dataset: bytes) -> bytes:
    """The file with its file meta saying Explicit VR Little Endian, followed by the inflated `dataset` bytes."""
    from pydicom.dataset import FileMetaDataset
    from pydicom.filebase import DicomBytesIO
    from pydicom.filereader import read_dataset
    from pydicom.filewriter import write_file_meta_info
    from pydicom.uid import ExplicitVRLittleEndian

    meta = FileMetaDataset(read_dataset(io.BytesIO(data[132:meta_end]), is_implicit_VR=False, is_little_endian=True))
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    out = DicomBytesIO()
    write_file_meta_info(out, meta, enforce_standard=False)
    return b"".join((data[:132], out.getvalue(), *dataset))
