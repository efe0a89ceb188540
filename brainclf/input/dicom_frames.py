"""Compressed DICOM frames, checked from their own codestream before any decoder allocates.

A decoder allocates what the codestream declares, not what the DICOM header says: a 680-byte JPEG 2000
DICOM whose header said 512x512 but whose codestream declared 20000x20000 took the CLI to 2.7 GB. So the
frame that is about to be decoded is read here first (JPEG 2000: the SIZ marker, bare or inside a JP2
wrapper; JPEG and JPEG-LS: the SOF / SOF55 marker; RLE: the segment table, and each segment's decoded
length from its run headers) and refused unless it matches the header's Rows x Columns x samples, which
`check_pixel_budget` (below) has already held to the caps in brainclf.input.limits. Other compressed transfer
syntaxes (MPEG, HEVC, JPIP, multi-component JPEG 2000) are refused. Deflated Explicit VR Little Endian
compresses the whole dataset, not frames: `dicom_deflate.inflate_deflated` inflates it bounded by the header.
A JPEG frame is also held to a .jpg upload's scan limit and must be whole.
"""

from __future__ import annotations

import struct

from ..errors import ImageError
from . import limits
from .jpeg import jpeg_markers

JPEG_2000 = frozenset({"1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91",  # JPEG 2000 (lossless, lossy)
                       "1.2.840.10008.1.2.4.201", "1.2.840.10008.1.2.4.202", "1.2.840.10008.1.2.4.203"})  # HTJ2K
JPEG = frozenset({"1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51", "1.2.840.10008.1.2.4.57",
                  "1.2.840.10008.1.2.4.70",  # baseline, extended, lossless, lossless SV1
                  "1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.81"})  # JPEG-LS (SOF55 frame header)
JPEG_DCT = JPEG - {"1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.81"}  # ISO 10918 JPEG: scans, then EOI
RLE = "1.2.840.10008.1.2.5"
# Frame header markers: SOF0-3, 5-7, 9-11, 13-15 (not DHT C4, JPG C8, DAC CC) and JPEG-LS SOF55 (F7).
SOF_MARKERS = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF, 0xF7})
JP2_SIGNATURE = b"\x00\x00\x00\x0cjP  \r\n\x87\n"
# A PackBits run header that repeats a byte yields at most 128 bytes from 2: the most one segment byte can give.
RLE_MAX_EXPANSION = 64
RLE_PADDING = 128  # pydicom accepts (with a warning) a segment that decodes to a little more than Rows x Columns


class Malformed(ValueError):
    """The codestream cannot be read far enough to know its size."""


def check_encoded_frame(ds, frame: int, n_frames: int, name: str) -> None:
    """Refuse (ImageError) the compressed frame `frame` of `ds` unless its codestream declares the header's
    size, before pydicom hands it to a decoder. Uncompressed files pass unchanged."""
    ts = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    if ts is None or not ts.is_encapsulated:
        return
    what = f"{name}: cannot decode pixel data with transfer syntax {ts.name} ({ts})"
    if ts not in JPEG_2000 and ts not in JPEG and ts != RLE:
        raise ImageError(f"{what}: brainclf decodes JPEG, JPEG-LS, JPEG 2000 and RLE compressed DICOM only. "
                         "Export the series uncompressed to use it.")
    rows, cols = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
    samples = max(int(ds.get("SamplesPerPixel", 1) or 1), 1)
    if str(ds.get("PhotometricInterpretation", "")).upper() == "PALETTE COLOR":
        samples = 3  # one index a pixel, decoded through the colour table to red, green and blue
    per_sample = max((int(ds.get("BitsAllocated", 8) or 8) + 7) // 8, 1)
    try:
        data = _frame_bytes(ds, frame, n_frames)
        if ts == RLE:
            _check_rle(data, rows * cols, samples * per_sample)
            return
        scans, segments = jpeg_markers(data, limits.MAX_JPEG_SEGMENTS) if ts not in JPEG_2000 else (0, 0)
        if segments > limits.MAX_JPEG_SEGMENTS:
            raise Malformed(f"the JPEG frame holds more than {limits.MAX_JPEG_SEGMENTS:,} marker segments (real "
                            "ones hold a few dozen)")  # jpeg_size would walk every one of them, then Pillow again
        width, height, components, bits = j2k_size(data) if ts in JPEG_2000 else jpeg_size(data)
    except Malformed as e:
        raise ImageError(f"{what}: {e}; refused before decoding.") from None
    if (width, height, components) != (cols, rows, samples) or bits > 8 * per_sample:
        raise ImageError(f"{what}: the frame's codestream declares {width}x{height} pixels x {components} "
                         f"component(s) of {bits} bits, but the DICOM header says {cols}x{rows} x {samples} of at "
                         f"most {8 * per_sample}; refused before decoding.")
    # As a .jpg upload (brainclf.input.preprocess): each scan is a pass over the whole frame, and a truncated
    # frame decodes without an error to grey garbage that would get a prediction (its item pads it with a 0 byte).
    if ts in JPEG_DCT and scans > limits.MAX_JPEG_SCANS:
        raise ImageError(f"{what}: the frame is stored in {scans:,} JPEG scans (encoders write 1 to about 10; at "
                         f"most {limits.MAX_JPEG_SCANS} are accepted); refused before decoding. Export the series "
                         "uncompressed to use it.")
    if ts in JPEG_DCT and not data.rstrip(b"\x00").endswith(b"\xff\xd9"):
        raise ImageError(f"{what}: the JPEG frame is truncated (it does not end with an end-of-image marker); "
                         "check the export.")


def _frame_bytes(ds, frame: int, n_frames: int) -> bytes:
    """The encoded bytes of one frame, found as pydicom's decoders find them (pydicom.encaps.get_frame)."""
    from pydicom.encaps import get_frame

    offsets = None
    if "ExtendedOffsetTable" in ds and "ExtendedOffsetTableLengths" in ds:
        offsets = (ds.ExtendedOffsetTable, ds.ExtendedOffsetTableLengths)
    try:
        return get_frame(ds.PixelData, frame if n_frames > 1 else 0, number_of_frames=n_frames,
                         extended_offsets=offsets)
    except Exception as e:  # noqa: BLE001 - get_frame raises several types for a broken item table
        raise Malformed(f"frame {frame} cannot be found in the encapsulated pixel data ({type(e).__name__})") from None


def _u16(data: bytes, at: int) -> int:
    if at + 2 > len(data):
        raise Malformed("the codestream is truncated before its frame header")
    return int.from_bytes(data[at:at + 2], "big")


def j2k_size(data: bytes) -> tuple[int, int, int, int]:
    """(width, height, components, largest bit depth) from a JPEG 2000 codestream's SIZ marker segment (ISO
    15444-1 A.5.1), bare or in a JP2 file's contiguous codestream box."""
    if data.startswith(JP2_SIGNATURE):
        data = _jp2_codestream(data)
    if data[:4] != b"\xff\x4f\xff\x51":  # SOC, then SIZ: the first marker segment of every codestream
        raise Malformed("the JPEG 2000 codestream does not start with SOC and a SIZ marker")
    length = _u16(data, 4)
    if length < 41 or 4 + length > len(data):
        raise Malformed("the JPEG 2000 SIZ marker is truncated")
    xsiz, ysiz, x0, y0, tile_w, tile_h, tile_x0, tile_y0 = struct.unpack(">IIIIIIII", data[8:40])
    # openjpeg allocates per tile: 58,000 tiles of 6x6 pixels in a 704-byte file took 551 MB before it gave up.
    if not tile_w or not tile_h or tile_x0 > x0 or tile_y0 > y0:
        raise Malformed("the JPEG 2000 SIZ marker declares an impossible tile grid")
    tiles = -(-max(xsiz - tile_x0, 0) // tile_w) * -(-max(ysiz - tile_y0, 0) // tile_h)
    if tiles > limits.MAX_J2K_TILES:
        raise Malformed(f"the JPEG 2000 codestream splits the frame into {tiles:,} tiles (encoders use one or a "
                        f"few dozen; at most {limits.MAX_J2K_TILES:,} are accepted)")
    components = _u16(data, 40)
    if length != 38 + 3 * components:
        raise Malformed(f"the JPEG 2000 SIZ marker's length does not match its {components} component(s)")
    bits = max((data[42 + 3 * c] & 0x7F) + 1 for c in range(components)) if components else 0
    return max(xsiz - x0, 0), max(ysiz - y0, 0), components, bits


def _jp2_codestream(data: bytes) -> bytes:
    """The contents of the first 'jp2c' box of a JP2 file (ISO 15444-1 I.4)."""
    pos = 0
    while pos + 8 <= len(data):
        size, kind = int.from_bytes(data[pos:pos + 4], "big"), data[pos + 4:pos + 8]
        head = 8
        if size == 1:
            if pos + 16 > len(data):
                break
            size, head = int.from_bytes(data[pos + 8:pos + 16], "big"), 16
        elif size == 0:
            size = len(data) - pos
        if size < head:
            raise Malformed("a JP2 box has an impossible length")
        if kind == b"jp2c":
            return data[pos + head:pos + size]
        pos += size
    raise Malformed("the JP2 file has no codestream box")


def jpeg_size(data: bytes) -> tuple[int, int, int, int]:
    """(width, height, components, bit depth) from a JPEG or JPEG-LS stream's frame header (ISO 10918-1 B.2.2,
    ISO 14495-1 C.2.2), the first SOFn or SOF55 before the first scan."""
    if data[:2] != b"\xff\xd8":
        raise Malformed("the JPEG stream does not start with an SOI marker")
    pos = 2
    while pos + 1 < len(data):
        if data[pos] != 0xFF:
            raise Malformed(f"the JPEG stream has no marker where one is due (byte {pos})")
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
        elif marker == 0x01 or 0xD0 <= marker <= 0xD7:  # TEM, RSTn: no length
            pos += 2
        elif marker in (0xD9, 0xDA):
            raise Malformed("the JPEG stream has no frame header (SOF) before its scan")
        elif marker in SOF_MARKERS:
            if _u16(data, pos + 2) < 8 or pos + 10 > len(data):
                raise Malformed("the JPEG frame header is truncated")
            bits, height, width, components = struct.unpack(">BHHB", data[pos + 4:pos + 10])
            if height == 0:
                raise Malformed("the JPEG frame header leaves its height to a later DNL marker")
            return width, height, components, bits
        else:
            pos += 2 + _u16(data, pos + 2)
    raise Malformed("the JPEG stream ends before its frame header (SOF)")


def _check_rle(data: bytes, plane: int, segments: int) -> None:
    """An RLE Lossless frame (DICOM PS3.5 G.3): as many segments as samples x bytes per sample, each inside the
    frame and decoding to at most one plane of Rows x Columns bytes (plus pydicom's tolerated padding)."""
    if len(data) < 64:
        raise Malformed("the RLE frame is shorter than its 64-byte header")
    count, *offsets = struct.unpack("<16I", data[:64])
    if count != segments:
        raise Malformed(f"the RLE header declares {count} segment(s), but the DICOM header needs {segments}")
    bounds = [*offsets[:count], len(data)]
    for k in range(count):
        start, end = bounds[k], bounds[k + 1]
        if not 64 <= start < end <= len(data):
            raise Malformed(f"RLE segment {k + 1} lies outside the frame (offset {start})")
        if _packbits_exceeds(data, start, end, plane + RLE_PADDING):
            raise Malformed(f"RLE segment {k + 1} decodes to more than the {plane:,} bytes of one "
                            "Rows x Columns plane")


def _packbits_exceeds(data: bytes, start: int, end: int, limit: int) -> bool:
    """Whether data[start:end] decodes to more than `limit` bytes as PackBits, counted from its run headers
    without decoding (a 2-byte run header can ask for 128 bytes); the walk stops once past the limit."""
    if (end - start) * RLE_MAX_EXPANSION <= limit:
        return False  # cannot exceed it whatever its run headers say
    pos, total = start, 0
    while pos < end and total <= limit:
        header = data[pos]
        if header < 128:
            total, pos = total + header + 1, pos + header + 2
        elif header > 128:
            total, pos = total + 257 - header, pos + 2
        else:
            pos += 1
    return total > limit


def check_pixel_budget(ds, name: str) -> int:
    """Refuse, from the header alone, pixel data too large to hold or a frame too large to decode; return the
    bytes all frames take once decoded (frames x rows x columns x samples x bytes per sample)."""
    rows, cols = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
    frames = max(int(ds.get("NumberOfFrames", 1) or 1), 1)
    samples = max(int(ds.get("SamplesPerPixel", 1) or 1), 1)
    if str(ds.get("PhotometricInterpretation", "")).upper() == "PALETTE COLOR":
        samples = 3  # one index a pixel, decoded through the colour table to red, green and blue
    per_sample = max((int(ds.get("BitsAllocated", 8) or 8) + 7) // 8, 1)
    if rows * cols > limits.MAX_PIXELS:
        raise ImageError(f"{name}: DICOM frame is {cols}x{rows} pixels, above the limit of {limits.MAX_PIXELS:,}; "
                         "refused before decoding.")
    total = frames * rows * cols * samples * per_sample
    if total > limits.MAX_DICOM_PIXEL_BYTES:
        raise ImageError(f"{name}: DICOM pixel data is {frames} frame(s) of {cols}x{rows} x {samples} sample(s) x "
                         f"{per_sample} byte(s) = {limits.size_text(total)} once decoded, above the limit of "
                         f"{limits.size_text(limits.MAX_DICOM_PIXEL_BYTES)}; refused before decoding. Export "
                         "the slice (or a few frames) on its own.")
    need = rows * cols * samples * (per_sample + limits.DICOM_FLOAT_WORK_BYTES_PER_SAMPLE)
    if need > limits.MAX_DECODE_BYTES:
        raise ImageError(f"{name}: one {cols}x{rows} DICOM frame needs ~{limits.size_text(need)} to decode and "
                         f"window, above the limit of {limits.size_text(limits.MAX_DECODE_BYTES)}; refused "
                         "before decoding.")
    return total


def check_native_length(ds, n_frames: int, name: str) -> None:
    """Refuse uncompressed pixel data longer than the header's frames (plus the byte that pads an odd length, PS3.5
    8.1.1): pydicom reads the excess as more frames (50 MB for a 64x64 8-bit slice: 12,799 frames, 1.3 GB decoded)."""
    ts = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    keyword = next((k for k in ("PixelData", "FloatPixelData", "DoubleFloatPixelData") if k in ds), None)
    rows, cols = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
    samples, bits = int(ds.get("SamplesPerPixel", 1) or 1), int(ds.get("BitsAllocated", 0) or 0)
    if (ts is not None and ts.is_encapsulated) or keyword is None or min(rows, cols, samples, bits) <= 0 or (
            bits != 1 and bits % 8):
        return  # compressed (checked frame by frame), or a header pydicom refuses by name before decoding
    frames = max(n_frames, 1)
    expected = native_pixel_bytes(ds, frames)
    actual = len(ds[keyword].value or b"")
    if actual > expected + 1:
        raise ImageError(f"{name}: the DICOM's pixel data is {limits.size_text(actual)}, more than the "
                         f"{limits.size_text(expected)} of the {frames} frame(s) of {cols}x{rows} its header "
                         "declares (is its Number of Frames missing?); refused before decoding. Check the export.")
    if actual < expected:
        raise ImageError(f"{name}: the DICOM's pixel data is {limits.size_text(actual)}, less than the "
                         f"{limits.size_text(expected)} of the {frames} frame(s) of {cols}x{rows} its header "
                         "declares (the file is cut short, or its Number of Frames is wrong); refused before "
                         "decoding. Check the export.")


def native_pixel_bytes(ds, frames: int) -> int:
    """The bytes `frames` uncompressed frames of the header's size take: 1-bit pixels packed, and YBR_FULL_422's two
    chroma samples stored at half the horizontal resolution (PS3.3 C.7.6.3.1.2: two thirds of three full planes)."""
    rows, cols = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
    samples, bits = int(ds.get("SamplesPerPixel", 1) or 1), int(ds.get("BitsAllocated", 0) or 0)
    expected = (frames * rows * cols * samples * bits + 7) // 8
    if samples == 3 and str(ds.get("PhotometricInterpretation", "")).upper() == "YBR_FULL_422":
        expected = expected // 3 * 2
    return expected
