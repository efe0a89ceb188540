"""The run state (RUN_DIR/state.json): config, splits, epochs reached, history and best validation loss,
written atomically after every epoch so that a killed run resumes from its last finished epoch.

The JSON is the same as before the state became a dataclass, so older run dirs resume; keys this version
does not know are kept as they are (`extra`)."""

from __future__ import annotations

import json
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from pathlib import Path

from ..errors import BrainclfError, ConfigError, DataError
from ..files import write_json_atomically
from ..input import InputContract
from .config import TrainConfig

STATE_FILE = "state.json"
# Absent from the JSON while None: a single run's state has no members, an ensemble's combined state no
# patience or best validation loss, and stopped_reason is written only once a run is stopped on request.
_OMITTED_WHEN_NONE = ("best_val_loss", "patience", "stopped_reason", "distribution", "members", "published")


@dataclass
class RunState:
    config: dict  # TrainConfig.to_dict()
    contract: dict  # InputContract.to_dict()
    train_files: list[str]  # sample keys (brainclf.data.sources.sample_key)
    val_files: list[str]
    test_files: list[str]
    fingerprint: dict
    started: str
    external_test_files: dict = field(default_factory=dict)  # extra source name -> held-out sample keys
    sources: list = field(default_factory=list)
    epoch: int = 0  # epochs finished
    best_epoch: int = 0
    stopped_early: bool = False
    history: dict = field(default_factory=dict)
    train_seconds: float = 0.0  # summed per finished epoch, over every session of the run
    best_val_loss: float | None = None
    patience: int | None = None
    stopped_reason: str | None = None
    distribution: dict | None = None  # strategy, workers and replicas of the latest training session
    members: list | None = None  # an ensemble's members (their run dirs, seeds, epochs)
    content_sha256: str = ""  # a sample of the split's files, bytes and all (prepare.content_sha256); "" before
    # When its model was saved ("" until then; None: a state from before this was recorded, taken as saved).
    published: str | None = None
    started_by: dict = field(default_factory=dict)  # who started it in the app (brainclf.model.maker_record)
    extra: dict = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: dict) -> RunState:
        if not isinstance(data, dict):
            raise DataError("The run state is not a JSON object; start over with --no-resume (the app sets an "
                            "unreadable run aside itself).")
        known = {f.name for f in fields(cls)} - {"extra"}
        try:
            state = cls(**{k: v for k, v in data.items() if k in known},
                        extra={k: v for k, v in data.items() if k not in known})
        except TypeError as e:
            raise DataError(f"The run state is incomplete ({e}); start over with --no-resume.") from None
        if wrong := state._wrong_fields():
            raise DataError(f"The run state's {', '.join(wrong)} {'is' if len(wrong) == 1 else 'are'} not what a run "
                            "saves (edited by hand?); start over with --no-resume.")
        return state

    def _wrong_fields(self) -> list[str]:
        """The fields whose JSON types are not the ones a run saves (a hand-edited state would fail later with a
        traceback, or resume from a bogus epoch)."""
        def number(v):
            return isinstance(v, (int, float)) and not isinstance(v, bool)

        checks = {"config": isinstance(self.config, dict), "contract": isinstance(self.contract, dict),
                  "fingerprint": isinstance(self.fingerprint, dict),
                  "external_test_files": isinstance(self.external_test_files, dict),
                  "sources": isinstance(self.sources, list), "started_by": isinstance(self.started_by, dict),
                  "stopped_early": isinstance(self.stopped_early, bool),
                  "content_sha256": isinstance(self.content_sha256, str),
                  "published": self.published is None or isinstance(self.published, str),
                  "train_seconds": number(self.train_seconds),
                  "best_val_loss": self.best_val_loss is None or number(self.best_val_loss),
                  "history": isinstance(self.history, dict) and all(
                      isinstance(v, list) and all(map(number, v)) for v in self.history.values())}
        for name in ("train_files", "val_files", "test_files"):
            files = getattr(self, name)
            checks[name] = isinstance(files, list) and all(isinstance(f, str) for f in files)
        for name in ("epoch", "best_epoch"):
            value = getattr(self, name)
            checks[name] = isinstance(value, int) and not isinstance(value, bool) and value >= 0
        return [name for name, ok in checks.items() if not ok]

    def to_dict(self) -> dict:
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "extra"}
        for k in _OMITTED_WHEN_NONE:
            if out[k] is None:
                del out[k]
        for k in ("content_sha256", "started_by"):  # a state saved before they existed reads back as it was
            if not out[k]:
                del out[k]
        return {**out, **self.extra}

    @classmethod
    def load(cls, run_dir: Path) -> RunState | None:
        """The state saved in `run_dir`, or None when it holds none."""
        path = Path(run_dir) / STATE_FILE
        if not path.exists():
            return None
        try:
            return cls.from_dict(json.loads(path.read_text()))
        except (ValueError, RecursionError) as e:  # not JSON (a disk filled mid-write by an older version)
            raise DataError(f"The run state {path} cannot be read ({type(e).__name__}); start over with "
                            "--no-resume.") from None

    def save(self, run_dir: Path) -> None:
        write_json_atomically(Path(run_dir) / STATE_FILE, self.to_dict())

    def train_config(self) -> TrainConfig:
        """The run's settings; DataError when they are not this version's (a key it does not know)."""
        try:
            return TrainConfig(**self.config)
        except TypeError as e:
            raise DataError(f"The run's settings are not this version's ({e}); start over with --no-resume.") from None

    def finished(self, epochs: int) -> bool:
        return self.epoch >= epochs or self.stopped_early

    def stop(self, reason: str | None = None) -> None:
        """Mark the run finished before its last epoch (early stopping when no reason is given)."""
        self.stopped_early = True
        if reason is not None:
            self.stopped_reason = reason

    def append_history(self, values: dict[str, float]) -> None:
        for k, v in values.items():
            self.history.setdefault(k, []).append(float(v))


def saved_state(run_dir: Path, config: TrainConfig, resume: bool) -> RunState | None:
    """The run's saved state (None if none, or not resuming); refuses one saved with another config."""
    state = RunState.load(run_dir) if resume else None
    # Compared through TrainConfig so runs saved before a field existed match its default.
    if state and state.train_config().to_dict() != config.to_dict():
        raise ConfigError(f"{run_dir} holds a run with a different config; pass --no-resume to start over "
                          "or use another model name.")
    # The saved contract is what finalising builds, evaluates and describes the model with: it must be the one the
    # epochs trained with (through InputContract, so a state saved before a contract field existed matches).
    if state and InputContract.from_dict(state.contract).to_dict() != config.contract().to_dict():
        raise DataError(f"{run_dir}'s run state names another input contract than its settings give (edited by "
                        "hand?); pass --no-resume to start over.")
    return state


def unfinished_run(run_dir: Path) -> tuple[RunState, TrainConfig] | None:
    """The run's state and settings when it holds a readable state with epochs still to train, or every epoch
    trained but its model not saved (the final evaluation failed, or the server stopped during it); not an
    ensemble's (those are not resumed from the app); else None."""
    if not (run_dir / "state.json").is_file():
        return None
    try:
        state = RunState.load(run_dir)
        config = state.train_config()
        ensemble = len(config.member_configs()) > 1
    except (BrainclfError, OSError):  # unreadable, or another version's: a new start of that name sets it aside
        return None
    # Saved (or finished before saves were recorded), or an ensemble: nothing to resume here.
    done = state.finished(config.epochs) and state.published != ""
    return None if done or ensemble else (state, config)


def name_held_by_a_run(runs_root: str | Path, name: str, except_folder: Path | None = None) -> bool:
    """Whether an unfinished training of model `name` under `runs_root` (the app's: a folder per user; the
    command line's: runs_root/NAME) can still be resumed, outside `except_folder`: its model will take the name,
    and a model published under it meanwhile would leave that Resume refused for good."""
    root = Path(runs_root)
    if not root.is_dir():
        return False
    skip = except_folder.resolve() if except_folder is not None else None
    folders = [root, *sorted(f for f in root.iterdir() if f.is_dir())]
    return any(folder.resolve() != skip and unfinished_run(folder / name) is not None for folder in folders)


@contextmanager
def refused_leaves_no_state(run_dir: Path, state: RunState, new: bool):
    """A new run refused before its first epoch (its name taken, its batches too big for memory) takes its saved
    state away again: left behind, it made the corrected command read "holds a run with a different config". A
    cancel, or a refusal once an epoch is saved, keeps it (there is something to resume)."""
    try:
        yield
    except BrainclfError:
        if new and state.epoch == 0:
            (Path(run_dir) / STATE_FILE).unlink(missing_ok=True)
        raise
