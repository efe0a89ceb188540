"""train(): a seeded, resumable training run, from the data folder to the saved model and card.

A run lives in RUNS_DIR/<model name>/ with
  state.json   config, splits, epoch reached, history, best validation loss (brainclf.training.state)
  last.keras   model + optimizer after the latest epoch (resume point)
  best.keras   weights with the lowest validation loss (after temperature scaling) so far
Re-running the same command resumes from the last finished epoch; a finished run only re-does the
final evaluation and card (brainclf.training.finalize).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

from .. import CLASS_NAMES
from ..errors import ConfigError, DataError
from ..input.limits import validate_model_name
from ..input.preprocess import InputContract
from ..model import backend
from ..model.architectures import activations_per_image, build_model, dtype_policy, get_architecture
from . import distributed
from .augment import augmentation_pipeline, contrast_augmentation, intensity_augmentation, mixup
from .batches import ArrayBatches
from .callbacks import (
    Checkpoints,
    EpochEnd,
    FitCallback,
    ProgressReport,
    SourceBalancedValidation,
    settle_checkpoints,
)
from .config import TrainConfig, TrainingCancelled, evaluation_reporter
from .ensemble import train_ensemble
from .finalize import finalize_model, made_by_run
from .folder_lock import held_alone
from .prepare import (
    Preparation,
    check_sources,
    check_training_memory,
    load_training_arrays,
    new_run,
    saved_split,
)
from .request import TrainRequest
from .reweight import describe, style_weights
from .session import Session
from .state import RunState, refused_leaves_no_state, saved_state


def train(request: TrainRequest) -> Path:
    """Train request.config on request.data, save models_dir/<name>.keras + card, return its path (the run
    directory for an ensemble member or a non-chief worker). What each field asks for: TrainRequest.
    An ensemble architecture trains its members one after the other (each resumable), then combines them."""
    config = request.config
    if request.finalize:  # before any work; ensemble members (finalize=False) add '-member<k>' to a checked name
        validate_model_name(request.name)
    config.validate()
    request.check_strategy()
    check_sources(config, request.sources, request.root)
    if get_architecture(config.architecture).members > 1:
        return train_ensemble(request, train=train)
    session = Session.open(request)
    with held_alone(session.write_dir, f"A training is running in {session.write_dir} (in the app or another "
                    "shell): wait for it to end or cancel it; nothing was done."):
        return _train_session(session)


def _train_session(session: Session) -> Path:
    """train() once its run folder is held: the run's state (new or resumed), its epochs and its model."""
    request, config = session.request, session.request.config
    prep = Preparation(session.say, request.cancel)
    state = saved_state(session.run_dir, config, request.resume)
    new = state is None
    if state:
        settle_checkpoints(session.write_dir, state.epoch)  # an epoch's commit a kill cut short
        splits = saved_split(state, request.root, request.sources)
    else:
        state, splits = new_run(config, request.root, request.sources, prep)
        state.started_by = dict(request.started_by or {})
        # Images that would not fit are refused before a state is saved (a run that can never train would offer a
        # Resume that always fails); the batches are checked with the model, before decoding.
        check_training_memory(len(splits[0]) + len(splits[1]), config.contract())
        state.save(session.write_dir)
    with refused_leaves_no_state(session.write_dir, state, new):
        if not splits[1]:
            raise DataError("The validation split is empty: the dataset is too small to split.")
        _check_name_free(request, state)
        if request.finish_now:
            _finish_now(session, state, config)
        if not state.finished(config.epochs):
            _fit(session, state, splits, prep)
    return _after_training(session, state)


def _check_name_free(request: TrainRequest, state: RunState) -> None:
    """Before any epoch: the model's name must be free, or hold this run's own model (checked again on saving)."""
    target = Path(request.models_dir) / f"{request.name}.keras"
    if request.finalize and target.exists() and not made_by_run(target, state):
        raise ConfigError(f"A model named {request.name} already exists in {request.models_dir} and was not made by "
                          "this run; nothing is overwritten: choose another --name.")


def _finish_now(session: Session, state: RunState, config: TrainConfig) -> None:
    """Mark an interrupted run finished where it stands (--finish-now); refuses one without a finished epoch."""
    if state.finished(config.epochs):
        return
    if state.epoch == 0:  # refuse without marking the run: a plain resume must still train it
        raise ConfigError(f"Nothing to finish in {session.run_dir}: not one epoch has been trained yet. "
                          "Run without --finish-now to train it.")
    state.stop(f"finished on request after {state.epoch} of {config.epochs} epochs")
    state.save(session.write_dir)


def _after_training(session: Session, state: RunState) -> Path:
    request = session.request
    progress = dict(epoch=state.epoch, epochs=request.config.epochs, history=state.history)
    if session.role and not session.role.chief:  # the chief alone evaluates and writes the model
        session.say("done", f"Worker {session.role.index} finished training; the chief saves the model", **progress)
        return session.run_dir
    if not request.finalize:
        return session.run_dir

    report = evaluation_reporter(session.hook, lambda: time.time() - session.t0, **progress)
    report(0.0, "loading it")
    out = finalize_model(session.run_dir, state, request.root, request.name, Path(request.models_dir),
                         request.sources, report)
    session.say("done", f"Saved {out}", **progress)
    return out


def _fit(session: Session, state: RunState, splits, prep: Preparation) -> None:
    """Train from the state's epoch to the last (or early stopping); raises TrainingCancelled on `cancel`."""
    import keras

    config, sources, cancel = session.request.config, session.request.sources, session.request.cancel
    distribution_strategy(session.strategy)  # first: a multi-worker strategy must exist before any TF variable
    with dtype_policy("float32"):  # the float32 outputs a step holds; built only to count them (milliseconds),
        per_image = activations_per_image(build_model(config.architecture, config.contract()))  # before seeding
    keras.utils.set_random_seed(config.seed + state.epoch)  # resumed runs stay repeatable
    train_s, val_s, _ = splits
    arrays = load_training_arrays(train_s, val_s, config.contract(), sources, prep, start=max(prep.sent, 0.0),
                                  batch=(config.batch_size, per_image))
    if config.style_reweight:
        _reweight_by_style(arrays, config, prep)
    prep.report("Building the model and the input pipeline", 1.0, force=True)  # seconds on a fresh process
    dist, drop, steps = _distribute(session, config, state, len(arrays.x_tr))
    with dist.scope():
        model = load_or_build(config, config.contract(), session.run_dir, state, steps)
    if session.role:
        distributed.agree(dist, start_weights=distributed.digest(model))
    if backend.name() == "tensorflow":
        train_ds = tf_dataset(arrays.x_tr, arrays.y_tr, config, training=True, weights=arrays.w_tr,
                              drop_remainder=drop)
    else:  # no tf.data: the same batches and augmentation as a PyDataset (brainclf.training.batches)
        augment = augmentation_pipeline(config.seed) if config.augment else None
        train_ds = ArrayBatches(arrays.x_tr, arrays.y_tr, config, arrays.w_tr, augment, first_epoch=state.epoch)
    end = _epoch_end(session, config, state, arrays, steps)
    if session.role:  # Model.fit does not take this strategy's datasets (keras-team/keras#20585)
        sizes = distributed.batch_sizes(len(arrays.x_tr), config.batch_size, drop)
        cancelled = distributed.fit(model, dist, train_ds, sizes, config.epochs, state.epoch, end, cancel)
    else:

        model.fit(train_ds, epochs=config.epochs, initial_epoch=state.epoch, callbacks=[FitCallback(end, cancel)],
                  verbose=0)
        cancelled = cancel is not None and cancel.is_set()
    state.save(session.write_dir)
    if cancelled:
        session.say("cancelled", f"Cancelled after {state.epoch} epochs; re-run to resume.", epoch=state.epoch,
                    epochs=config.epochs, history=state.history)
        raise TrainingCancelled(f"Training cancelled after {state.epoch} epochs (resumable from {session.run_dir}).")


def _reweight_by_style(arrays, config: TrainConfig, prep: Preparation) -> None:
    """Multiply the training loss weights by brainclf.training.reweight's (the same on a resumed run: seeded)."""
    multipliers, summary = style_weights(arrays.train_samples, config.style_reweight, config.seed)
    base = np.ones(len(multipliers), np.float32) if arrays.w_tr is None else arrays.w_tr
    arrays.w_tr = base * multipliers
    prep.report(describe(summary), 1.0, force=True)


def _epoch_end(session: Session, config: TrainConfig, state: RunState, arrays, steps: int):

    x_recal = arrays.x_tr[np.random.default_rng(config.seed).permutation(len(arrays.x_tr))[:64 * 40]]
    return EpochEnd(SourceBalancedValidation(x_recal, arrays.x_va, arrays.y_va, arrays.va_source),
                    Checkpoints(state, session.write_dir),
                    ProgressReport(session.hook, config.epochs, steps, session.t0, first_epoch=state.epoch))


def _distribute(session: Session, config: TrainConfig, state: RunState, n_train: int):
    """(tf.distribute strategy, whether the last partial batch is dropped, steps per epoch); the workers of a
    multi-worker run agree on where they resume before any variable is created."""
    dist = distribution_strategy(session.strategy)
    replicas = dist.num_replicas_in_sync
    role = session.role
    state.distribution = {"strategy": session.strategy, "workers": role.workers if role else 1, "replicas": replicas}
    if backend.name() != "tensorflow":  # {"backend": "jax", "device": "gpu: …"}; a TensorFlow run's record as before
        state.distribution.update(backend.describe())
    # In the multi-worker loop a last batch smaller than the replica count would leave a replica without
    # images (NaN BatchNorm statistics); it is dropped, different images each epoch as the data is reshuffled.
    drop = role is not None and 0 < n_train % config.batch_size < replicas
    steps = n_train // config.batch_size if drop else int(np.ceil(n_train / config.batch_size))
    if role:
        if config.batch_size < replicas:
            raise ConfigError(f"The batch size ({config.batch_size}) is the global batch: it needs at least one "
                              f"image for each of the {replicas} replicas.")
        # Before any variable is created: workers that would resume differently must not start collectives.
        distributed.agree(dist, epoch=state.epoch, images=n_train, settings=distributed.checksum(state.config),
                          split=distributed.checksum(state.train_files + state.val_files))
    return dist, drop, steps


_STRATEGIES: dict = {}


def distribution_strategy(name: str):
    if backend.name() != "tensorflow":  # one device; check_supported refuses the other strategies there
        backend.check_supported(name)
        return backend.OneDevice()
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


def load_or_build(config: TrainConfig, contract: InputContract, run_dir: Path, state: RunState, steps: int):
    """The resume point (last.keras, with its optimizer) or a new compiled model with the one-cycle schedule."""
    import keras

    last = run_dir / "last.keras"
    if state.epoch > 0:
        if not last.is_file():
            raise DataError(f"The run's state says {state.epoch} epochs were trained, but their checkpoint "
                            f"{last.name} is missing from {run_dir}; start over with --no-resume (the app: another "
                            "model name or settings).")
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
            initial_learning_rate=config.learning_rate / 25, decay_steps=max(1, total - warm), alpha=0.002,
            warmup_target=config.learning_rate, warmup_steps=warm)
        opt = keras.optimizers.AdamW(schedule, weight_decay=config.weight_decay)
    # Mixup blends two classes' labels, label smoothing spreads a label: their batches carry one-hot labels.
    loss = (keras.losses.CategoricalCrossentropy(label_smoothing=config.label_smoothing) if config.one_hot_labels()
            else "sparse_categorical_crossentropy")
    model.compile(optimizer=opt, loss=loss, metrics=["accuracy"])
    return model


def tf_dataset(x: np.ndarray, y: np.ndarray, config: TrainConfig, training: bool,
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
            if config.augment_contrast:
                a = contrast_augmentation(a)
            if config.augment_intensity:
                a = intensity_augmentation(a)
            return (tf.clip_by_value(a, 0.0, 1.0), *rest)

        ds = ds.map(augment, num_parallel_calls=tf.data.AUTOTUNE)
    if training and config.mixup:
        def blend(a, y, w=None):
            return mixup(a, y, w, config.mixup, len(CLASS_NAMES))

        ds = ds.map(blend, num_parallel_calls=tf.data.AUTOTUNE)
    elif training and config.one_hot_labels():
        def spread(a, y, *w):
            return (a, tf.one_hot(tf.cast(y, tf.int32), len(CLASS_NAMES)), *w)

        ds = ds.map(spread, num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)
