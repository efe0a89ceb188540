"""Background training for the app: one job at a time per process, off the script thread, cancellable.

The app keeps one TrainingJobs instance for the whole process (st.cache_resource), so every session
sees the same job, and a training never blocks another session's predictions.
"""

from __future__ import annotations

import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

from .errors import BrainclfError
from .train import TrainConfig, TrainingCancelled, TrainProgress, train


@dataclass
class JobStatus:
    name: str
    state: str = "starting"  # starting, running, done, failed, cancelled
    progress: TrainProgress | None = None
    result: Path | None = None
    error: str = ""
    started: float = field(default_factory=time.time)

    @property
    def active(self) -> bool:
        return self.state in ("starting", "running")


class TrainingJobs:
    def __init__(self):
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._cancel = threading.Event()
        self.status: JobStatus | None = None

    def busy(self) -> bool:
        with self._lock:
            return self.status is not None and self.status.active

    def start(self, config: TrainConfig, data: str | Path, name: str, models_dir: str | Path = "models") -> JobStatus:
        """Start a training in a background thread; refuses a second one while the first runs."""
        config.validate()  # bad settings fail here, in the caller, with a clear message
        with self._lock:
            if self.status is not None and self.status.active:
                raise BrainclfError(f"A training ({self.status.name}) is already running in this app; "
                                    "wait for it or cancel it first.")
            self._cancel = threading.Event()
            status = JobStatus(name=name)
            self.status = status
            cancel = self._cancel

        def hook(p: TrainProgress):
            status.progress = p
            if p.stage in ("preparing", "training", "evaluating"):
                status.state = "running"

        def run():
            try:
                status.result = train(config, data, name, models_dir=models_dir, progress=hook, cancel=cancel)
                status.state = "done"
            except TrainingCancelled as e:
                status.state, status.error = "cancelled", str(e)
            except BrainclfError as e:
                status.state, status.error = "failed", str(e)
            except Exception as e:  # noqa: BLE001 - a crash in the thread must reach the user, not vanish
                status.state = "failed"
                status.error = f"{type(e).__name__}: {e}\n{traceback.format_exc(limit=3)}"

        self._thread = threading.Thread(target=run, name=f"train-{name}", daemon=True)
        self._thread.start()
        return status

    def cancel(self) -> None:
        self._cancel.set()

    def wait(self, timeout: float | None = None) -> JobStatus | None:
        if self._thread is not None:
            self._thread.join(timeout)
        return self.status
