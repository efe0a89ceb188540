"""Untrusted text made inert where it is shown or exported: one helper for Markdown, one for CSV cells.

Markdown (`md_literal`): the app renders most text as Streamlit Markdown (st.markdown, captions, alerts,
headings, widget labels and help, metric labels, st.table cells, st.progress and st.toast text). A file name,
a card field or a sign-in display name interpolated there must show as typed: no bold, colour directives
(`:red[...]`, `:green-badge[...]`), Material icons or emoji shortcodes, links, images (which the browser
fetches), math, HTML or autolinked URLs. CommonMark lets a backslash escape any ASCII punctuation: every
character that means something there is escaped (the directive, emoji and math parsers Streamlit adds then
find no unescaped `:` or `$`; `https\\://` and `www\\.` are no autolinks), and line breaks and other control
characters become spaces (no block syntax can start on a new line); invisible bidi and zero-width characters
are removed (they could make a name read as another, or turn the text after it around).

CSV (`csv_cell`, `csv_row`, `csv_value`): a text cell that begins with `=`, `+`, `-`, `@`, a tab or a carriage
return is a formula to a spreadsheet (OWASP "CSV injection"); it gets a leading `'`. A cell that begins with
`'` gets one too, so `csv_value` can give back exactly what was written (the resumable folder CSV reads its
own file names back). Numbers and booleans are never touched: only strings are cells of text.
"""

from __future__ import annotations

import csv
import re
from typing import Any

# What Markdown, GFM (autolinks, tables, strikethrough) and Streamlit (directives, icons, emoji, math,
# typographic arrows) give a meaning; '/', '%', ',', ';', '?', '=', '@' and quotes are left as they are.
_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()<>#+\-.!|:$~&^])")
_CONTROL = re.compile(r"[\x00-\x1f\x7f\u2028\u2029]+")
# Invisible format characters: bidi marks, embeddings, overrides and isolates (a file name "scan\u202egpj.png"
# shows as "scangnp.jpg" and reverses the text after it), zero-width characters and the byte-order mark.
_INVISIBLE_CHARS = "\u061c\u200b-\u200f\u202a-\u202e\u2060-\u2069\ufeff"
_INVISIBLE = re.compile(f"[{_INVISIBLE_CHARS}]+")
CSV_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_CSV_QUOTED = (*CSV_FORMULA_START, "'")


# What a terminal acts on: C0 controls but tab and newline, DEL and C1 controls (escape sequences set the clipboard,
# retitle the window, hide or rewrite lines; a carriage return overwrites one), the invisible format characters,
# and lone surrogates (a file name that is not UTF-8, which printing would refuse).
_TERMINAL_UNSAFE = re.compile(f"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029{_INVISIBLE_CHARS}\ud800-\udfff]")


def terminal_text(text: Any) -> str:
    """`text` as the command line prints it: what a terminal would act on shown as a visible escape (\\x1b,
    \\u202e); tab and newline kept."""
    return _TERMINAL_UNSAFE.sub(lambda m: f"\\x{ord(m.group()):02x}" if ord(m.group()) < 0x100
                                else f"\\u{ord(m.group()):04x}", "" if text is None else str(text))


def json_default(o):
    """json.dumps(default=...) for numpy scalars and arrays (without importing numpy here)."""
    tolist = getattr(o, "tolist", None)
    if tolist is None or not type(o).__module__.startswith("numpy"):
        raise TypeError(type(o).__name__)
    return tolist()


def visible_text(text: Any) -> str:
    """`text` without invisible format characters (bidi marks, overrides, isolates, zero-width ones): plain text
    shown outside Markdown (tables, widget options) reads as typed, in order (None → '')."""
    return _INVISIBLE.sub("", "" if text is None else str(text))


def md_literal(text: Any) -> str:
    """`text` as Streamlit Markdown that renders literally, on one line (None → '')."""
    return _MD_SPECIAL.sub(r"\\\1", _CONTROL.sub(" ", visible_text(text)))


# Every text cell quoted: a spreadsheet in a locale whose separator is ';' (most of Europe) would otherwise split
# "scan;=cmd|…" into a cell that starts with '=' (csv_cell escapes only a cell's own start). Numbers stay bare.
CSV_QUOTING = csv.QUOTE_NONNUMERIC
# File names that are not UTF-8 (bytes a file system allows) go into a CSV as the same bytes and read back equal.
CSV_TEXT = {"encoding": "utf-8", "errors": "surrogateescape"}


def csv_cell(value: Any) -> Any:
    """A CSV cell a spreadsheet will not run: text starting like a formula (or with `'`) gets a leading `'`."""
    if isinstance(value, str) and value.startswith(_CSV_QUOTED):
        return "'" + value
    return value


def csv_row(row: dict) -> dict:
    """Every cell of a row through csv_cell (numbers and booleans unchanged)."""
    return {k: csv_cell(v) for k, v in row.items()}


def csv_value(cell: str) -> str:
    """What csv_cell was given, from the cell it wrote."""
    return cell[1:] if cell.startswith("'") and cell[1:].startswith(_CSV_QUOTED) else cell
