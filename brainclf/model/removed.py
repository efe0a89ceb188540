"""Models an admin removed (MODELS/.removed/NAME-YYYYmmdd-HHMMSS-TOKEN/, brainclf.model.model_files.remove_model):
listed with when they were removed and what they hold on disk, restored under their own name while it is free,
or deleted for good to make room (an upload needs limits.MIN_FREE_DISK_BYTES free).

A folder is named by the one call that made it; anything else found under .removed/ (a stray file, a folder of
another pattern, a link) is left alone and never listed, so an entry a page hands back is re-found by its folder
name here and cannot point elsewhere."""

from __future__ import annotations

import logging
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from ..errors import ModelError
from ..input.limits import validate_model_name
from .card import card_path
from .model_files import REMOVED, publish_model

logger = logging.getLogger(__name__)

# remove_model's folder name; before 2026-12-05 it had no token after the time.
_FOLDER = re.compile(r"(?P<name>.+)-(?P<when>\d{8}-\d{6})(?:-[0-9a-f]{6})?")


@dataclass(frozen=True)
class RemovedModel:
    folder: str  # its folder's name under MODELS/.removed/
    name: str  # the model's name, as it was and as a restore gives it back
    removed_at: datetime
    size_bytes: int
    has_card: bool  # a model without its card cannot be restored (it would never be listed)


def removed_models(models_dir: str | Path) -> list[RemovedModel]:
    """The removed models, newest first."""
    base = Path(models_dir) / REMOVED
    try:
        folders = [p for p in base.iterdir() if p.is_dir() and not p.is_symlink()]
    except OSError:  # none removed yet, or unreadable
        return []
    found = [entry for p in folders if (entry := _entry(p)) is not None]
    return sorted(found, key=lambda e: (e.removed_at, e.folder), reverse=True)


def _entry(folder: Path) -> RemovedModel | None:
    match = _FOLDER.fullmatch(folder.name)
    if match is None:
        return None
    name = match["name"]
    try:
        validate_model_name(name, ModelError)
        when = datetime.strptime(match["when"], "%Y%m%d-%H%M%S")
        files = [p for p in folder.iterdir() if p.is_file() and not p.is_symlink()]
        size = sum(p.stat().st_size for p in files)
    except (ModelError, ValueError, OSError):
        return None
    if not (folder / f"{name}.keras").is_file():
        return None
    return RemovedModel(folder.name, name, when, size, card_path(folder / f"{name}.keras").is_file())


def _find(models_dir: str | Path, folder: str) -> tuple[RemovedModel, Path]:
    entry = next((e for e in removed_models(models_dir) if e.folder == folder), None)
    if entry is None:
        raise ModelError("That removed model is no longer there (restored or deleted meanwhile).")
    return entry, Path(models_dir) / REMOVED / entry.folder


def restore_model(models_dir: str | Path, folder: str, by: str = "",
                  name_held: Callable[[str], str | None] | None = None) -> Path:
    """Put a removed model back as MODELS/NAME.keras with its card; returns that path. `name_held(name)`: why the
    name is held for a model still to come (a running or resumable training of that name, which would fail to
    publish, or replace the restored model with its own: brainclf.serving.name_in_use), or None.

    Raises:
        ModelError: it is no longer there, its card is missing, its name is held, or a model of its name exists
            now (nothing is overwritten: remove or rename that one first).
    """
    entry, path = _find(models_dir, folder)
    if not entry.has_card:
        raise ModelError(f"{entry.name} cannot be restored: its card is missing from {entry.folder}.")
    if name_held is not None and (why := name_held(entry.name)):
        raise ModelError(f"{entry.name} cannot be restored now: {why}.")
    model = path / f"{entry.name}.keras"
    target = publish_model(model, card_path(model), Path(models_dir) / f"{entry.name}.keras")
    shutil.rmtree(path, ignore_errors=True)  # published by hard link (or copy): the folder's files are spare now
    logger.info("removed model %s restored from %s by %s", entry.name, entry.folder, by or "-")
    return target


def delete_removed(models_dir: str | Path, folder: str, by: str = "") -> int:
    """Delete a removed model for good; returns the bytes freed.

    Raises:
        ModelError: it is no longer there, or could not be deleted.
    """
    entry, path = _find(models_dir, folder)
    try:
        shutil.rmtree(path)
    except FileNotFoundError:
        raise ModelError("That removed model is no longer there (restored or deleted meanwhile).") from None
    except OSError as e:
        raise ModelError(f"{entry.name} could not be deleted ({e.strerror or type(e).__name__}).") from None
    logger.info("removed model %s (%s, %d bytes) deleted for good by %s", entry.name, entry.folder,
                entry.size_bytes, by or "-")
    return entry.size_bytes
