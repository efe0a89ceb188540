"""Fine-tune a model on a site's tuning slices, replaying its own training images so nothing is forgotten.

Each epoch sees every site tuning slice (loss weight `site_weight`) and `replay_per_site_slice` times as many of
the model's training images (a fresh draw each epoch, shuffled over the classes by brainclf.site.run.replay_samples),
whose targets are the starting model's own outputs (`distill`: it should keep answering them as it did), all
augmented as in training (geometric and intensity: sites differ in windowing). The layers at half the input's
resolution or more can stay frozen (`freeze_early_layers`). After each epoch the BatchNorm statistics are
re-estimated on the mix, the calibrated loss is measured on the site's calibration part and the model's own
validation images (their mean picks the epoch that ships), and the run dir gets `last.keras` (with its
optimizer: the resume point), `best.keras` and `adapt.json`. A cancelled run stops after its batch; calling
fine_tune again resumes from the last finished epoch.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import keras
import numpy as np

from .. import CLASS_NAMES
from ..data import Sample, load_arrays
from ..files import write_json_atomically
from ..model.architectures import activations_per_image, recalibrate_batchnorm
from ..model.backend import forward_function, to_numpy
from ..scoring.trust import apply_temperature, fit_temperature, nll
from ..training.callbacks import BatchCallback, commit_epoch, settle_checkpoints
from ..training.config import ProgressHook, TrainConfig, TrainingCancelled, TrainProgress
from ..training.loop import tf_dataset
from ..training.prepare import check_training_memory
from .config import ADAPT_STATE as STATE
from .config import AdaptConfig

# BatchNorm statistics re-estimated each epoch on this many batches of 64 of the epoch's images (1,024): all
# 2,683 of a default epoch took 23 s of its 65 s on 2 cores (kaggle_only), 1,024 take 9 s; a thousand images pin
# down a per-channel mean and variance as well.
BN_BATCHES = 16


@dataclass
class AdaptState:
    config: dict
    epoch: int = 0
    best_epoch: int = 0
    best_loss: float | None = None
    history: dict = field(default_factory=dict)
    seconds: float = 0.0
    data: str = ""  # data_fingerprint of the slices and images the epochs learnt from and were chosen on


    def save(self, run_dir: Path) -> None:
        write_json_atomically(run_dir / STATE, asdict(self))


def data_fingerprint(*parts: list[Sample]) -> str:
    """One hash of each part's slices (label, class folder and file name, in order): a resume must learn from and
    choose on the same images, not on what a changed data folder or a moved copy of the data now holds."""
    names = [[(s.label, s.path.parent.name, s.path.name) for s in part] for part in parts]
    return hashlib.sha256(json.dumps(names).encode()).hexdigest()[:16]


def _state(run_dir: Path, cfg: AdaptConfig, data: str) -> tuple[AdaptState, str]:
    """The saved state of the same settings and data (resume), else a new one; and, when saved epochs are not
    resumed, why (other settings or images, or a state file that cannot be read), to say rather than start afresh
    silently."""
    path, new = run_dir / STATE, AdaptState(asdict(cfg), data=data)
    if not path.is_file():
        return new, ""
    try:
        saved = json.loads(path.read_text())
        epochs = saved.get("epoch", "?")
        settle_checkpoints(run_dir, int(saved.get("epoch", 0)))  # an epoch's commit a kill cut short
        # A setting added since the epochs were saved ran at its default (ema_momentum: off).
        if not (run_dir / "last.keras").is_file():
            why = f"its {epochs} saved epochs' checkpoint (last.keras) is missing"
        elif {**asdict(AdaptConfig()), **saved.get("config", {})} != asdict(cfg):
            why = f"its {epochs} saved epochs were run with other settings"
        elif saved.get("data", data) != data:  # a state saved before the fingerprint existed: the same split
            why = (f"its {epochs} saved epochs learnt from other images (the site's parts, or the model's own "
                   "training or validation images found under the data folder, changed)")
        else:
            return AdaptState(**{**saved, "config": asdict(cfg), "data": data}), ""
    except (OSError, ValueError, TypeError, AttributeError) as e:  # cut short, or another version's fields
        why = f"its saved state ({STATE}) cannot be read ({type(e).__name__})"
    return new, f"Starting the adaptation afresh: {why}; they are replaced as epochs finish."


def _compile(model, cfg: AdaptConfig, steps: int):
    for layer in model.layers:
        # A frozen BatchNormalization runs in inference mode: the statistics the model came with stay.
        if (cfg.freeze_batchnorm and isinstance(layer, keras.layers.BatchNormalization)) or \
                (cfg.freeze_early_layers and _early(layer, model)):
            layer.trainable = False
    schedule = keras.optimizers.schedules.CosineDecay(cfg.learning_rate, decay_steps=max(1, steps * cfg.epochs),
                                                      alpha=0.05)
    optimizer = keras.optimizers.Adam(schedule, use_ema=cfg.ema_momentum > 0, ema_momentum=cfg.ema_momentum or 0.99)
    model.compile(optimizer=optimizer, loss="categorical_crossentropy")
    return model


class _Anchor:
    """A weight's L2-SP penalty: `strength` x its squared distance from the starting model's value."""

    def __init__(self, start: np.ndarray, strength: float):
        self.start, self.strength = start, strength

    def __call__(self, weight):
        return self.strength * keras.ops.sum(keras.ops.square(weight - self.start))


def _anchor(model, base_model, strength: float) -> None:
    """Pull every trained weight of `model` towards the starting model's (`base_model`, matched by path); a
    resumed model is anchored again (a weight's penalty is not saved with it)."""
    if not strength:
        return
    start = {v.path: np.array(v) for v in base_model.weights}
    for weight in model.trainable_weights:
        weight.regularizer = _Anchor(start[weight.path], strength)


def _model_to_train(base_model, cfg: AdaptConfig, steps: int, last: Path | None):
    """The resumed run's last.keras (with its optimizer) when there is one, else the starting model compiled for
    fine-tuning; either pulled towards the starting weights when `cfg.anchor` asks."""
    model = keras.models.load_model(last, safe_mode=True) if last is not None and last.is_file() else \
        _compile(base_model, cfg, steps)
    _anchor(model, base_model, cfg.anchor)
    return model


def _early(layer, model) -> bool:
    """A layer working at half the input's resolution or more: the low-level filters (edges, textures). Kept
    frozen they cost no backward pass (about a third of an epoch for the compact CNNs)."""
    shape = getattr(getattr(layer, "output", None), "shape", None)
    height = model.inputs[0].shape[1]
    return bool(shape is not None and len(shape) == 4 and height and shape[1] * 2 >= height
                and layer.count_params())


def _outputs(model, x: np.ndarray, compiled=None) -> np.ndarray:
    """The model's softmax outputs in inference mode, 128 images at a time, through `compiled` (the model's
    backend.forward_function: a third faster than eager calls on 2 cores) when given."""
    run = compiled or forward_function(model, tuple(x.shape[1:]))
    return np.concatenate([to_numpy(run(x[i:i + 128])) for i in range(0, len(x), 128)])


def _replay_targets(model, x_rep: np.ndarray, y_rep: np.ndarray, cfg: AdaptConfig) -> np.ndarray:
    """Soft targets of the replayed images: `distill` of the starting model's own output (so it keeps answering
    them as it did, not only their label) and the rest their one-hot label."""
    onehot = np.eye(len(CLASS_NAMES), dtype=np.float32)[y_rep]
    if not cfg.distill or not len(x_rep):
        return onehot
    own = _outputs(model, x_rep)
    return (cfg.distill * own + (1 - cfg.distill) * onehot).astype(np.float32)


@dataclass
class _Mix:
    """What each epoch learns from: every site tuning slice (one-hot, weighted `site_weight`) and a fresh draw of
    replayed training images (their targets from _replay_targets)."""
    x_site: np.ndarray
    t_site: np.ndarray
    x_rep: np.ndarray
    t_rep: np.ndarray
    cfg: AdaptConfig

    @classmethod
    def read(cls, base_model, tune: list[Sample], replay: list[Sample], contract, cfg: AdaptConfig) -> _Mix:
        (x_site, y_site), (x_rep, y_rep) = (load_arrays(part, contract)[:2] for part in (tune, replay))
        return cls(x_site, np.eye(len(CLASS_NAMES), dtype=np.float32)[y_site], x_rep,
                   _replay_targets(base_model, x_rep, y_rep, cfg), cfg)

    @property
    def replayed(self) -> int:
        return min(len(self.x_rep), int(round(self.cfg.replay_per_site_slice * len(self.x_site))))

    @property
    def epoch_size(self) -> int:
        return len(self.x_site) + self.replayed

    def epoch(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(images, targets, weights) of epoch `index`: its own draw, so a resumed run draws what it would have."""
        pick = np.random.default_rng([self.cfg.seed, index]).permutation(len(self.x_rep))[:self.replayed]
        weights = np.r_[np.full(len(self.x_site), self.cfg.site_weight), np.ones(len(pick))]
        return (np.concatenate([self.x_site, self.x_rep[pick]]), np.concatenate([self.t_site, self.t_rep[pick]]),
                weights.astype(np.float32))


def fine_tune(base_model, tune: list[Sample], calibration: list[Sample], replay: list[Sample], contract,
              cfg: AdaptConfig, run_dir: Path, progress: ProgressHook | None = None,
              cancel: threading.Event | None = None, kept: list[Sample] | None = None):
    """The fine-tuned model and the AdaptState of the run. The epoch kept has the lowest calibrated loss on the
    site's calibration part, averaged with that on `kept` (the model's own validation images) when given.

    Raises:
        TrainingCancelled: `cancel` was set; the last finished epoch is kept for a resume.
    """
    cfg.validate()
    (state, afresh), t0 = _start(base_model, (tune, replay, calibration, kept or []), contract, cfg, run_dir), \
        time.time()

    def say(stage, message="", **kw):
        if progress:
            progress(TrainProgress(stage, message=message, epochs=cfg.epochs, elapsed_s=time.time() - t0,
                                   history=state.history, **kw))

    say("preparing", afresh or "Reading the site's slices and the replayed training images")
    mix = _Mix.read(base_model, tune, replay, contract, cfg)
    checks = [load_arrays(part, contract)[:2] for part in (calibration, *([kept] if kept else []))]
    steps = int(np.ceil(mix.epoch_size / cfg.batch_size))
    model = _model_to_train(base_model, cfg, steps, run_dir / "last.keras" if state.epoch else None)
    first, session_s = state.epoch, 0.0
    compiled = forward_function(model, tuple(model.inputs[0].shape[1:]))  # follows the weights as they train
    while state.epoch < cfg.epochs:
        x, y, weights = mix.epoch(state.epoch)
        train_cfg = TrainConfig(batch_size=cfg.batch_size, seed=cfg.seed + state.epoch, augment_intensity=True)
        started = time.time()
        def report(batch: int, epoch: int = state.epoch, started: float = started, before: float = session_s):
            say("training", epoch=epoch, batch=batch, batches=steps, first_epoch=first,
                train_elapsed_s=before + time.time() - started)

        model.fit(tf_dataset(x, y, train_cfg, training=True, weights=weights), epochs=1, verbose=0,
                  callbacks=[BatchCallback(lambda batch: report(batch + 1), cancel)])
        if cancel is not None and cancel.is_set():
            raise TrainingCancelled(f"Adaptation cancelled after {state.epoch} of {cfg.epochs} epochs; start it "
                                    "again to resume.")
        if not cfg.freeze_batchnorm:
            recalibrate_batchnorm(model, x, max_batches=BN_BATCHES, seed=cfg.seed + state.epoch)
        losses = [_calibrated_loss(model, *check, compiled=compiled) for check in checks]
        session_s += time.time() - started
        _book(state, model, run_dir, losses, time.time() - started)
        say("training", epoch=state.epoch, batch=steps, batches=steps, epoch_end=True, first_epoch=first,
            train_elapsed_s=session_s)
    say("evaluating", "Checking the adapted model: site calibration, the held-out part and Kaggle Testing",
        epoch=state.epoch)
    return _best(run_dir, cancel, state.epoch), state


def _start(base_model, parts: tuple[list[Sample], ...], contract, cfg: AdaptConfig,
           run_dir: Path) -> tuple[AdaptState, str]:
    """_state's (state, why afresh) for these images, once they are known to fit in memory: every image is held
    (with an epoch's copy and the input pipeline's), so a folder too large is refused before decoding."""
    check_training_memory(sum(map(len, parts)), contract, batch_size=cfg.batch_size,
                          activations=activations_per_image(base_model))
    run_dir.mkdir(parents=True, exist_ok=True)
    return _state(run_dir, cfg, data_fingerprint(*parts))


def _best(run_dir: Path, cancel: threading.Event | None, epochs: int):
    """The kept epoch's model, whole and trainable. Past the last epoch the caller's checks that save it cannot
    stop part-way (the job now says it is evaluating: brainclf.serving.jobs refuses a cancel then); a cancel that
    came before is honoured here, the epochs kept, so a new start goes straight to the checks."""
    if cancel is not None and cancel.is_set():
        raise TrainingCancelled(f"Adaptation cancelled after its {epochs} epochs, before its checks; start it "
                                "again to check and save it.")
    best = keras.models.load_model(run_dir / "best.keras", safe_mode=True)
    for layer in best.layers:  # frozen for this fine-tuning only: the saved model is a whole, trainable model
        layer.trainable = True
    return best


def _calibrated_loss(model, x: np.ndarray, y: np.ndarray, compiled=None) -> float:
    probs = _outputs(model, x, compiled)
    return nll(y, apply_temperature(probs, fit_temperature(y, probs)))


def _book(state: AdaptState, model, run_dir: Path, losses: list[float], seconds: float) -> None:
    """One finished epoch: history, then its checkpoints committed by the state (the resume point)."""
    state.epoch += 1
    state.seconds += seconds
    for key, value in zip(("calibration_loss", "own_validation_loss"), losses):
        state.history.setdefault(key, []).append(value)
    loss = float(np.mean(losses))
    if len(losses) > 1:
        state.history.setdefault("selection_loss", []).append(loss)
    improved = state.best_loss is None or loss < state.best_loss
    if improved:
        state.best_loss, state.best_epoch = loss, state.epoch
    commit_epoch(model, run_dir, state.epoch, improved, lambda: state.save(run_dir))
