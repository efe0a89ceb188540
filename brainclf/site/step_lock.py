"""One step at a time on a site run, whoever starts it: the app's job, another app process on the same server or
the CLI. Two steps on one run folder would write its split, its epochs and its record over each other, so the
second is refused at once with a message (an OS file lock: it goes with the process that held it, even one that
was killed, so a crash never leaves a run locked)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock, Timeout

from ..errors import BrainclfError

LOCK_FILE = ".step.lock"


class StepRunning(BrainclfError):
    """A step of the same site run is running elsewhere."""


@contextmanager
def one_step_at_a_time(run_dir: str | Path, doing: str = "start another step") -> Iterator[None]:
    """Hold the run folder's step lock for the body (the folder is made if missing).

    Raises:
        StepRunning: another step (another process or job) holds it; nothing was done.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    lock = FileLock(run_dir / LOCK_FILE, timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise StepRunning(f"A step of this site run ({run_dir.name}) is running (in the app or from the command "
                          f"line): wait for it to finish or cancel it, then {doing}; nothing was done.") from None
    try:
        yield
    finally:
        lock.release()
