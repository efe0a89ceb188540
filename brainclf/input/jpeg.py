"""What a JPEG's markers say before Pillow decodes it: how many scans it is stored in.

libjpeg decodes a progressive JPEG scan by scan over the whole image, so a small file of thousands of tiny
scans costs minutes of CPU at the pixel limit (a 427 KB 7000x7000 file of 2,000 scans took 14.5 s; time grows
with the scan count). Encoders write 1 scan (baseline) or about 10 (progressive); libjpeg's own tools offer
a -maxscans guard for this. The walk skips every segment by its length, so bytes inside an APP or comment
segment are never read as markers; entropy-coded data stuffs a 0xFF byte as FF00, so a marker found there is
real. The same walk counts the marker segments, stopping past a limit (a flood of empty segments is refused before
Pillow parses them one by one).
"""

from __future__ import annotations

SOS, EOI = 0xDA, 0xD9
STANDALONE = frozenset({0x01, *range(0xD0, 0xD8)})  # TEM and the restart markers carry no length


def jpeg_markers(data: bytes, stop_after: int | None = None) -> tuple[int, int]:
    """(start-of-scan markers, marker segments with a length) in a JPEG stream up to its end-of-image marker; the
    walk stops once the segments pass `stop_after`, so a file of millions of them costs no more than a real one."""
    i, n, scans, segments = 2, len(data), 0, 0
    while stop_after is None or segments <= stop_after:
        i = data.find(b"\xff", i)
        if i < 0 or i + 1 >= n:
            break
        marker = data[i + 1]
        if marker in (0x00, 0xFF) or marker in STANDALONE:  # stuffed byte, fill byte, restart marker
            i += 1 if marker == 0xFF else 2
            continue
        if marker == EOI:
            break
        scans, segments = scans + (marker == SOS), segments + 1
        i += 2 + max(int.from_bytes(data[i + 2:i + 4], "big"), 2)  # a segment's length counts its own two bytes
    return scans, segments
