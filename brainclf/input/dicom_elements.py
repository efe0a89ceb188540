"""Count a DICOM file's data elements from its bytes before pydicom parses it.

pydicom makes a Python object of every element it reads, nested sequences included, and offers no bound on how
many: a 49 MB file of six million empty private elements took tens of seconds and GBs. This walk reads only each
element's tag, VR and length, as pydicom would read them, and stops at the limits in brainclf.input.limits and at
MAX_VALUE_BYTES for one value.
"""

from __future__ import annotations

import struct
import zlib

from ..errors import ImageError
from . import limits

LONG_VRS = frozenset({b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT",
                      b"UV"})  # a 4-byte length (PS3.5 7.1.2), as pydicom reads them
PIXEL_TAGS = frozenset({0x7FE00010, 0x7FE00008, 0x7FE00009})  # Pixel Data, Float and Double Float Pixel Data
# The most bytes one value pydicom converts value by value (numbers, dates, codes, UIDs: `DS`, `US`, `CS`...) may
# hold. pydicom turns each into a Python object when the value is first read, and brainclf shows some as text: an
# Implicit VR value has a 4-byte length, and 2 million Pixel Spacing values (4 MB) took 6 s to decode and a 6 MB
# caption. Explicit VR gives all of them but UC, SV and UV a 2-byte length (65,535 bytes at most): real ones fit.
MAX_VALUE_BYTES = 64 * 1024
# A LUT's data (Implicit VR "US or OW", read as US values for a 1-entry LUT) holds up to 65,536 entries of 2 bytes.
MAX_LUT_BYTES = 2 * 65_536
# VRs pydicom keeps as one value however long: bytes, or one text not split at backslashes; a UN value over 65,535
# bytes stays bytes, and "OB or OW" (overlay, waveform data) is read as OW. Only their length counts (the header's).
WHOLE_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "UN", "LT", "ST", "UT", "UR", "SQ", "OB or OW"})
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
    # Where each sequence or item the walk is in ends (None: at its delimiter), and whether its elements have VRs:
    # an item of an explicit-VR file may be written implicit, as its first element's bytes say (pydicom reads it so).
    ends: list[tuple[int | None, bool]] = [(None, _is_vr(buf[pos + 4:pos + 6]))]
    while pos + 8 <= len(buf):
        while len(ends) > 1 and ends[-1][0] is not None and pos >= ends[-1][0]:
            ends.pop()
        group, element = struct.unpack_from(order + "HH", buf, pos)
        explicit = ends[-1][1]
        if meta and group != 2:
            break
        if group == 0xFFFE:  # an item or a delimiter: a 4-byte length and no VR, in every syntax
            length, pos = struct.unpack_from(order + "I", buf, pos + 4)[0], pos + 8
            if element == 0xE000:  # an item is an object pydicom makes too: 2 million empty ones took 1.3 GB
                total += 1
                _check_count(top, total, name)
                ends.append((None if length == UNDEFINED else pos + length, explicit and _is_vr(buf[pos + 4:pos + 6])))
            elif len(ends) > 1:
                ends.pop()
            continue
        top, total, tag = top + (len(ends) == 1), total + 1, group << 16 | element
        _check_count(top, total, name)
        vr, length, pos = _element_head(buf, pos, order, explicit)
        if tag in PIXEL_TAGS and len(ends) == 1 and pos > limits.MAX_DICOM_HEADER_BYTES:
            raise ImageError(f"{name}: the DICOM header is larger than "
                             f"{limits.size_text(limits.MAX_DICOM_HEADER_BYTES)} before its pixel data; refused "
                             "before reading it. Check the export.")
        if meta and tag == 0x00020010:
            ts = buf[pos:pos + length].rstrip(b"\x00 ").decode("ascii", "replace")
        if vr == b"SQ" or (vr is None and buf[pos:pos + 4] == item and tag not in PIXEL_TAGS) or (
                vr == b"UN" and length == UNDEFINED):  # pydicom reads an undefined-length UN as a sequence
            ends.append((None if length == UNDEFINED else pos + length, explicit))
        elif length != UNDEFINED:
            _check_value(tag, vr, length, name)
            pos += length
        else:  # pixel data fragments or another undefined-length value: to the sequence delimiter, as pydicom reads it
            at = buf.find(delimiter, pos)
            _check_value(tag, vr, (at if at >= 0 else len(buf)) - pos, name)
            pos = at + 8 if at >= 0 else len(buf)
    return pos, ts


def _check_count(top: int, total: int, name: str) -> None:
    """Refuse (ImageError) more than MAX_DICOM_ELEMENTS elements at the top level, or MAX_DICOM_ALL_ELEMENTS
    elements and sequence items in all."""
    if top > limits.MAX_DICOM_ELEMENTS or total > limits.MAX_DICOM_ALL_ELEMENTS:
        limit, where = (top - 1, "") if top > limits.MAX_DICOM_ELEMENTS else (total - 1, " in its sequences too")
        raise ImageError(f"{name}: this DICOM file holds more than {limit:,} data elements{where} (real ones hold "
                         "a few hundred a frame); refused before reading them. Check the export.")


def _check_value(tag: int, vr: bytes | None, length: int, name: str) -> None:
    """Refuse (ImageError) a value longer than MAX_VALUE_BYTES (a LUT's: MAX_LUT_BYTES) that pydicom would convert
    value by value, from its header's length: before pydicom reads it. Pixel data and WHOLE_VRS have no such limit."""
    if length <= MAX_VALUE_BYTES or tag in PIXEL_TAGS:
        return
    read_as = _read_as(tag, vr)
    limit = MAX_LUT_BYTES if "OW" in read_as else MAX_VALUE_BYTES
    if read_as in WHOLE_VRS or length <= limit:
        return
    from pydicom.datadict import keyword_for_tag

    what = f"{keyword_for_tag(tag) or 'data element'} ({tag >> 16:04X},{tag & 0xFFFF:04X})"
    raise ImageError(f"{name}: the DICOM declares a {limits.size_text(length)} value for its {what}, over the "
                     f"{limits.size_text(limit)} allowed for a value of its kind; refused before reading it. Check "
                     "the export.")


def _read_as(tag: int, vr: bytes | None) -> str:
    """The VR pydicom converts the element's value by: the file's (Explicit VR), else the data dictionary's; "UN"
    (bytes) for a private tag other than a private creator (LO) and for a tag pydicom does not know."""
    if vr is not None:
        return vr.decode("latin-1")  # any two bytes pydicom reads as a VR
    if tag >> 16 & 1:  # brainclf converts no private value, and vendors' are long (a Siemens CSA header passes 64 KB)
        return "LO" if 0x10 <= tag & 0xFFFF <= 0xFF else "UN"
    from pydicom.datadict import dictionary_VR

    try:
        return dictionary_VR(tag)
    except KeyError:
        return "UL" if tag & 0xFFFF == 0 else "UN"  # a group length, as pydicom reads one


def _is_vr(two: bytes) -> bool:
    return len(two) == 2 and two.isalpha() and two.isupper()  # two capital letters ("B\x00" is a length's bytes)


def _element_head(buf: bytes, pos: int, order: str, explicit: bool) -> tuple[bytes | None, int, int]:
    """(VR, or None when implicit; value length; where the value starts) of the element at `pos`. In an explicit
    VR file, as pydicom reads them: an element whose VR bytes sort outside "AA" to "ZZ" is implicit, and an unknown VR
    within them (b"D\\x07") has a 2-byte length."""
    vr = buf[pos + 4:pos + 6]
    if not explicit or not b"AA" <= vr <= b"ZZ":
        return None, struct.unpack_from(order + "I", buf, pos + 4)[0], pos + 8
    if vr in LONG_VRS:
        return vr, struct.unpack_from(order + "I", buf, pos + 8)[0], pos + 12
    return vr, struct.unpack_from(order + "H", buf, pos + 6)[0], pos + 8
