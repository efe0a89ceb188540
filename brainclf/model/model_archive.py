"""A .keras file checked before Keras opens it: a readable zip whose directory declares nothing too large to
inflate, and whose config.json declares no more parameters than brainclf.input.limits allows (model_config).
brainclf.model.card.load_model calls it; brainclf.model.card re-exports it."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

from ..errors import ModelError
from ..input import limits
from .model_config import check_model_config


def check_model_archive(path: str | Path) -> None:
    """Refuse a .keras file that is not a zip, whose zip directory declares members too large to inflate
    (brainclf.input.limits), or whose config.json declares a model over the parameter budget, before Keras opens it.
    Python's zipfile never inflates a member past the size the directory declares, so a forged directory cannot
    get more past this check."""
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as zf:
            members = zf.infolist()
            _check_directory(path, members)
            config = _read_config(path, zf)
    except ModelError:
        raise
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError) as e:
        raise ModelError(f"{path.name} could not be loaded as a Keras model: a .keras file is a zip archive and "
                         f"this one is not a readable zip ({type(e).__name__}: {str(e)[:120]}).") from None
    check_model_config(config, path.name)


def _read_config(path: Path, zf: zipfile.ZipFile) -> object:
    """config.json, parsed (its size was checked against the directory's limits)."""
    try:
        return json.loads(zf.read("config.json"))
    except KeyError:
        raise ModelError(f"{path.name} has no config.json: not a Keras model file.") from None
    except (ValueError, RecursionError) as e:
        raise ModelError(f"{path.name}: its config.json is not valid JSON ({type(e).__name__}).") from None


def _check_directory(path: Path, members: list[zipfile.ZipInfo]) -> None:
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
