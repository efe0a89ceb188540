"""An external folder's `manifest.csv`: which MR sequence (and subtype) each slice is, as a hospital exports it.

Exports differ by locale and tool: European Excel separates with ';', "Unicode text" is UTF-16, headers come
capitalised or padded, Windows writes 'glioma\\a.png'. What can be read unambiguously is read; what cannot (a
text encoding other than UTF-8) is refused with the fix; what is read but cannot be used (rows naming no file,
one file given two different sequences) is counted in `Manifest.warnings`, for callers to show.
"""

from __future__ import annotations

import csv
import io
import logging
import re
from pathlib import Path, PurePosixPath, PureWindowsPath

from ..errors import DataError
from ..model.card_schema import plain_label

log = logging.getLogger(__name__)

MANIFEST = "manifest.csv"
MAX_MANIFEST_BYTES = 5_000_000
DELIMITERS = ",;\t"  # comma; semicolon (Excel where ',' is the decimal mark); tab (Excel's "Text" export)
SAVE_AS = "save it from Excel as 'CSV UTF-8 (Comma delimited)'"
UNKNOWN = {"sequence": "unknown", "subtype": ""}


class Manifest(dict):
    """{relative file: {"sequence", "subtype"}}, equal to that plain dict, plus what reading it found.

    Attributes:
        rows: rows that named a file.
        unmatched: rows whose file is not in the folder (no slice gets their sequence).
        conflicting: files named again with another sequence or subtype (they get "unknown": no guess).
        warnings: one plain sentence per problem, for callers to show beside the per-sequence figures.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.rows, self.unmatched, self.conflicting, self.warnings = 0, 0, 0, []

    def counts(self) -> dict:
        """What a report stores: {"rows", "unmatched", "conflicting", "warnings"}."""
        return {"rows": self.rows, "unmatched": self.unmatched, "conflicting": self.conflicting,
                "warnings": list(self.warnings)}


def shown(text: str, limit: int = 80) -> str:
    """Untrusted text quoted in a message: escaped (ascii(): no control or look-alike characters) and cut."""
    return ascii(text[:limit]) + ("..." if len(text) > limit else "")


def read_manifest(root: str | Path) -> Manifest:
    """ROOT/manifest.csv (columns file, sequence, subtype) → {relative file: {"sequence", "subtype"}}.

    Headers are matched ignoring case and surrounding spaces; ',', ';' or tab separates. Paths must be relative
    and stay inside ROOT: absolute paths, drive letters and '..' are refused; '\\' is read as '/'.

    Raises:
        DataError: a manifest that is too large, not UTF-8, lacks the columns or names a path outside the folder.
    """
    root = Path(root)
    path = root / MANIFEST
    if not path.is_file():
        return Manifest()
    with open(path, "rb") as f:  # read at most one byte past the limit, whatever the size said a moment ago
        data = f.read(MAX_MANIFEST_BYTES + 1)
    if len(data) > MAX_MANIFEST_BYTES:
        raise DataError(f"{MANIFEST} is larger than {MAX_MANIFEST_BYTES // 1_000_000} MB.")
    text = _decode(data)
    delimiter = _delimiter(text)
    reader = csv.DictReader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        manifest = _manifest_rows(reader, root)
    except csv.Error as e:  # an unmatched quote, a cell over the csv module's field limit
        raise DataError(f"{MANIFEST} line {reader.line_num} cannot be read as CSV: {e}.") from None
    for warning in manifest.warnings:
        log.warning("%s", warning)
    return manifest


def _decode(data: bytes) -> str:
    """UTF-8 (with or without Excel's byte-order mark), or a DataError naming the encoding found."""
    # UTF-16 of ASCII text is valid UTF-8 with a NUL every other byte: decoding alone would not notice it.
    if data.startswith((b"\xff\xfe", b"\xfe\xff")) or b"\x00" in data[:4096]:
        raise DataError(f"{MANIFEST} is UTF-16 text (Excel's 'Unicode Text'), not UTF-8: {SAVE_AS}.")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data[:e.start].count(b"\n") + 1
        raise DataError(f"{MANIFEST} is not UTF-8 text: byte 0x{data[e.start]:02x} on line {line} is not UTF-8 "
                        f"(Latin-1 or Windows-1252 exports look like this, e.g. an 'ä'); {SAVE_AS}.") from None


def _delimiter(text: str) -> str:
    """The separator of the header line: whichever of ',', ';' and tab it holds most (',' on a tie or none)."""
    header = next((line for line in text.splitlines() if line.strip()), "")
    return max(DELIMITERS, key=header.count)  # max keeps the first of equals: ','


def _header(reader: csv.DictReader) -> None:
    """Normalise the header in place ('File ' → 'file'), or refuse it quoting what was found."""
    found = reader.fieldnames or []
    reader.fieldnames = [(h or "").strip().lower() for h in found]
    if "file" not in reader.fieldnames or "sequence" not in reader.fieldnames:
        header = reader.reader.dialect.delimiter.join(h or "" for h in found)
        raise DataError(f"{MANIFEST} needs the columns file and sequence (and optionally subtype), separated by "
                        f"',', ';' or tabs; its header is {shown(header) if found else 'empty'}.")


def _relative(cell: str) -> str:
    """A manifest's file cell as a path relative to its folder ('\\' read as '/'), or a DataError."""
    raw = cell.strip()
    rel = PurePosixPath(raw.replace("\\", "/"))
    if PureWindowsPath(raw).drive or rel.is_absolute() or ".." in rel.parts or not rel.parts:
        raise DataError(f"{MANIFEST} may only name files inside its folder; refused {shown(raw)}.")
    return rel.as_posix()


def _label(cell: str | None, limit: int) -> str:
    """A sequence or subtype name as figures and Plotly axes show it: letters, digits and ' +._-()/,:' only (Plotly
    renders HTML tags and entities in labels), at most `limit` characters."""
    return plain_label(re.sub(r"[^\w +.\-()/,:]", "", (cell or "").strip()), limit).strip()  # no '://' either


def _manifest_rows(reader: csv.DictReader, root: Path) -> Manifest:
    _header(reader)
    out, unmatched, conflicts = Manifest(), [], []
    for row in reader:
        if not (row.get("file") or "").strip():  # a blank row (a spreadsheet's trailing line): nothing named
            continue
        rel = _relative(row["file"])
        meta = {"sequence": _label(row.get("sequence"), 32) or "unknown", "subtype": _label(row.get("subtype"), 64)}
        out.rows += 1
        if rel in out:
            if out[rel] != meta and rel not in conflicts:  # which row is right cannot be known: neither is used
                conflicts.append(rel)
            continue
        out[rel] = meta
        if not (root / rel).is_file():
            unmatched.append(rel)
    for rel in conflicts:
        out[rel] = dict(UNKNOWN)
    out.unmatched, out.conflicting = len(unmatched), len(conflicts)
    if unmatched:
        out.warnings.append(f"{MANIFEST}: {len(unmatched)} of its {len(out)} files are not in the folder (e.g. "
                            f"{shown(unmatched[0])}); paths are relative to the folder holding {MANIFEST}.")
    if conflicts:
        out.warnings.append(f"{MANIFEST}: {len(conflicts)} files are listed more than once with different values "
                            f"(e.g. {shown(conflicts[0])}); their sequence is counted as 'unknown'.")
    return out
