"""A user's kept site runs (the app keeps them per user: brainclf.serving.owner_run_dir): listed with what they
hold and how much disk they take, and deleted when their owner is done with them (or wants the site name for
another folder). The models a run saved stay in the models folder with their cards; a deletion takes the split,
the figures and an adaptation's saved epochs (no resume after it).

A run is named by its folder under the user's site folder (SITE/MODEL, or an older run's flat SITE-MODEL); an
entry a page hands back is re-found by that name here, so it cannot point elsewhere, and links are never
followed."""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from ..errors import BrainclfError
from .run import STATE, saved_state
from .step_lock import one_step_at_a_time

__all__ = ["KeptSiteRun", "delete_site_run", "kept_site_runs"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class KeptSiteRun:
    folder: str  # its folder under the user's site folder: SITE/MODEL (or SITE-MODEL, an older run)
    site: str
    model: str  # the model it started from
    steps: tuple[str, ...]  # the steps it finished, in their order
    size_bytes: int
    changed_at: datetime  # its record's last change


def kept_site_runs(base: str | Path) -> list[KeptSiteRun]:
    """The site runs under `base` (one user's site folder), most recently changed first."""
    base = Path(base)
    found = [run for folder in _candidates(base) if (run := _entry(base, folder)) is not None]
    return sorted(found, key=lambda r: (r.changed_at, r.folder), reverse=True)


def delete_site_run(base: str | Path, folder: str, running: Path | None = None, by: str = "") -> KeptSiteRun:
    """Delete the site run `folder` (a KeptSiteRun.folder) under `base`; `running`: the run folder of the app's
    job now running, if any, which is refused; `by`: who asked (for the log).

    Raises:
        BrainclfError: no such run under `base` (already deleted, say), or a step of it is running.
    """
    runs = {run.folder: run for run in kept_site_runs(base)}
    if folder not in runs:
        raise BrainclfError("That site run is no longer there (deleted already?); nothing was deleted.")
    path = Path(base) / folder
    if running is not None and Path(running).resolve().is_relative_to(path.resolve()):
        raise BrainclfError("A step of that site run is running: wait for it or cancel it first; nothing was deleted.")
    # An older flat run's folder (SITE-MODEL) may hold a newer run nested in it (site SITE-MODEL, another model).
    if inner := [f for f in runs if f.startswith(f"{folder}/")]:
        raise BrainclfError(f"That site run's folder also holds the site run {inner[0]}: delete that one first; "
                            "nothing was deleted.")
    try:
        with one_step_at_a_time(path, doing="delete it"):  # a step of another process (the CLI, say)
            shutil.rmtree(path)
    except OSError as e:
        logger.warning("deleting site run %s failed: %s", path, e)
        raise BrainclfError(f"The site run could not be deleted ({e.strerror or type(e).__name__}); some of it "
                            "may be left: try again.") from None
    _remove_if_empty(path.parent, Path(base))
    logger.info("site run %s (%d bytes) deleted by %s", path, runs[folder].size_bytes, by or "-")
    return runs[folder]


def _candidates(base: Path) -> list[Path]:
    """Folders one or two levels under `base` holding a site run's record (no links followed): SITE/MODEL, and an
    older flat SITE-MODEL, which may hold a nested run of its own."""
    out = []
    for first in _folders(base):
        out += [first] if (first / STATE).is_file() else []
        out += [f for f in _folders(first) if (f / STATE).is_file()]
    return out


def _folders(path: Path) -> list[Path]:
    try:
        return [p for p in path.iterdir() if p.is_dir() and not p.is_symlink()]
    except OSError:
        return []


def _entry(base: Path, folder: Path) -> KeptSiteRun | None:
    state = saved_state(folder)
    if not isinstance(state, dict):  # a record cut short: listed by its folder's name, so it can be deleted
        site, _, model_name = folder.relative_to(base).as_posix().partition("/")
        state = {"site": site, "model": {"name": model_name}}
    model = state.get("model") if isinstance(state.get("model"), dict) else {}
    steps = state.get("steps") if isinstance(state.get("steps"), dict) else {}
    try:
        changed = datetime.fromtimestamp((folder / STATE).stat().st_mtime)
    except OSError:
        return None
    return KeptSiteRun(folder=folder.relative_to(base).as_posix(), site=str(state.get("site", "")),
                       model=str(model.get("name", "")), steps=tuple(s for s in ("validate", "calibrate", "adapt")
                                                                    if s in steps),
                       size_bytes=_size(folder), changed_at=changed)


def _size(folder: Path) -> int:
    """Bytes of the files in `folder`, without a nested run's (listed on its own)."""
    total = 0
    for root, dirs, files in os.walk(folder):  # os.walk follows no links to folders
        dirs[:] = [d for d in dirs if not os.path.isfile(os.path.join(root, d, STATE))]
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                pass
    return total


def _remove_if_empty(folder: Path, base: Path) -> None:
    """The SITE folder that held a deleted SITE/MODEL run, when nothing else is in it (never `base` itself)."""
    if folder.resolve() != base.resolve():
        try:
            folder.rmdir()
        except OSError:
            pass  # other runs of the site are in it
