"""Ensembles: each member trains as its own resumable run in RUN_DIR/member<k>, one after the other, on one
shared split; then the members are combined into one model and one card."""

from __future__ import annotations

import time
from contextlib import nullcontext
from dataclasses import replace
from pathlib import Path

from ..errors import ConfigError, DataError
from . import distributed
from .config import ProgressHook, TrainConfig, TrainProgress, evaluation_reporter
from .finalize import finalize_model
from .folder_lock import held_alone
from .request import TrainRequest
from .state import RunState, saved_state


def train_ensemble(request: TrainRequest, train) -> Path:
    """Train the members, then combine them (`train` is brainclf.training.train, passed in by it: the loop
    dispatches ensembles here and this trains each member with it). The progress hook sees one long run (the
    epochs of all members)."""
    run_dir = request.run_path()
    chief = request.strategy != "multiworker" or distributed.worker_role().chief
    # The members hold their own folders while they train; the chief holds the ensemble's for all of it (its
    # combined state and model are written there).
    with held_alone(run_dir, f"A training is running in {run_dir} (in the app or another shell): wait for it to "
                    "end or cancel it; nothing was done.") if chief else nullcontext():
        return _train_ensemble(request, train, run_dir)


def _train_ensemble(request: TrainRequest, train, run_dir: Path) -> Path:
    config, progress = request.config, request.progress
    saved_state(run_dir, config, request.resume)  # refuses a run dir holding another config
    members = config.member_configs()
    check_members(run_dir, members, request.resume, request.finish_now)
    dirs = [train(request.member(k, member, _member_hook(progress, k, len(members), config.epochs)))
            for k, member in enumerate(members)]
    if request.strategy == "multiworker" and not distributed.worker_role().chief:
        return run_dir  # the chief combines the members and writes the model
    state = combined_state(config, run_dir, dirs)
    state.save(run_dir)
    total, t0 = len(members) * config.epochs, time.time()
    report = evaluation_reporter(progress, lambda: time.time() - t0, epoch=total, epochs=total)
    report(0.0, "combining the members")
    out = finalize_model(run_dir, state, request.root, request.name, Path(request.models_dir), request.sources, report)
    if progress:
        progress(TrainProgress("done", message=f"Saved {out}"))
    return out


def check_members(run_dir: Path, members: list[TrainConfig], resume: bool, finish_now: bool) -> None:
    """Every member is checked before any is touched: finishing member 1 and then refusing member 2 would
    leave member 1 cut short for good."""
    for k, member in enumerate(members):
        member_state = saved_state(run_dir / f"member{k}", member, resume)
        if finish_now and not (member_state and member_state.epoch):
            raise ConfigError(f"Member {k + 1} of {len(members)} in {run_dir} has not trained an epoch yet: an "
                              "ensemble needs all its members. Resume without --finish-now to train it.")


def _member_hook(progress: ProgressHook | None, k: int, n: int, epochs: int) -> ProgressHook:
    """Member k's reports as part of one run of n * epochs epochs."""
    def hook(p: TrainProgress) -> None:
        if progress:
            progress(replace(p, epoch=k * epochs + p.epoch, epochs=n * epochs, first_epoch=k * epochs + p.first_epoch,
                             message=f"member {k + 1}/{n}: {p.message}" if p.message else p.message))
    return hook


def combined_state(config: TrainConfig, run_dir: Path, dirs: list[Path]) -> RunState:
    """The ensemble's state: the members' shared split, their summed time, each member's own record."""
    states = [RunState.load(d) for d in dirs]
    first = states[0]
    if any(s.val_files != first.val_files or s.train_files != first.train_files for s in states):
        raise DataError(f"The members in {run_dir} were trained on different splits; start over with --no-resume.")
    return RunState(
        config=config.to_dict(), contract=first.contract, train_files=first.train_files,
        val_files=first.val_files, test_files=first.test_files, external_test_files=first.external_test_files,
        sources=first.sources, fingerprint=first.fingerprint, epoch=first.epoch, best_epoch=first.best_epoch,
        stopped_early=any(s.stopped_early for s in states),
        stopped_reason="; ".join(f"member {k}: {s.stopped_reason or 'early stopping'}"
                                 for k, s in enumerate(states) if s.stopped_early),
        history=first.history, train_seconds=sum(s.train_seconds for s in states), started=first.started,
        distribution=first.distribution, started_by=first.started_by,
        members=[{"run_dir": str(d), "seed": s.config["seed"], "epochs_run": s.epoch, "best_epoch": s.best_epoch,
                  "best_val_loss": s.best_val_loss, "train_seconds": round(s.train_seconds, 1), "history": s.history}
                 for d, s in zip(dirs, states)])
