"""A run folder held by one process at a time: a training, or a site run's step. Two writers in one folder would
write its state and checkpoints over each other, so the second is refused at once with a message. An OS file
lock (filelock): it goes with the process that held it, even one that was killed, so a crash never leaves a
folder locked."""

from __future__ import annotations

import secrets
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock, Timeout

from ..errors import BrainclfError

LOCK_FILE = ".in-use.lock"


class FolderBusy(BrainclfError):
    """Another process (or job) holds the folder."""


@contextmanager
def held_alone(folder: str | Path, busy: str, error: type[FolderBusy] = FolderBusy) -> Iterator[None]:
    """Hold `folder` (made if missing) for the body. A folder made here and left holding nothing but the lock by
    a body that failed (a refused request) is removed again.

    Raises:
        `error` (a FolderBusy) with the message `busy`: another process holds it; nothing was done.
    """
    folder = Path(folder)
    made = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    lock = FileLock(folder / LOCK_FILE, timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise error(busy) from None
    try:
        yield
    except BaseException:
        if made and folder.is_dir() and [p.name for p in folder.iterdir()] == [LOCK_FILE]:
            shutil.rmtree(folder, ignore_errors=True)
        raise
    finally:
        lock.release()


SET_ASIDE = ".set-aside-"


def move_aside(folder: Path, suffix: str = "") -> Path:
    """Rename a run folder to NAME.set-aside-<time>-<token><suffix> beside it (nothing deleted; never listed or
    resumed again, and its name is free); the caller holds it (held_alone). The folder it moved to."""
    aside = folder.with_name(f"{folder.name}{SET_ASIDE}{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"
                             f"{suffix}")
    folder.rename(aside)
    return aside
