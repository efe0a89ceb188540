"""A JPEG's marker segments and a PNG's chunks counted before Pillow opens the file.

Pillow parses every JPEG segment and every PNG chunk before the image data in Python as it opens a file, and keeps
them: 12.5 million empty APP1 segments (48 MB) took 22 s and 1.6 GB, 4.3 million empty private PNG chunks (49 MB)
12 s and 445 MB. Real files hold a few dozen (a PNG's image data may be split over thousands of IDAT chunks, which
are not counted).
"""

from __future__ import annotations

from ..errors import ImageError
from .jpeg import jpeg_markers
from .limits import MAX_JPEG_SCANS, MAX_JPEG_SEGMENTS, MAX_PNG_CHUNKS

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_chunk_count(data: bytes, stop_after: int) -> int:
    """Chunks other than IDAT (and empty IDATs) in a PNG stream up to its IEND, counted up to `stop_after` + 1 (the
    walk stops there); a length that runs past the end stops the walk (Pillow then says the file is truncated)."""
    pos, n, chunks = len(PNG_SIGNATURE), len(data), 0
    while chunks <= stop_after and pos + 8 <= n:
        length, kind = int.from_bytes(data[pos:pos + 4], "big"), data[pos + 4:pos + 8]
        if kind == b"IEND":
            break
        chunks += kind != b"IDAT" or length == 0  # no encoder writes an empty IDAT
        pos += 12 + length  # length, type, data, CRC
    return chunks


def check_header_segments(data: bytes, name: str) -> None:
    """Refuse, before Pillow parses them one by one, a JPEG of more marker segments or a PNG of more chunks than
    real files hold (limits.MAX_JPEG_SEGMENTS, MAX_PNG_CHUNKS), and a JPEG of more scans than MAX_JPEG_SCANS (one
    walk of its markers, brainclf.input.jpeg)."""
    scans, segments = jpeg_markers(data, MAX_JPEG_SEGMENTS) if data[:3] == b"\xff\xd8\xff" else (0, 0)
    if scans > MAX_JPEG_SCANS and segments <= MAX_JPEG_SEGMENTS:  # each scan is a pass over the whole image
        raise ImageError(f"{name}: this JPEG is stored in {scans:,} scans (encoders write 1 to about 10; at most "
                         f"{MAX_JPEG_SCANS} are accepted): refused before decoding. Re-export the slice as a "
                         "baseline JPEG or PNG.")
    if segments > MAX_JPEG_SEGMENTS:
        what = f"more than {MAX_JPEG_SEGMENTS:,} marker segments"
    elif data[:8] == PNG_SIGNATURE and png_chunk_count(data, MAX_PNG_CHUNKS) > MAX_PNG_CHUNKS:
        what = f"more than {MAX_PNG_CHUNKS:,} chunks besides its image data"
    else:
        return
    raise ImageError(f"{name}: this file holds {what} (real ones hold a few dozen); refused before reading them. "
                     "Re-export the slice.")
