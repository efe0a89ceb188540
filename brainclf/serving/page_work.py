"""Heavy work that runs inside a page rather than as the app's background job (a whole-folder evaluation,
re-measuring an uploaded model, the feature map): at most a few at once on the server. Each queues 64-image chunks
on the one model process that every clinician's prediction also waits for, so without a bound any number of
researchers' tabs would slow everyone's answers."""

from __future__ import annotations

import threading
from contextlib import contextmanager

from ..errors import BrainclfError

# Two: one researcher's evaluation and another's re-measure can run side by side; a third waits its turn.
PAGE_WORK_AT_ONCE = 2


class PageWorkSlots:
    """Process-wide slots (the app keeps one, shared by every session); a request finds one free or is refused at
    once: a page run must not block waiting for another's."""

    def __init__(self, at_once: int = PAGE_WORK_AT_ONCE):
        self.at_once = at_once
        self._slots = threading.BoundedSemaphore(at_once)

    @contextmanager
    def hold(self, what: str):
        """Run `what` (e.g. "this evaluation") in a free slot, or raise BrainclfError saying to try again."""
        if not self._slots.acquire(blocking=False):
            raise BrainclfError(f"{self.at_once} evaluations are already running on this server (they share the "
                                f"model with everyone's predictions); start {what} again when one has finished.")
        try:
            yield
        finally:
            self._slots.release()
