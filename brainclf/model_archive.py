"""A .keras file checked before Keras opens it: a readable zip whose directory declares nothing too large to
inflate (brainclf.limits). brainclf.card.load_model calls it; brainclf.card re-exports it."""

from __future__ import annotations

import zipfile
from pathlib import Path

from . import limits
from .errors import ModelError


def check_model_archive(path: str | Path) -> None:
    """Refuse a .keras file that is not a zip, or whose zip directory declares members too large to inflate
    (brainclf.limits), before Keras opens it. Reads only the directory; Python's zipfile never inflates a
    member past the size the directory declares, so a forged directory cannot get more past this check."""
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as zf:
            members = zf.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError) as e:
        raise ModelError(f"{path.name} could not be loaded as a Keras model: a .keras file is a zip archive and "
                         f"this one is not a readable zip ({type(e).__name__}: {str(e)[:120]}).") from None
    if len(members) > limits.MAX_KERAS_MEMBERS:
        raise ModelError(f"{path.name} holds {len(members):,} files; a .keras model holds a handful "
                         f"(limit {limits.MAX_KERAS_MEMBERS:,}). Refused before loading.")
    for m in members:
        limit = limits.MAX_KERAS_JSON_BYTES if m.filename.endswith(".json") else limits.MAX_KERAS_MEMBER_BYTES
        if m.file_size > limit:
            raise ModelError(f"{path.name}: {m.filename[:80]} inflates to {limits.size_text(m.file_size)} "
                             f"(compressed {limits.size_text(m.compress_size)}), above the limit of "
                             f"{limits.size_text(limit)} for it; refused before loading (a zip bomb, or not a model "
                             "of this project).")
    total = sum(m.file_size for m in members)
    if total > limits.MAX_KERAS_TOTAL_BYTES:
        raise ModelError(f"{path.name} inflates to {limits.size_text(total)} in all, above the limit of "
                         f"{limits.size_text(limits.MAX_KERAS_TOTAL_BYTES)}; refused before loading.")
