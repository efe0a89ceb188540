"""Background training for the app: one job at a time per process, off the script thread, cancellable. A thread
watches each job; the work itself (a training, a site step) runs in a process of its own (training.isolated).

The app keeps one TrainingJobs instance for the whole process (st.cache_resource), so every session
sees the same job, and a training never blocks another session's predictions.

Every job has an owner (the user id of whoever started it): only the owner or an admin may cancel it, or resume
it once cancelled or interrupted (a failed run whose run dir holds a state: train() goes on from there). A
training that crashes keeps one line for users; its traceback goes to the server log (logging), never into
the status that pages show.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from ..data.sources import Source
from ..errors import BrainclfError, ConfigError, DataError
from ..input.limits import validate_model_name
from ..model.uploads import maker_record

# Not brainclf.training itself: its loop imports TensorFlow, which the app's server process never loads (a job's
# own process does: training.isolated).
from ..training.config import TrainConfig, TrainingCancelled, TrainProgress, runs_dir
from ..training.folder_lock import held_alone, move_aside
from ..training.isolated import run_isolated, train_job
from ..training.prepare import check_sources, saved_split
from ..training.request import TrainRequest
from ..training.state import saved_state

logger = logging.getLogger(__name__)


def owner_run_dir(runs_root: str | Path, owner: str, name: str) -> Path:
    """Where the app keeps `owner`'s run `name`: a folder per user (named by a hash of the user id), so the same
    model name and settings started by someone else begin afresh instead of resuming, and then owning, this
    user's cancelled run."""
    folder = f"user-{hashlib.sha256(owner.encode()).hexdigest()[:16]}" if owner else "no-owner"
    return Path(runs_root) / folder / name


def train(request: TrainRequest) -> Path:
    """brainclf.training.train in a process of its own (training.isolated: TensorFlow loads there, its memory is
    capped, the server carries on if it fails); its progress and a cancel pass between the two."""
    return run_isolated(train_job, (replace(request, progress=None, cancel=None),), hook=request.progress,
                        cancel=request.cancel, label=f"training {request.name}")


def _stat(path: Path) -> tuple[float, int] | None:
    try:
        st = path.stat()
        return st.st_mtime_ns, st.st_size
    except OSError:
        return None


def set_aside_other_run(run_path: Path, config: TrainConfig,
                        data: tuple[Path, tuple[Source, ...]] | None = None) -> Path | None:
    """A cancelled or failed training of this name saved with other settings (an ensemble's members included),
    with a state this version cannot read, or (given `data`: this start's data folder and extra sources) on other
    data (files missing there, or other images under the same names): moved aside (nothing lost), so a new start
    trains afresh instead of failing on, or resuming onto, the old run. The folder it moved to."""
    if not run_path.exists():
        return None
    # Held while deciding and moving: a training running in it (another app process, the CLI) keeps its folder.
    with held_alone(run_path, f"A training is running in {run_path.name} (another app process or a shell): wait "
                    "for it to end or cancel it; nothing was started."):
        if _same_run(run_path, config, data):
            return None  # the same settings and data: the new start resumes it
        return move_aside(run_path)



def _run_places(run_path: Path, config: TrainConfig) -> list[tuple[Path, TrainConfig]]:
    """Where a run of `config` keeps a state: its folder, and an ensemble's member folders."""
    members = config.member_configs()
    return [(run_path, config)] + ([(run_path / f"member{k}", m) for k, m in enumerate(members)]
                                   if len(members) > 1 else [])


def _same_run(run_path: Path, config: TrainConfig, data: tuple[Path, tuple[Source, ...]] | None = None) -> bool:
    """True when `run_path` holds nothing, or only states saved with `config` (member states of its members) whose
    split is found, bytes and all, in `data` when given."""
    if not run_path.exists():
        return True
    if len(config.member_configs()) == 1 and any(run_path.glob("member*/state.json")):
        return False  # an ensemble's members, and now a single model
    try:
        for place, expected in _run_places(run_path, config):
            state = saved_state(place, expected, resume=True)
            if state is not None and data is not None:
                saved_split(state, data[0], list(data[1]))
    except (ConfigError, DataError):  # other settings or data, or a state this version cannot read
        return False
    return True


def _check_shown(status: JobStatus | None, started: float | None, what: str) -> None:
    """Refuse to act on another job than the one a page showed (JobStatus.started); None: no page involved."""
    if started is not None and (status is None or status.started != started):
        raise BrainclfError(f"That job has ended and another has started since this page was drawn; nothing was "
                            f"{what}. Look again at the job shown now.")


@dataclass
class JobStatus:
    name: str
    state: str = "starting"  # starting, running, done, failed, cancelled
    progress: TrainProgress | None = None
    result: Path | None = None
    error: str = ""  # one line for users; never a traceback
    started: float = field(default_factory=time.time)
    owner: str = ""  # user id of whoever started it (brainclf.serving.access.Identity.user_id)
    owner_label: str = ""  # their name or e-mail, for the page
    run_dir: Path | None = None  # the run's folder: its state.json is the resume point
    request: dict = field(default_factory=dict, repr=False)  # config, data, models_dir: what resume() restarts
    _resumable: tuple = field(default=(None, False), repr=False)  # (key, answer) of the last check

    def may_cancel(self, user_id: str, admin: bool = False) -> bool:
        """Only the owner or an admin cancels a training, or resumes it."""
        return admin or (bool(user_id) and user_id == self.owner)

    def failure_reason(self, user_id: str, admin: bool = False) -> str | None:
        """Why it failed, for its owner and admins only (the message may name their data); None for anyone else."""
        return self.error if self.may_cancel(user_id, admin) else None

    def resumable(self) -> bool:
        """Cancelled or failed, and its run dir (or an ensemble's first member's) holds a state saved with the same
        config to go on from; for another task (a site adaptation), its own `resumable` check says."""
        if self.state not in ("cancelled", "failed") or self.run_dir is None:
            return False
        if "work" in self.request:
            return bool(self.request.get("resumable", lambda: False)())
        if "config" not in self.request:
            return False
        # The page asks every second: parse state.json again only when the job's state or the file changed.
        key = (self.state, *(_stat(d / "state.json") for d in (self.run_dir, self.run_dir / "member0")))
        if self._resumable[0] != key:
            self._resumable = (key, self._has_saved_state())
        return self._resumable[1]

    def _has_saved_state(self) -> bool:
        try:
            return any(saved_state(d, c, resume=True) is not None
                       for d, c in _run_places(self.run_dir, self.request["config"]))
        except (BrainclfError, OSError):  # another config, an unreadable or broken state: nothing to resume
            return False
        except Exception:  # noqa: BLE001 - a bug must not take the page's job panel down; the log keeps it
            logger.exception("could not read %s's run state to offer a resume", self.name)
            return False

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

    def while_no_job_starts(self, action):
        """action(the running job's run folder, or None) -> its result, called holding the jobs' lock: no job
        starts or resumes until it returns, so what it checked about the running job stays true while it acts
        (a site run deleted in one tab while another tab starts a step on it)."""
        with self._lock:
            status = self.status
            return action(status.run_dir if status is not None and status.active else None)

    def start(self, config: TrainConfig, data: str | Path, name: str, models_dir: str | Path = "models",
              owner: str = "", owner_label: str = "", run_dir: str | Path | None = None,
              extra_data: tuple[Source, ...] = (), resuming: bool = False) -> JobStatus:
        """Start a training in a background thread; refuses a second one while the first runs. `owner` (a user
        id) is the one user besides admins who may cancel it; `run_dir` defaults to train()'s; `extra_data` are
        the other labelled sources it learns from (config.extra_sources names them with their weights). A new
        start (not `resuming`) sets aside a run of this name on other data and trains afresh; a resume on other
        data is refused by train() with a message."""
        config.validate()  # bad settings fail here, in the caller, with a clear message
        check_sources(config, list(extra_data), data)
        validate_model_name(name)  # the rule train() and the card apply, before a thread is started
        if (Path(models_dir) / f"{name}.keras").exists():
            raise BrainclfError(f"A model named {name} already exists; choose another name.")
        run_path = Path(run_dir) if run_dir else runs_dir() / name

        def work(hook, cancel):
            # In the job, once start_task has refused a second one.
            set_aside_other_run(run_path, config, None if resuming else (Path(data), tuple(extra_data)))
            return train(TrainRequest(config, data, name, models_dir=models_dir, progress=hook, cancel=cancel,
                                      run_dir=run_dir, extra_data=tuple(extra_data),
                                      started_by=maker_record(owner_label, owner)))

        return self.start_task(name, work, owner, owner_label, run_path,
                               request={"config": config, "data": data, "models_dir": models_dir,
                                        "extra_data": tuple(extra_data)})

    def start_task(self, name: str, work, owner: str = "", owner_label: str = "", run_dir: Path | None = None,
                   request: dict | None = None) -> JobStatus:
        """Run `work(progress hook, cancel event) -> result path` in a background thread as this app's one job
        (a training, or a site adaptation: brainclf.site); refuses a second one while the first runs. `request`
        is what resume() restarts: a training's settings, or {"work": work, "resumable": () -> bool}."""
        with self._lock:
            if self.status is not None and self.status.active:
                raise BrainclfError(f"A training ({self.status.name}) is already running in this app; "
                                    "wait for it or cancel it first.")
            self._cancel = threading.Event()
            status = JobStatus(name=name, owner=owner, owner_label=owner_label or owner, run_dir=run_dir,
                               request=request if request is not None else {"work": work})
            self.status = status
            cancel = self._cancel

        def hook(p: TrainProgress):
            status.progress = p
            if p.stage in ("preparing", "training", "evaluating"):
                status.state = "running"

        def run():
            try:
                status.result = work(hook, cancel)
                status.state = "done"
            except TrainingCancelled as e:
                status.state, status.error = "cancelled", str(e)
            except BrainclfError as e:
                logger.warning("training %s (owner %s) failed: %s", name, owner or "-", e)
                status.state, status.error = "failed", " ".join(str(e).split())
            except BaseException as e:  # noqa: BLE001 - a crash (a SystemExit too, which would leave the job
                # "starting" and the app's one slot busy for good) must reach the log and the user; the thread ends
                logger.exception("training %s (owner %s) crashed", name, owner or "-")
                status.state = "failed"
                status.error = (f"an unexpected error ({type(e).__name__}) stopped it; the details are in the "
                                "server log.")

        self._thread = threading.Thread(target=run, name=f"train-{name}", daemon=True)
        self._thread.start()
        return status

    def holds_name(self, name: str) -> bool:
        """A job of this model name is running or can be resumed: the name is its, not an upload's."""
        with self._lock:
            status = self.status
        return status is not None and status.name == name and (status.active or status.resumable())

    def cancel(self, user_id: str, admin: bool = False, started: float | None = None) -> None:
        """Ask the running training to stop after its current batch; `started`: the JobStatus.started of the job
        the user was shown (a page drawn a second ago may show one that has ended since: another is not cancelled).

        Raises:
            BrainclfError: `user_id` neither started it nor is an admin, it is no longer the job shown, or it is in
                its final evaluation (which saves the model and cannot stop part-way).
        """
        with self._lock:
            status = self.status
            _check_shown(status, started, "cancelled")
            if status is not None and not status.may_cancel(user_id, admin):
                raise BrainclfError("Only the person who started this training, or an admin, can cancel it.")
            if status is not None and status.progress is not None and status.progress.stage == "evaluating":
                raise BrainclfError(f"{status.name} is in its final step, which saves its results; it cannot be "
                                    "cancelled now (remove the model afterwards if it is not wanted).")
            if status is not None:
                logger.info("training %s cancelled by %s", status.name, user_id or "-")
            self._cancel.set()

    def resume(self, user_id: str, admin: bool = False, started: float | None = None) -> JobStatus:
        """Start the last training again from its run dir's state (train() resumes from the last finished epoch),
        for the same owner; `started` as for cancel.

        Raises:
            BrainclfError: nothing to resume (no training, one still running, or no state to go on from), it is
                no longer the job shown, or `user_id` neither started it nor is an admin.
        """
        with self._lock:
            last = self.status
            _check_shown(last, started, "resumed")
        if last is None or not last.resumable():
            raise BrainclfError("There is no cancelled or interrupted training with a saved state to resume.")
        if not last.may_cancel(user_id, admin):
            raise BrainclfError("Only the person who started this training, or an admin, can resume it.")
        logger.info("training %s resumed by %s", last.name, user_id or "-")
        if "work" in last.request:
            return self.start_task(last.name, last.request["work"], last.owner, last.owner_label, last.run_dir,
                                   last.request)
        return self.start(last.request["config"], last.request["data"], last.name, last.request["models_dir"],
                          owner=last.owner, owner_label=last.owner_label, run_dir=last.run_dir,
                          extra_data=last.request.get("extra_data", ()), resuming=True)

    def wait(self, timeout: float | None = None) -> JobStatus | None:
        if self._thread is not None:
            self._thread.join(timeout)
        return self.status
