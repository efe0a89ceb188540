"""One call to train(): the request, where this process reads and writes the run, this worker's role, and the
run folder held for it alone (brainclf.training.folder_lock: a second training there, from another process,
is refused)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from . import distributed
from .config import ProgressHook, TrainProgress
from .request import TrainRequest


@dataclass
class Session:
    """One call to train(): the request, where it reads and writes, this worker's role."""

    request: TrainRequest
    run_dir: Path  # the run's folder (read on every worker)
    write_dir: Path  # where this process writes: run_dir, or a scratch copy on a non-chief worker
    role: distributed.WorkerRole | None  # None unless --strategy multiworker
    t0: float

    @classmethod
    def open(cls, request: TrainRequest) -> Session:
        run_dir = request.run_path()
        # Several workers read the chief's run dir; only the chief writes it, the others write a scratch copy.
        role = distributed.worker_role() if request.strategy == "multiworker" else None
        write_dir = role.write_dir(run_dir) if role else run_dir  # made by train() as it holds it (folder_lock)
        return cls(request, run_dir, write_dir, role, time.time())

    @property
    def hook(self) -> ProgressHook | None:
        return self.request.progress

    @property
    def strategy(self) -> str:
        return self.request.strategy

    def say(self, stage: str, message: str, **kw) -> None:
        if self.hook:
            self.hook(TrainProgress(stage, message=message, elapsed_s=time.time() - self.t0, **kw))
