"""Card text made safe to show, and values brainclf writes made into labels the schema accepts."""

from __future__ import annotations

import re
import unicodedata
from typing import Any

from .fields import MARKUP


def display_text(s: Any, max_len: int = 500) -> str:
    """Card text made safe to show as plain text: control and invisible characters removed (newlines kept),
    at most `max_len` characters (cut with '…'). Show it with st.text or in a code span, never as Markdown."""
    if s is None:
        return ""
    s = str(s).replace("\r\n", "\n").replace("\t", " ")
    kept = []
    for ch in s:
        cat = unicodedata.category(ch)
        if ch == "\n":
            kept.append(ch)
        elif cat in ("Zl", "Zp"):
            kept.append("\n")
        elif cat[0] != "C":  # Cc control, Cf format (bidi, zero-width), Cs, Co, Cn
            kept.append(ch)
        if len(kept) > max_len:
            break
    out = "".join(kept).strip()
    return out if len(out) <= max_len else out[:max(max_len - 1, 0)].rstrip() + "…"


def plain_label(s: Any, max_len: int = 200) -> str:
    """`s` made into a one-line label the schema accepts (for values brainclf writes, such as a user name)."""
    s = re.sub(r"[<>\[\]`]", "", display_text(s, max_len).replace("\n", " "))
    while (cleaned := MARKUP.sub("", s)) != s:  # what is left: '://' and 'www.'
        s = cleaned
    return s
