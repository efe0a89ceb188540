"""Training: a config dataclass, a seeded and resumable loop, and the model card at the end.

A run lives in RUNS_DIR/<model name>/ with
  state.json   config, splits, epoch reached, history, best validation loss
  last.keras   model + optimizer after the latest epoch (resume point)
  best.keras   weights with the lowest validation loss (after temperature scaling) so far
Re-running the same command resumes from the last finished epoch; a finished run only re-does the
final evaluation and card.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from . import PRECISIONS, distributed
from .data import Sample, discover, fingerprint, load_arrays, make_splits, relative_path, split_extra_source
from .errors import ConfigError, DataError
from .models import build_model, dtype_policy, ensemble_from_members, get_architecture, recalibrate_batchnorm
from .preprocess import InputContract
from .sources import Source, licence_of, sample_key
from .trust import apply_temperature, fit_temperature


@dataclass
class TrainConfig:
    architecture: str = "compact_cnn"
    image_size: int | None = None  # None: the architecture's default
    channels: int | None = None
    epochs: int = 50
    batch_size: int = 32
    learning_rate: float = 3e-3  # peak of the one-cycle schedule
    warmup_fraction: float = 0.1  # linear warm-up over this share of steps, then cosine decay to ~0
    weight_decay: float = 1e-4
    augment: bool = True
    early_stopping_patience: int = 12  # epochs without a lower validation loss
    val_fraction: float = 0.1
    seed: int = 42
    max_train_images: int | None = None  # for smoke tests: a stratified subset
    optimizer: str = "adamw"  # "adamw", or "adam" with a constant rate (the study's setting)
    # "mixed_bfloat16" trains ~1.7x faster on CPUs with bfloat16 units; the saved model is float32 either way.
    precision: str = "float32"
    split_seed: int | None = None  # seed of the train/validation split (None: `seed`); ensemble members share it
    # Extra labelled sources ({"name", "weight"}; brainclf.sources), each split by case groups into
    # train / validation / held-out test with these fractions.
    extra_sources: list = field(default_factory=list)
    extra_val_fraction: float = 0.15
    extra_test_fraction: float = 0.30
    # Random gamma, brightness and noise on top of the geometric augmentation: sources differ in windowing.
    augment_intensity: bool = False

    def contract(self) -> InputContract:
        default = get_architecture(self.architecture).default_contract
        return InputContract(size=self.image_size or default.size, channels=self.channels or default.channels)

    def validate(self) -> None:
        get_architecture(self.architecture)
        if self.epochs < 1:
            raise ConfigError(f"epochs must be at least 1, got {self.epochs}.")
        if self.batch_size < 1:
            raise ConfigError(f"batch size must be at least 1, got {self.batch_size}.")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}.")
        if self.optimizer not in ("adamw", "adam"):
            raise ConfigError(f"optimizer must be 'adamw' or 'adam', got {self.optimizer!r}.")
        if not self.learning_rate > 0:
            raise ConfigError(f"learning rate must be positive, got {self.learning_rate}.")
        if self.image_size is not None and not 32 <= self.image_size <= 1024:
            raise ConfigError(f"Input size must be between 32 and 1024 pixels, got {self.image_size}.")
        if not 0 < self.extra_val_fraction < 0.5 or not 0 < self.extra_test_fraction < 0.5:
            raise ConfigError("extra-source validation and test fractions must be between 0 and 0.5.")
        if self.channels not in (None, 1, 3):
            raise ConfigError(f"Channels must be 1 (grayscale) or 3 (RGB), got {self.channels}.")

    def to_dict(self) -> dict:
        return asdict(self)

    def effective_split_seed(self) -> int:
        return self.seed if self.split_seed is None else self.split_seed

    def member_configs(self) -> list[TrainConfig]:
        """An ensemble's members: the member architecture with seeds seed, seed+1, … and one shared split."""
        arch = get_architecture(self.architecture)
        if arch.members <= 1:
            return [self]
        return [replace(self, architecture=arch.member, seed=self.seed + k, split_seed=self.effective_split_seed())
                for k in range(arch.members)]


@dataclass
class TrainProgress:
    """Sent to the progress hook after every batch and epoch (CLI progress bar, app live charts)."""

    stage: str  # "preparing", "training", "evaluating", "done", "cancelled"
    epoch: int = 0  # epochs finished
    epochs: int = 0
    batch: int = 0
    batches: int = 0
    message: str = ""
    history: dict = field(default_factory=dict)
    elapsed_s: float = 0.0
    epoch_end: bool = False  # sent once per finished (and validated) epoch


ProgressHook = Callable[[TrainProgress], None]


def runs_dir() -> Path:
    return Path(os.environ.get("BRAINCLF_RUNS", "runs"))


def augmentation_pipeline(seed: int):
    """Mild geometric and intensity augmentation: slices vary in position, size, angle and windowing.
    Horizontal flips only: left/right is symmetric for these tumours, up/down is not how slices come."""
    import keras
    from keras import layers

    return keras.Sequential(
        [
            layers.RandomFlip("horizontal", seed=seed),
            layers.RandomRotation(0.04, fill_mode="constant", seed=seed + 1),
            layers.RandomZoom(0.1, fill_mode="constant", seed=seed + 2),
            layers.RandomTranslation(0.06, 0.06, fill_mode="constant", seed=seed + 3),
            layers.RandomContrast(0.2, seed=seed + 4),
        ],
        name="augment",
    )


def _subset(samples: list[Sample], n: int, seed: int) -> list[Sample]:
    from sklearn.model_selection import train_test_split

    if n >= len(samples):
        return samples
    labels = [s.label for s in samples]
    try:
        keep, _ = train_test_split(samples, train_size=n, stratify=labels, random_state=seed)
    except ValueError:  # too few per class to stratify
        keep, _ = train_test_split(samples, train_size=n, random_state=seed)
    return keep


@dataclass
class _EpochEnd:
    """The work after every training epoch, shared by Model.fit's callback and the multi-worker loop
    (brainclf.distributed): precise-BatchNorm validation, history, checkpoints, early stopping, state.json
    and the progress hook. `run_dir` is where this process writes (a scratch dir on non-chief workers)."""

    hook: ProgressHook | None
    state: dict
    run_dir: Path
    epochs: int
    batches: int
    t0: float
    x_recal: np.ndarray
    x_va: np.ndarray
    y_va: np.ndarray
    va_source: np.ndarray

    def begin(self) -> None:
        self.state["_epoch_start"] = time.time()

    def batch(self, batch: int) -> None:
        if self.hook:
            self.hook(TrainProgress("training", self.state["epoch"], self.epochs, batch + 1, self.batches,
                                    history=self.state["history"], elapsed_s=time.time() - self.t0))

    def __call__(self, model, epoch: int, logs: dict) -> bool:
        """Validate and checkpoint the finished epoch (0-based) with its training `logs` (loss, accuracy);
        True when early stopping ends training."""
        state, x_va, y_va, va_source = self.state, self.x_va, self.y_va, self.va_source
        # Validate with precise BatchNorm statistics: the moving averages trail the weights at a
        # high learning rate (measured: 82 % validation accuracy with them, 96 % recalibrated).
        recalibrate_batchnorm(model, self.x_recal)
        probs = np.concatenate([np.asarray(model(x_va[i:i + 128], training=False))
                                for i in range(0, len(x_va), 128)])
        loss = -np.log(np.clip(probs[np.arange(len(y_va)), y_va], 1e-7, 1.0))
        correct = probs.argmax(1) == y_va
        names = sorted(set(va_source.tolist()))
        # Each source counts equally in model selection, however many images it brings.
        logs["val_loss"] = float(np.mean([loss[va_source == n].mean() for n in names]))
        logs["val_accuracy"] = float(np.mean([correct[va_source == n].mean() for n in names]))
        # Checkpoints are chosen on the loss after temperature scaling, as the model will run: late epochs
        # grow over-confident on a small, hard source and their raw loss rises while their accuracy does not
        # (measured on the first multi-source run: raw loss picked epoch 15 of 40, 94.9 % on Kaggle validation).
        calibrated = apply_temperature(probs, fit_temperature(y_va, probs))
        closs = -np.log(np.clip(calibrated[np.arange(len(y_va)), y_va], 1e-7, 1.0))
        logs["val_loss_calibrated"] = float(np.mean([closs[va_source == n].mean() for n in names]))
        if len(names) > 1:
            for n in names:
                state["history"].setdefault(f"val_loss[{n or 'primary'}]", []).append(
                    float(loss[va_source == n].mean()))
                state["history"].setdefault(f"val_accuracy[{n or 'primary'}]", []).append(
                    float(correct[va_source == n].mean()))
        for k in ("loss", "accuracy", "val_loss", "val_accuracy", "val_loss_calibrated"):
            state["history"].setdefault(k, []).append(float(logs.get(k, float("nan"))))
        state["history"].setdefault("lr", []).append(float(np.asarray(model.optimizer.learning_rate)))
        state["epoch"] = epoch + 1
        now = time.time()
        # Per epoch, so a killed and resumed run still counts every finished epoch's time.
        state["train_seconds"] += now - state.pop("_epoch_start", now)
        val_loss = float(logs.get("val_loss_calibrated", float("inf")))
        if val_loss < state["best_val_loss"]:
            state["best_val_loss"] = val_loss
            state["best_epoch"] = epoch + 1
            _save(model, self.run_dir / "best.keras")
        _save(model, self.run_dir / "last.keras")  # with optimizer: the resume point
        stop = state["epoch"] - state["best_epoch"] >= state["patience"]
        if stop:
            state["stopped_early"] = True
        _write_state(self.run_dir, state)
        if self.hook:
            self.hook(TrainProgress("training", state["epoch"], self.epochs, self.batches, self.batches,
                                    history=state["history"], elapsed_s=time.time() - self.t0, epoch_end=True))
        return stop


def _save(model, path: Path) -> None:
    """Save through a temporary file: a process killed mid-save leaves the previous checkpoint intact."""
    tmp = path.with_name(f".{path.stem}.tmp.keras")
    model.save(tmp)
    tmp.replace(path)


def _fit_callback(end: _EpochEnd, cancel: threading.Event | None):
    """Model.fit's callback around `end` (built here to keep keras out of module import time)."""
    import keras

    class Cb(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            end.begin()

        def on_train_batch_end(self, batch, logs=None):
            if cancel is not None and cancel.is_set():
                self.model.stop_training = True
            end.batch(batch)

        def on_epoch_end(self, epoch, logs=None):
            if cancel is not None and cancel.is_set():
                return  # a cancelled epoch is incomplete: keep the last finished one as resume point
            if end(self.model, epoch, logs if logs is not None else {}):
                self.model.stop_training = True

    return Cb()


def _roots(root: Path, sources: list[Source]) -> dict[str, Path]:
    return {"": Path(root), **{s.name: Path(s.root) for s in sources}}


def _key(s: Sample, roots: dict[str, Path]) -> str:
    return sample_key(s.source, relative_path(s.path, roots[s.source]))


def _index_samples(root: Path, sources: list[Source]) -> dict[str, Sample]:
    """Every sample of the primary folder and the extra sources, by its run-state key."""
    roots = _roots(root, sources)
    samples = discover(root).all_samples()
    for src in sources:
        samples += discover(src.root, source=src.name).all_samples()
    return {_key(s, roots): s for s in samples}


def _check_sources(config: TrainConfig, sources: list[Source]) -> None:
    given = [{"name": s.name, "weight": float(s.weight)} for s in sources]
    if given != [{"name": d["name"], "weight": float(d["weight"])} for d in config.extra_sources]:
        raise ConfigError("The extra data folders given do not match the config's extra_sources.")
    names = [s.name for s in sources]
    if len(set(names)) != len(names):
        raise ConfigError(f"Each --extra-data folder needs its own name; got {names}.")


def _saved_state(run_dir: Path, config: TrainConfig, resume: bool) -> dict | None:
    """The run's saved state.json (None if none, or not resuming); refuses one saved with another config."""
    path = run_dir / "state.json"
    state = json.loads(path.read_text()) if resume and path.exists() else None
    # Compared through TrainConfig so runs saved before a field existed match its default.
    if state and TrainConfig(**state["config"]).to_dict() != config.to_dict():
        raise ConfigError(f"{run_dir} holds a run with a different config; pass --no-resume to start over "
                          "or use another model name.")
    return state


def _write_state(run_dir: Path, state: dict) -> None:
    tmp = run_dir / "state.json.tmp"
    tmp.write_text(json.dumps(state, indent=1))
    tmp.replace(run_dir / "state.json")  # atomic: a kill mid-write never leaves a broken state


def train(config: TrainConfig, data: str | os.PathLike, name: str, models_dir: str | os.PathLike = "models",
          progress: ProgressHook | None = None, cancel: threading.Event | None = None,
          resume: bool = True, run_dir: str | os.PathLike | None = None, strategy: str = "default",
          finish_now: bool = False, finalize: bool = True, extra_data: list[Source] | None = None) -> Path:
    """Train `config` on the dataset at `data`, save models_dir/<name>.keras + card, return its path.

    `strategy` picks a tf.distribute strategy: "default" (one device), "mirrored" (all GPUs of this
    machine, synchronous data parallelism) or "multiworker" (several machines, configured by TF_CONFIG;
    trained by brainclf.distributed's loop; only the chief writes the run dir and the model, the other
    workers return the run dir after training). The batch size is the global batch, split across replicas.
    `finish_now` ends an interrupted run where it stands (out of time, say): its best checkpoint so far
    becomes the model, and the card says so.
    An ensemble architecture trains its members one after the other (each resumable), then combines them.
    `finalize=False` stops after training and returns the run directory (ensemble members).
    `extra_data` adds labelled folders of other sources (their names and weights must match
    config.extra_sources); each is split by case groups and contributes to train, validation and a
    held-out test part that the card reports as external validation.
    """
    if finalize:  # before any work; ensemble members (finalize=False) add '-member<k>' to a checked name
        from .limits import validate_model_name
        validate_model_name(name)
    import keras

    config.validate()
    sources = list(extra_data or [])
    _check_sources(config, sources)
    if get_architecture(config.architecture).members > 1:
        return _train_ensemble(config, data, name, models_dir, progress, cancel, resume, run_dir, strategy,
                               finish_now, sources)
    contract = config.contract()
    root = Path(data)
    run_dir = Path(run_dir) if run_dir else runs_dir() / name
    # Several workers read the chief's run dir; only the chief writes it, the others write a scratch copy.
    role = distributed.worker_role() if strategy == "multiworker" else None
    write_dir = role.write_dir(run_dir) if role else run_dir
    write_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.time()

    def say(stage: str, message: str, **kw):
        if progress:
            progress(TrainProgress(stage, message=message, elapsed_s=time.time() - t0, **kw))

    state = _saved_state(run_dir, config, resume)
    roots = _roots(root, sources)
    if state:
        by_rel = _index_samples(root, sources)
        try:
            train_s = [by_rel[p] for p in state["train_files"]]
            val_s = [by_rel[p] for p in state["val_files"]]
        except KeyError as e:
            raise DataError(f"Cannot resume: {e.args[0]} from the saved split is missing in {root}.") from None
        test_s = [by_rel[p] for p in state["test_files"] if p in by_rel]
    else:
        say("preparing", "Finding near-duplicate groups for a leakage-free split")
        seed = config.effective_split_seed()
        splits = make_splits(discover(root), val_fraction=config.val_fraction, seed=seed)
        train_s, val_s, test_s = splits.train, splits.val, splits.test
        extra_splits = {src.name: split_extra_source(discover(src.root, source=src.name).all_samples(),
                                                     config.extra_val_fraction, config.extra_test_fraction, seed)
                        for src in sources}
        if config.max_train_images:
            small = max(4, config.max_train_images // 4)
            train_s = _subset(train_s, config.max_train_images, seed)
            val_s = _subset(val_s, small, seed)
            test_s = _subset(test_s, small, seed) if test_s else []
            extra_splits = {n: replace(sp, train=_subset(sp.train, small, seed), val=_subset(sp.val, small, seed),
                                       test=_subset(sp.test, small, seed)) for n, sp in extra_splits.items()}
        source_info = [{**src.describe(), "fingerprint": fingerprint(src.root, {
            "train": extra_splits[src.name].train, "val": extra_splits[src.name].val,
            "test": extra_splits[src.name].test})} for src in sources]
        for sp in extra_splits.values():
            train_s, val_s = train_s + sp.train, val_s + sp.val
        state = {
            "config": config.to_dict(),
            "contract": contract.to_dict(),
            "train_files": [_key(s, roots) for s in train_s],
            "val_files": [_key(s, roots) for s in val_s],
            "test_files": [_key(s, roots) for s in test_s],
            "external_test_files": {n: [_key(s, roots) for s in sp.test] for n, sp in extra_splits.items()},
            "sources": [{"name": Path(root).resolve().name, "weight": 1.0, "licence": licence_of(root),
                         "primary": True}] + source_info,
            "fingerprint": fingerprint(root, {"train": [s for s in train_s if not s.source],
                                              "val": [s for s in val_s if not s.source], "test": test_s}),
            "epoch": 0, "best_epoch": 0, "best_val_loss": float("inf"),
            "patience": config.early_stopping_patience, "stopped_early": False,
            "history": {}, "train_seconds": 0.0, "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        _write_state(write_dir, state)
    if not val_s:
        raise DataError("The validation split is empty: the dataset is too small to split.")

    if finish_now and state["epoch"] < config.epochs and not state["stopped_early"]:
        if state["epoch"] == 0:  # refuse without marking the run: a plain resume must still train it
            raise ConfigError(f"Nothing to finish in {run_dir}: not one epoch has been trained yet. "
                              "Run without --finish-now to train it.")
        state["stopped_early"] = True
        state["stopped_reason"] = f"finished on request after {state['epoch']} of {config.epochs} epochs"
        _write_state(write_dir, state)
    finished = state["epoch"] >= config.epochs or state["stopped_early"]
    if not finished:
        keras.utils.set_random_seed(config.seed + state["epoch"])  # resumed runs stay repeatable
        say("preparing", f"Loading {len(train_s)} training and {len(val_s)} validation images")
        x_tr, y_tr, kept_tr, errs = load_arrays(train_s, contract)
        x_va, y_va, kept_va, errs_va = load_arrays(val_s, contract)
        if len(x_tr) == 0:
            raise DataError(f"None of the {len(train_s)} training images could be read: {errs[:3]}")
        weight_of = {s.name: float(s.weight) for s in sources}
        w_tr = np.array([weight_of.get(s.source, 1.0) for s in kept_tr], np.float32)
        dist = distribution_strategy(strategy)
        replicas = dist.num_replicas_in_sync
        state["distribution"] = {"strategy": strategy, "workers": role.workers if role else 1, "replicas": replicas}
        # In the multi-worker loop a last batch smaller than the replica count would leave a replica without
        # images (NaN BatchNorm statistics); it is dropped, different images each epoch as the data is reshuffled.
        drop = role is not None and 0 < len(x_tr) % config.batch_size < replicas
        steps_per_epoch = len(x_tr) // config.batch_size if drop else int(np.ceil(len(x_tr) / config.batch_size))
        if role:
            if config.batch_size < replicas:
                raise ConfigError(f"The batch size ({config.batch_size}) is the global batch: it needs at least one "
                                  f"image for each of the {replicas} replicas.")
            # Before any variable is created: workers that would resume differently must not start collectives.
            distributed.agree(dist, epoch=state["epoch"], images=len(x_tr),
                              split=distributed.checksum(state["train_files"] + state["val_files"]))
        with dist.scope():
            model = _load_or_build(config, contract, run_dir, state, steps_per_epoch)
        if role:
            distributed.agree(dist, start_weights=distributed.digest(model))
        train_ds = _tf_dataset(x_tr, y_tr, config, training=True, weights=w_tr if sources else None,
                               drop_remainder=drop)
        x_recal = x_tr[np.random.default_rng(config.seed).permutation(len(x_tr))[:64 * 40]]
        end = _EpochEnd(progress, state, write_dir, config.epochs, steps_per_epoch, t0, x_recal, x_va, y_va,
                        np.array([s.source for s in kept_va]))
        if role:  # Model.fit does not take this strategy's datasets (keras-team/keras#20585)
            cancelled = distributed.fit(model, dist, train_ds, distributed.batch_sizes(len(x_tr), config.batch_size,
                                        drop), config.epochs, state["epoch"], end, cancel)
        else:
            model.fit(train_ds, epochs=config.epochs, initial_epoch=state["epoch"],
                      callbacks=[_fit_callback(end, cancel)], verbose=0)
            cancelled = cancel is not None and cancel.is_set()
        state.pop("_epoch_start", None)
        _write_state(write_dir, state)
        if cancelled:
            say("cancelled", f"Cancelled after {state['epoch']} epochs; re-run to resume.", epoch=state["epoch"],
                epochs=config.epochs, history=state["history"])
            raise TrainingCancelled(f"Training cancelled after {state['epoch']} epochs (resumable from {run_dir}).")

    if role and not role.chief:  # the chief alone evaluates and writes the model
        say("done", f"Worker {role.index} finished training; the chief saves the model", epoch=state["epoch"],
            epochs=config.epochs, history=state["history"])
        return run_dir
    if not finalize:
        return run_dir
    say("evaluating", "Evaluating the best checkpoint", epoch=state["epoch"], epochs=config.epochs,
        history=state["history"])
    out = finalize_model(run_dir, state, root, name, Path(models_dir), sources)
    say("done", f"Saved {out}", epoch=state["epoch"], epochs=config.epochs, history=state["history"])
    return out


def _train_ensemble(config: TrainConfig, data, name: str, models_dir, progress: ProgressHook | None,
                    cancel: threading.Event | None, resume: bool, run_dir, strategy: str, finish_now: bool,
                    sources: list[Source]) -> Path:
    """Train each member as its own resumable run in RUN_DIR/member<k>, one after the other, then combine
    them into one model and card. The progress hook sees one long run (epochs of all members)."""
    run_dir = Path(run_dir) if run_dir else runs_dir() / name
    _saved_state(run_dir, config, resume)  # refuses a run dir holding another config
    members = config.member_configs()
    n = len(members)
    # Checked for every member before any is touched: finishing member 1 and then refusing member 2 would
    # leave member 1 cut short for good.
    for k, member in enumerate(members):
        member_state = _saved_state(run_dir / f"member{k}", member, resume)
        if finish_now and not (member_state and member_state["epoch"]):
            raise ConfigError(f"Member {k + 1} of {n} in {run_dir} has not trained an epoch yet: an ensemble needs "
                              "all its members. Resume without --finish-now to train it.")
    dirs = []
    for k, member in enumerate(members):
        def hook(p: TrainProgress, k=k):
            if progress:
                progress(replace(p, epoch=k * config.epochs + p.epoch, epochs=n * config.epochs,
                                 message=f"member {k + 1}/{n}: {p.message}" if p.message else p.message))

        dirs.append(train(member, data, f"{name}-member{k}", models_dir, hook, cancel, resume,
                          run_dir / f"member{k}", strategy, finish_now, finalize=False, extra_data=sources))
    if strategy == "multiworker" and not distributed.worker_role().chief:
        return run_dir  # the chief combines the members and writes the model
    states = [json.loads((d / "state.json").read_text()) for d in dirs]
    first = states[0]
    if any(s["val_files"] != first["val_files"] or s["train_files"] != first["train_files"] for s in states):
        raise DataError(f"The members in {run_dir} were trained on different splits; start over with --no-resume.")
    state = {
        "config": config.to_dict(), "contract": first["contract"],
        **{f"{k}_files": first[f"{k}_files"] for k in ("train", "val", "test")},
        "external_test_files": first.get("external_test_files", {}), "sources": first.get("sources", []),
        "fingerprint": first["fingerprint"], "epoch": first["epoch"], "best_epoch": first["best_epoch"],
        "stopped_early": any(s["stopped_early"] for s in states),
        "stopped_reason": "; ".join(f"member {k}: {s.get('stopped_reason') or 'early stopping'}"
                                    for k, s in enumerate(states) if s["stopped_early"]),
        "history": first["history"], "train_seconds": sum(s["train_seconds"] for s in states),
        "started": first["started"], "distribution": first.get("distribution"),
        "members": [{"run_dir": str(d), "seed": s["config"]["seed"], "epochs_run": s["epoch"],
                     "best_epoch": s["best_epoch"], "best_val_loss": s["best_val_loss"],
                     "train_seconds": round(s["train_seconds"], 1), "history": s["history"]}
                    for d, s in zip(dirs, states)],
    }
    _write_state(run_dir, state)
    if progress:
        progress(TrainProgress("evaluating", n * members[0].epochs, n * members[0].epochs,
                               message="Combining the members and evaluating the ensemble"))
    out = finalize_model(run_dir, state, Path(data), name, Path(models_dir), sources)
    if progress:
        progress(TrainProgress("done", message=f"Saved {out}"))
    return out


_STRATEGIES: dict = {}


def distribution_strategy(name: str):
    import tensorflow as tf

    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multiworker":
        if not os.environ.get("TF_CONFIG"):
            raise ConfigError("--strategy multiworker needs TF_CONFIG describing the cluster on every worker "
                              "(see README, 'Scale: several machines', and docs/multiworker.md).")
        if "multiworker" not in _STRATEGIES:  # collective ops can be configured once per process
            _STRATEGIES["multiworker"] = tf.distribute.MultiWorkerMirroredStrategy()
        return _STRATEGIES["multiworker"]
    raise ConfigError(f"Unknown strategy {name!r}; choose default, mirrored or multiworker.")


class TrainingCancelled(Exception):
    pass


def _load_or_build(config: TrainConfig, contract: InputContract, run_dir: Path, state: dict, steps: int):
    import keras

    last = run_dir / "last.keras"
    if state["epoch"] > 0 and last.exists():
        return keras.models.load_model(last, safe_mode=True)
    with dtype_policy(config.precision):
        model = build_model(config.architecture, contract)
    if config.optimizer == "adam":
        opt = keras.optimizers.Adam(config.learning_rate)
    else:
        total = steps * config.epochs
        warm = max(1, int(total * config.warmup_fraction))
        # One-cycle style: linear warm-up to the peak, then cosine decay to ~0 by the last epoch.
        schedule = keras.optimizers.schedules.CosineDecay(
            initial_learning_rate=config.learning_rate / 25, decay_steps=total - warm, alpha=0.002,
            warmup_target=config.learning_rate, warmup_steps=warm)
        opt = keras.optimizers.AdamW(schedule, weight_decay=config.weight_decay)
    model.compile(optimizer=opt, loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def _tf_dataset(x: np.ndarray, y: np.ndarray, config: TrainConfig, training: bool,
                weights: np.ndarray | None = None, drop_remainder: bool = False):
    """Batches of (x, y) or (x, y, sample weight), augmented when training."""
    import tensorflow as tf

    ds = tf.data.Dataset.from_tensor_slices((x, y) if weights is None else (x, y, weights))
    if training:
        ds = ds.shuffle(len(x), seed=config.seed, reshuffle_each_iteration=True)
    ds = ds.batch(config.batch_size, drop_remainder=drop_remainder)
    if training and config.augment:
        aug = augmentation_pipeline(config.seed)

        def augment(a, *rest):
            a = aug(a, training=True)
            if config.augment_intensity:
                a = intensity_augmentation(a)
            return (tf.clip_by_value(a, 0.0, 1.0), *rest)

        ds = ds.map(augment, num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)


def intensity_augmentation(batch):
    """Per image: gamma in [0.6, 1.6], brightness ±0.08, Gaussian noise with sigma up to 0.03: the
    windowing, scanner and export differences between sources, not the anatomy."""
    import tensorflow as tf

    n = tf.shape(batch)[0]
    gamma = tf.exp(tf.random.uniform([n, 1, 1, 1], np.log(0.6), np.log(1.6)))
    out = tf.pow(tf.clip_by_value(batch, 1e-6, 1.0), gamma)
    out = out + tf.random.uniform([n, 1, 1, 1], -0.08, 0.08) * tf.cast(batch > 0.02, batch.dtype)
    sigma = tf.random.uniform([n, 1, 1, 1], 0.0, 0.03)
    return out + sigma * tf.random.normal(tf.shape(batch))


def finalize_model(run_dir: Path, state: dict, root: Path, name: str, models_dir: Path,
                   sources: list[Source] | None = None) -> Path:
    """Best checkpoint → models_dir/<name>.keras (no optimizer state) + card with test metrics, and
    external validation on each extra source's held-out case groups."""
    import keras

    from .card import ModelCard, file_sha256, library_versions, machine_description
    from .evaluate import evaluate_samples
    from .predict import Predictor

    config = TrainConfig(**state["config"])
    contract = InputContract.from_dict(state["contract"])
    arch = get_architecture(config.architecture)
    # Members live in RUN_DIR/member<k> (looked up there, so a moved or renamed run dir still finalizes).
    member_dirs = [run_dir / Path(m["run_dir"]).name for m in state["members"]] if arch.members > 1 else [run_dir]
    trained = []
    for d in member_dirs:
        if not (d / "best.keras").exists():
            raise DataError(f"No checkpoint in {d}: training did not finish a single epoch.")
        trained.append(keras.models.load_model(d / "best.keras", safe_mode=True))
    # A freshly built, uncompiled float32 twin holds only the weights: the optimizer state would triple
    # the file, and inference and Grad-CAM stay in full precision whatever the training precision.
    if arch.members > 1:
        model = ensemble_from_members(arch, contract, trained)
    else:
        model = build_model(config.architecture, contract)
        model.set_weights(trained[0].get_weights())
    by_rel = _index_samples(root, list(sources or []))
    train_s = [by_rel[p] for p in state["train_files"] if p in by_rel]
    if config.precision != "float32":
        # The checkpoint's BatchNorm statistics were gathered with bfloat16 activations: re-estimate them
        # in float32 on the same clean training images the training loop used.
        pick = np.random.default_rng(config.seed).permutation(len(train_s))[:64 * 40]
        x_recal, _, _, _ = load_arrays([train_s[i] for i in pick], contract)
        recalibrate_batchnorm(model, x_recal)
    models_dir.mkdir(parents=True, exist_ok=True)
    out = models_dir / f"{name}.keras"
    tmp = models_dir / f".{name}.tmp.keras"
    model.save(tmp)
    tmp.replace(out)
    sha = file_sha256(out)
    now = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    card = ModelCard(
        name=name, architecture=config.architecture, input_contract=contract.to_dict(),
        version=f"{time.strftime('%Y%m%d')}-{sha[:8]}", description=arch.description,
        gradcam_layer=arch.gradcam_layers[0] if len(arch.gradcam_layers) == 1 else list(arch.gradcam_layers),
        params=int(model.count_params()), file_sha256=sha, created=now, libraries=library_versions(),
        machine=machine_description(),
        training={
            "config": state["config"], "fingerprint": state["fingerprint"], "history": state["history"],
            "best_epoch": state["best_epoch"], "epochs_run": state["epoch"], "stopped_early": state["stopped_early"],
            "stopped_reason": state.get("stopped_reason", "early stopping" if state["stopped_early"] else ""),
            "train_seconds": round(state["train_seconds"], 1), "started": state["started"], "finished": now,
            "sizes": {k: len(state[f"{k}_files"]) for k in ("train", "val", "test")},
        },
    )
    if state.get("members"):
        card.training["members"] = state["members"]
    if state.get("distribution"):  # strategy, workers and replicas of the latest training session
        card.training["distribution"] = state["distribution"]
    card.training["files"] = {"train": state["train_files"], "val": state["val_files"]}
    val_s = [by_rel[p] for p in state["val_files"] if p in by_rel]
    test_s = [by_rel[p] for p in state["test_files"] if p in by_rel]
    # The clean subset of the (primary) test split: no near twin among the primary training images.
    training_paths = [by_rel[p].path for p in state["train_files"] + state["val_files"]
                      if p in by_rel and not by_rel[p].source]
    predictor = Predictor(model, card, tta=False)  # the card's test metrics are without TTA; test_tta with
    calibrate(card, predictor, val_s)  # the predictor reads the fitted temperature from the card from now on
    fit_ood_guard(card, predictor, train_s, val_s, test_s, seed=config.seed)
    if test_s:
        card.faithfulness = measure_faithfulness(predictor, test_s, seed=config.seed)
    val = evaluate_samples(predictor, val_s, root)
    card.metrics["val"] = {k: v for k, v in val.items() if k not in ("predictions", "misclassified")}
    if test_s:
        test = evaluate_samples(predictor, test_s, root, training_paths=training_paths)
        card.test_predictions = test.pop("predictions")
        card.metrics["test"] = test
        tta = evaluate_samples(predictor.with_tta(True), test_s, root, training_paths=training_paths)
        card.test_predictions_tta = tta.pop("predictions")
        card.metrics["test_tta"] = tta
    if state.get("sources"):
        card.training["sources"] = state["sources"]
    for src in sources or []:
        from .external import evaluate_external

        held_out = [by_rel[p] for p in state.get("external_test_files", {}).get(src.name, []) if p in by_rel]
        if held_out:
            report = evaluate_external(predictor, held_out, src.root, membership=(
                f"held-out case groups of {src.name} ({len(held_out)} images): not trained or validated on"))
            card.external_predictions[src.name] = report.pop("predictions")
            card.metrics.setdefault("external", {})[src.name] = report
    card.save(out.with_suffix(".json"))
    return out


def calibrate(card, predictor, val_samples: list[Sample]) -> None:
    """Fit temperature scaling and the refer threshold on the validation split (with and without TTA), and
    choose whether the model runs with flip TTA by default."""
    from .evaluate import predict_samples
    from .metrics import expected_calibration_error
    from .trust import apply_temperature, choose_refer_threshold, choose_refer_thresholds, fit_temperature, nll

    cal = {"fitted_on": f"validation split ({len(val_samples)} images)", "refer_target_accuracy": 0.999}
    for suffix, p in (("", predictor.with_tta(False)), ("_tta", predictor.with_tta(True))):
        raw, kept, _ = predict_samples(p, val_samples)
        y = np.array([s.label for s in kept])
        t = fit_temperature(y, raw)
        probs = apply_temperature(raw, t)
        cal[f"temperature{suffix}"] = t
        cal[f"val_ece_before{suffix}"] = expected_calibration_error(y, raw)
        cal[f"val_ece_after{suffix}"] = expected_calibration_error(y, probs)
        cal[f"refer_threshold{suffix}"] = choose_refer_threshold(y, probs, 0.999)
        cal[f"refer_thresholds{suffix}"] = choose_refer_thresholds(y, probs, 0.999)
        cal[f"val_nll{suffix}"] = nll(y, probs)
        cal[f"val_accuracy{suffix}"] = float((probs.argmax(1) == y).mean()) if len(y) else 0.0
    # How the model is run unless the user says otherwise: with flip TTA only if that lowers the
    # calibrated validation loss (chosen on validation, like every other setting in the card).
    cal["tta_default"] = bool(cal["val_nll_tta"] < cal["val_nll"])
    card.calibration = cal


def fit_ood_guard(card, predictor, train_s: list[Sample], val_s: list[Sample], test_s: list[Sample],
                  seed: int = 0, max_train: int = 6000) -> None:
    """Fit the feature-distance OOD guard (brainclf.ood) and measure it on test and non-MRI images."""
    from .ood import check, fit_feature_model, non_mri_images
    from .preprocess import to_model_input

    contract = predictor.contract
    if len(train_s) > max_train:
        train_s = _subset(train_s, max_train, seed)
    x_tr, _, _, _ = load_arrays(train_s, contract)
    x_va, _, _, _ = load_arrays(val_s, contract)
    _, f_tr = predictor.raw_probs_and_features(x_tr, tta=False)
    _, f_va = predictor.raw_probs_and_features(x_va, tta=False)
    card.ood = fit_feature_model(f_tr, f_va, layers=predictor.ood_layers, seed=seed)
    card.ood["fitted_on"] = f"{len(x_tr)} training images (features); threshold: {card.ood['threshold_from']}"
    measured = {}
    if test_s:
        x_te, _, _, _ = load_arrays(test_s, contract)
        _, f_te = predictor.raw_probs_and_features(x_te, tta=False)
        flags = [check(None, f, card.ood)[0] for f in f_te]
        measured["test_flagged"] = int(sum(flags))
        measured["test_n"] = len(flags)
    others = non_mri_images(seed)
    flagged = []
    for name, img in others:
        _, f = predictor.raw_probs_and_features(to_model_input(img, contract), tta=False)
        flagged.append((name, check(img, f[0], card.ood)[0]))
    measured["non_mri_n"] = len(flagged)
    measured["non_mri_flagged"] = int(sum(f for _, f in flagged))
    measured["non_mri_missed"] = [n for n, f in flagged if not f]
    card.ood["measured"] = measured


def measure_faithfulness(predictor, test_s: list[Sample], n: int = 100, seed: int = 0) -> dict:
    """Grad-CAM deletion test and model-randomisation check on a stratified subset of the test split."""
    from .faithfulness import deletion_test, randomisation_check

    subset = _subset(test_s, n, seed)
    x, _, _, _ = load_arrays(subset, predictor.contract)
    return {"deletion": deletion_test(predictor, x, seed), "randomisation": randomisation_check(predictor, x, seed)}
