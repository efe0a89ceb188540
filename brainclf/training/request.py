"""TrainRequest: one training run as asked for (what to train, on what, where to write, how to run it), the one
argument of brainclf.training.train."""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, replace
from pathlib import Path

from ..data.sources import Source
from ..errors import ConfigError
from ..model import backend
from .config import ProgressHook, TrainConfig, runs_dir


@dataclass(frozen=True)
class TrainRequest:
    """Train `config` on the dataset at `data` and save `models_dir/<name>.keras` with its card.

    `strategy` picks a tf.distribute strategy: "default" (one device), "mirrored" (all GPUs of this machine,
    synchronous data parallelism) or "multiworker" (several machines, configured by TF_CONFIG; trained by
    brainclf.training.distributed's loop; only the chief writes the run dir and the model, the other workers return
    the run dir after training). The batch size is the global batch, split across replicas.
    `finish_now` ends an interrupted run where it stands (out of time, say): its best checkpoint so far becomes
    the model, and the card says so. `finalize=False` stops after training and returns the run directory
    (ensemble members). `extra_data` adds labelled folders of other sources (their names and weights must match
    config.extra_sources); each is split by case groups and contributes to train, validation and a held-out test
    part that the card reports as external validation. `run_dir` defaults to runs_dir()/<name>; `resume=False`
    refuses a run dir that holds a state instead of resuming it.
    """

    config: TrainConfig
    data: str | os.PathLike
    name: str
    models_dir: str | os.PathLike = "models"
    progress: ProgressHook | None = None
    cancel: threading.Event | None = None
    resume: bool = True
    run_dir: str | os.PathLike | None = None
    strategy: str = "default"
    finish_now: bool = False
    finalize: bool = True
    extra_data: list[Source] | tuple[Source, ...] = ()
    started_by: dict | None = None  # who started it in the app (brainclf.model.maker_record), kept in its card

    @property
    def root(self) -> Path:
        """The primary dataset's folder."""
        return Path(self.data)

    @property
    def sources(self) -> list[Source]:
        return list(self.extra_data or [])

    def check_strategy(self) -> None:
        """ConfigError for a strategy this backend or this config cannot train with."""
        backend.check_supported(self.strategy)  # KERAS_BACKEND=jax trains on one device, without tf.distribute
        if self.strategy == "multiworker" and self.config.one_hot_labels():  # its replica step takes class indices
            raise ConfigError("--strategy multiworker trains on class indices: train on one machine for mixup or "
                              "label smoothing.")

    def run_path(self) -> Path:
        return Path(self.run_dir) if self.run_dir else runs_dir() / self.name

    def member(self, k: int, config: TrainConfig, progress: ProgressHook) -> TrainRequest:
        """Ensemble member k: its own resumable run in RUN_DIR/member<k>, not finalised."""
        return replace(self, config=config, name=f"{self.name}-member{k}", progress=progress,
                       run_dir=self.run_path() / f"member{k}", finalize=False)
