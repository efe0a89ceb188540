"""An image file's bytes read from disk within the one-file limit: a regular file only (a device such as /dev/zero
or a named pipe called x.png reports a size of 0, so a size check alone would read the one without bound and wait
on the other for ever), and never more than the limit even if the file grows while it is read."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from ..errors import ImageError
from .limits import MAX_FILE_BYTES, size_text

__all__ = ["read_image_file"]


def read_image_file(path: str | os.PathLike, name: str | None = None, limit: int | None = None) -> bytes:
    """The bytes of the file at `path` (`name` in messages; its file name by default), at most `limit` bytes
    (default: limits.MAX_FILE_BYTES, read when called).

    Raises:
        ImageError: not a regular file, above `limit`, or unreadable.
    """
    name, limit = name or Path(path).name, MAX_FILE_BYTES if limit is None else limit
    try:
        # O_NONBLOCK: opening a pipe does not wait for a writer; the descriptor's own stat decides (no swap between
        # a check and the open), and it is closed here on every refusal (fdopen of a folder would leak it).
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as e:
        raise ImageError(f"{name}: cannot read file ({e.strerror or e}).") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ImageError(f"{name}: not a regular file (a device, pipe or folder); refused without reading it.")
        if info.st_size > limit:
            raise ImageError(f"{name}: the file is {size_text(info.st_size)}, above the limit of "
                             f"{size_text(limit)} for one image; refused before reading it.")
        with os.fdopen(fd, "rb", closefd=False) as f:
            data = f.read(limit + 1)
    except OSError as e:
        raise ImageError(f"{name}: cannot read file ({e.strerror or e}).") from None
    finally:
        os.close(fd)
    if len(data) > limit:
        raise ImageError(f"{name}: the file grew above the limit of {size_text(limit)} for one image while it was "
                         "read; refused.")
    return data
