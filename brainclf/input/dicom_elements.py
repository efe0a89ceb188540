"""Count a DICOM file's data elements from its bytes before pydicom parses it.

pydicom makes a Python object of every element it reads, nested sequences included, and offers no bound on how
many: a 49 MB file of six million empty private elements took tens of seconds and GBs. This walk reads only each
element's tag, VR and length, as pydicom would read them, and stops at the limits in brainclf.input.limits.
"""

from __future__ import annotations

import struct
import zlib

from ..errors import ImageError
from . import limits

LONG_VRS = frozenset({b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"UC", b"UN", b"UR", b"UT"})  # 4-byte length
PIXEL_TAGS = frozenset({0x7FE00010, 0x7FE00008, 0x7FE00009})  # Pixel Data, Float and Double Float Pixel Data
UNDEFINED, EXPLICIT_BE, DEFLATED = 0xFFFFFFFF, "1.2.840.10008.1.2.2", "1.2.840.10008.1.2.1.99"


def check_element_count(data: bytes, name: str) -> None:
    """Refuse (ImageError), before pydicom parses it into an object an element, a file of more data elements than
    limits.MAX_DICOM_ELEMENTS at the top level of its file meta or dataset (MAX_DICOM_ALL_ELEMENTS in all), or with
    more than MAX_DICOM_HEADER_BYTES before its pixel data. A Deflate file's dataset is walked as far as that many
    bytes inflate; where the bytes cannot be walked the walk stops, and pydicom says what is wrong with them."""
    try:
        pos, ts = _walk(data, 132, name, meta=True) if data[128:132] == b"DICM" else (0, "")
        if ts == DEFLATED:
            data, pos = zlib.decompressobj(-zlib.MAX_WBITS).decompress(data[pos:], limits.MAX_DICOM_HEADER_BYTES), 0
        _walk(data, pos, name, little=ts != EXPLICIT_BE)
    except (struct.error, zlib.error):  # cut off by the end of the file, or corrupt: pydicom or inflate_deflated says
        return


def _walk(buf: bytes, pos: int, name: str, little: bool = True, meta: bool = False) -> tuple[int, str]:
    """Walk the elements from `pos` as pydicom reads them (explicit or implicit VR as the first one's bytes say; into
    sequences and items; over any other value of undefined length to its delimiter), the file meta (`meta`) to its
    last group 0002 element. Returns where the walk stopped and the file meta's Transfer Syntax UID."""
    order, ts, top, total = "<" if little else ">", "", 0, 0
    item, delimiter = struct.pack(order + "HH", 0xFFFE, 0xE000), struct.pack(order + "HHI", 0xFFFE, 0xE0DD, 0)
    explicit = _is_vr(buf[pos + 4:pos + 6])
    ends: list[int | None] = []  # where each sequence or item the walk is in ends (None: at its delimiter)
    while pos + 8 <= len(buf):
        while ends and ends[-1] is not None and pos >= ends[-1]:
            ends.pop()
        group, element = struct.unpack_from(order + "HH", buf, pos)
        if meta and group != 2:
            break
        if group == 0xFFFE:  # an item or a delimiter: a 4-byte length and no VR, in every syntax
            length, pos = struct.unpack_from(order + "I", buf, pos + 4)[0], pos + 8
            if element == 0xE000:
                ends.append(None if length == UNDEFINED else pos + length)
            elif ends:
                ends.pop()
            continue
        top, total, tag = top + (not ends), total + 1, group << 16 | element
        if top > limits.MAX_DICOM_ELEMENTS or total > limits.MAX_DICOM_ALL_ELEMENTS:
            limit, where = (top - 1, "") if top > limits.MAX_DICOM_ELEMENTS else (total - 1, " in its sequences too")
            raise ImageError(f"{name}: this DICOM file holds more than {limit:,} data elements{where} (real ones hold "
                             "a few hundred a frame); refused before reading them. Check the export.")
        vr, length, pos = _element_head(buf, pos, order, explicit)
        if tag in PIXEL_TAGS and not ends and pos > limits.MAX_DICOM_HEADER_BYTES:
            raise ImageError(f"{name}: the DICOM header is larger than "
                             f"{limits.size_text(limits.MAX_DICOM_HEADER_BYTES)} before its pixel data; refused "
                             "before reading it. Check the export.")
        if meta and tag == 0x00020010:
            ts = buf[pos:pos + length].rstrip(b"\x00 ").decode("ascii", "replace")
        if vr == b"SQ" or (vr is None and buf[pos:pos + 4] == item and tag not in PIXEL_TAGS) or (
                vr == b"UN" and length == UNDEFINED):  # pydicom reads an undefined-length UN as a sequence
            ends.append(None if length == UNDEFINED else pos + length)
        elif length != UNDEFINED:
            pos += length
        else:  # pixel data fragments or another undefined-length value: to the sequence delimiter, as pydicom reads it
            at = buf.find(delimiter, pos)
            pos = at + 8 if at >= 0 else len(buf)
    return pos, ts


def _is_vr(two: bytes) -> bool:
    return len(two) == 2 and two.isalpha() and two.isupper()  # two capital letters ("B\x00" is a length's bytes)


def _element_head(buf: bytes, pos: int, order: str, explicit: bool) -> tuple[bytes | None, int, int]:
    """(VR, or None when implicit; value length; where the value starts) of the element at `pos`. In an explicit
    VR file an element whose VR is not two capital letters is read as implicit, as pydicom reads it."""
    vr = buf[pos + 4:pos + 6]
    if not explicit or not _is_vr(vr):
        return None, struct.unpack_from(order + "I", buf, pos + 4)[0], pos + 8
    if vr in LONG_VRS:
        return vr, struct.unpack_from(order + "I", buf, pos + 8)[0], pos + 12
    return vr, struct.unpack_from(order + "H", buf, pos + 6)[0], pos + 8
