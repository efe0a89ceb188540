"""A user's trainings that a server restart interrupted.

The app keeps its one job in memory, so after a restart the Model page no longer knows that a training was
running; its run folder (per user: brainclf.serving.jobs.owner_run_dir) still holds the state saved after every
epoch. `interrupted_runs` finds those folders, and `resume_interrupted` starts one again where it stopped, with
the settings, data folder and other sources its state records, so that nobody has to re-enter them exactly.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from ..data.sources import Source
from ..errors import BrainclfError, ConfigError
from ..input.limits import validate_model_name
from ..training.config import TrainConfig
from ..training.folder_lock import SET_ASIDE, held_alone, move_aside
from ..training.state import name_held_by_a_run, unfinished_run
from .jobs import JobStatus, TrainingJobs, owner_run_dir

logger = logging.getLogger(__name__)


@dataclass
class InterruptedRun:
    name: str  # the model name it trains
    run_dir: Path  # RUNS/user-<hash>/NAME: its folder's parent names its owner by a hash, never by the id
    config: TrainConfig
    epoch: int  # epochs finished
    data: str  # the name of its data folder (brainclf.serving.settings: a configured root)
    extra: list[tuple[str, float]]  # the other sources it learns from: (folder name, loss weight)
    to_save: bool = False  # every epoch trained, its model not saved: a resume goes straight to saving it


def interrupted_runs(runs_root: str | Path, owner: str | None, current: JobStatus | None = None,
                     exclude: Path | None = None) -> list[InterruptedRun]:
    """`owner`'s run folders (None: every user's, for an admin) holding a readable state with epochs still to
    train or a model still to save (training.state.unfinished_run), by name; not the `current` job's own folder
    (the page offers that one's resume beside its status), nor the runs in `exclude` (a user's folder listed
    apart)."""
    # An admin's list: the app's users' folders and the runs folder itself (the command line's RUNS/NAME).
    bases = [owner_run_dir(runs_root, owner, "")] if owner is not None else \
        [Path(runs_root), *sorted(p for p in Path(runs_root).glob("user-*") if p.is_dir())]
    shown = current.run_dir.resolve() if current is not None and current.run_dir is not None else None
    found = []
    bases = [b for b in bases if exclude is None or b.resolve() != Path(exclude).resolve()]
    for run_dir in [d for base in bases if base.is_dir() for d in sorted(base.iterdir())]:
        if SET_ASIDE in run_dir.name or run_dir.resolve() == shown or (unfinished := unfinished_run(run_dir)) is None:
            continue
        state, config = unfinished
        data = (state.fingerprint or {}).get("root_name", "")
        extra = [(s["name"], float(s.get("weight", 1.0))) for s in state.sources or [] if not s.get("primary")]
        found.append(InterruptedRun(run_dir.name, run_dir, config, state.epoch, data, extra,
                                    state.finished(config.epochs)))
    return found


def name_in_use(jobs: TrainingJobs, runs_root: str | Path, name: str, owner: str = "") -> str | None:
    """Why a new model (an upload, or a training by `owner`) may not take `name` now, or None: the app's job of
    that name runs or can be resumed, or someone else's unfinished training of that name is kept to resume (its
    model will take the name: giving it away would leave that person's Resume refused for good)."""
    try:
        validate_model_name(name)
    except ConfigError:
        return None  # no run folder has such a name; the caller's own check refuses it
    if jobs.holds_name(name) and (not owner or jobs.status.owner != owner):
        return f"a training named {name} is running or can be resumed, and its model will take that name"
    if name_held_by_a_run(runs_root, name, except_folder=owner_run_dir(runs_root, owner, "") if owner else None):
        return f"an unfinished training named {name} can still be resumed, and its model will take that name"
    return None


def resume_interrupted(jobs: TrainingJobs, run: InterruptedRun, roots: list[Path], models_dir: str | Path,
                       owner: str, owner_label: str = "") -> JobStatus:
    """Start `run` again from its last epoch, on the data folders among `roots` (the server's) of the names its
    state records.

    Raises:
        BrainclfError: a folder it learnt from is no longer offered, or jobs.start refuses (one running, the name
            taken by a model).
    """
    by_name = {Path(r).name: Path(r) for r in roots}
    try:
        data = by_name[run.data]
        extra = tuple(Source(name, by_name[name], weight) for name, weight in run.extra)
    except KeyError:
        names = ", ".join([run.data] + [n for n, _ in run.extra])
        raise BrainclfError(f"Training {run.name} learnt from {names}; this server no longer offers all of them, "
                            "so it cannot be resumed here.") from None
    return jobs.start(run.config, data, run.name, models_dir, owner=owner, owner_label=owner_label,
                      run_dir=run.run_dir, extra_data=extra, resuming=True)


def discard_interrupted(name: str, run_dir: Path, jobs: TrainingJobs, by: str = "") -> Path:
    """Set the run of model `name` in `run_dir` aside (renamed NAME.set-aside-…-discarded beside it, nothing
    deleted: an admin may still look), so it no longer offers a resume nor holds its model name; `by`: who asked,
    for the log. The folder it moved to.

    Raises:
        BrainclfError: the app's job runs on it, another process (the CLI) trains in it, or it is gone already.
    """
    status = jobs.status
    if status is not None and status.active and status.run_dir is not None and \
            Path(status.run_dir).resolve() == Path(run_dir).resolve():
        raise BrainclfError(f"Training {name} is running: cancel it first; nothing was discarded.")
    with held_alone(run_dir, f"Training {name} is running in another process; nothing was discarded."):
        if not (Path(run_dir) / "state.json").is_file():  # another tab, or an admin, was first
            raise BrainclfError(f"Training {name} is no longer there (discarded already?); nothing was discarded.")
        aside = move_aside(Path(run_dir), "-discarded")
    logger.info("unfinished training %s (%s) set aside by %s", name, Path(run_dir).parent.name, by or "-")
    return aside
