"""One step at a time on a site run, whoever starts it: the app's job, another app process on the same server or
the CLI. Two steps on one run folder would write its split, its epochs and its record over each other, so the
second (or a delete of the run) is refused at once with a message (brainclf.training.folder_lock)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..training.folder_lock import FolderBusy, held_alone


class StepRunning(FolderBusy):
    """A step of the same site run is running elsewhere."""


@contextmanager
def one_step_at_a_time(run_dir: str | Path, doing: str = "start another step") -> Iterator[None]:
    """Hold the run folder's lock for the body (the folder is made if missing).

    Raises:
        StepRunning: another step (another process or job) holds it; nothing was done.
    """
    busy = (f"A step of this site run ({Path(run_dir).name}) is running (in the app or from the command line): "
            f"wait for it to finish or cancel it, then {doing}; nothing was done.")
    with held_alone(run_dir, busy, StepRunning):
        yield
