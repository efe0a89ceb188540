"""What a training run is asked to do (TrainConfig), what it reports while it runs (TrainProgress, with the
progress and time-left arithmetic that the CLI and the app show) and how a cancelled run says so."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from .. import CROPS, INTENSITIES, PRECISIONS
from ..data.datasets import extra_val_folds
from ..errors import ConfigError
from ..input.preprocess import InputContract
from ..presentation.wording import pct

# The evaluation of the best checkpoint at the end (calibration, OOD guard, faithfulness, test metrics, external
# validation: brainclf.training.finalize) counts as this many epochs in the share done and the time left. It runs
# the model over the validation and test splits twice and a training subset once, about two epochs' work on a
# full run (~50 s, longer than an epoch, on a small one); from its first step on, its own pace takes over.
EVALUATION_EPOCHS = 2.0


def get_architecture(name: str):
    """model.architectures.get_architecture, imported when needed: it imports Keras, and a config is built by
    pages (the Model page, jobs) that must not wait for TensorFlow."""
    from ..model.architectures import get_architecture as lookup

    return lookup(name)


def runs_dir() -> Path:
    """Where a run's folder goes unless the caller names one: $BRAINCLF_RUNS, default ./runs."""
    return Path(os.environ.get("BRAINCLF_RUNS", "runs"))


class TrainingCancelled(Exception):
    """The run stopped on request after its last finished epoch; re-running it resumes from there."""


MAX_SEED = 2**31  # random seeds from 0 to this - 1: NumPy's range, with room for an ensemble's seed + k


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
    # Extra labelled sources ({"name", "weight"}; brainclf.data.sources), each split by case groups into
    # train / validation / held-out test with these fractions.
    extra_sources: list = field(default_factory=list)
    extra_val_fraction: float = 0.15
    extra_test_fraction: float = 0.30
    extra_train_fraction: float = 1.0  # < 1: train on that share of the extra sources' training case groups
    # Grouped k-fold over the extra sources' cases: which fold of their development part (all but the held-out
    # test part) is validation. Fold 0 is the usual split; a recipe trained on every fold is compared on the
    # out-of-fold predictions of all development cases (brainclf.evaluation.crossval), not on one fold's few.
    extra_val_fold: int = 0
    # The model that ships, after the recipe was chosen on the split: the extra sources' held-out test part
    # joins training (nothing of them is held out any more); validation stays aside for early stopping,
    # calibration, the refer rule and the OOD guard, so those stay fitted on images the model never learned.
    refit: bool = False
    # Random gamma, brightness and noise on top of the geometric augmentation: sources differ in windowing.
    augment_intensity: bool = False
    # A random intensity curve for a quarter of the images: T1, T1C+ and T2 differ in which tissue is bright, and
    # in the Kaggle set the sequence gives away the class, so a curve that re-orders brightness hides that cue.
    augment_contrast: bool = False
    # Mixup (Zhang et al. 2018): each training image blended with another of its batch, labels and loss weights
    # alike, with a Beta(mixup, mixup) share; 0 is off. A regulariser for a small, noisily labelled source.
    mixup: float = 0.0
    # Label smoothing (Szegedy et al. 2016): the target is (1 - s) of the class plus s spread over all classes;
    # 0 is off. Against the over-confidence late epochs grow on the small external source.
    label_smoothing: float = 0.0
    # Style reweighting (brainclf.training.reweight): primary-source slices whose class image style alone
    # misreads weigh 1 + style_reweight times the rest; 0 is off. Against learning the source for the tumour.
    style_reweight: float = 0.0
    # Input contract steps (brainclf.input.preprocess): crop to the head, scale the head's intensities.
    crop: str = "none"
    intensity: str = "none"

    def contract(self) -> InputContract:
        default = get_architecture(self.architecture).default_contract
        return InputContract(size=self.image_size or default.size, channels=self.channels or default.channels,
                             crop=self.crop, intensity=self.intensity)

    def one_hot_labels(self) -> bool:
        """Whether training batches carry one-hot labels (mixup blends them, label smoothing spreads them)."""
        return bool(self.mixup or self.label_smoothing)

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
        if not 0 < self.learning_rate < float("inf"):
            raise ConfigError(f"learning rate must be a positive number, got {self.learning_rate}.")
        if self.max_train_images is not None and self.max_train_images < 1:
            raise ConfigError(f"max-images must be at least 1, got {self.max_train_images}.")
        if self.image_size is not None and not 32 <= self.image_size <= 1024:
            raise ConfigError(f"Input size must be between 32 and 1024 pixels, got {self.image_size}.")
        if not 0 < self.extra_val_fraction < 0.5 or not 0 < self.extra_test_fraction < 0.5:
            raise ConfigError("extra-source validation and test fractions must be between 0 and 0.5.")
        folds = extra_val_folds(self.extra_val_fraction, self.extra_test_fraction)
        if not 0 <= self.extra_val_fold < folds:
            raise ConfigError(f"extra-source validation fold must be 0 to {folds - 1} (the development part makes "
                              f"{folds} folds), got {self.extra_val_fold}.")
        if not 0 < self.extra_train_fraction <= 1:
            raise ConfigError(f"extra-source training fraction must be in (0, 1], got {self.extra_train_fraction}.")
        if not 0 <= self.mixup <= 1:
            raise ConfigError(f"mixup must be between 0 (off) and 1, got {self.mixup}.")
        if not 0 <= self.label_smoothing < 0.5:
            raise ConfigError(f"label smoothing must be from 0 (off) to below 0.5, got {self.label_smoothing}.")
        if not 0 <= self.style_reweight <= 100:
            raise ConfigError(f"style reweighting must be between 0 (off) and 100, got {self.style_reweight}.")
        if self.crop not in CROPS:
            raise ConfigError(f"crop must be one of {', '.join(CROPS)}, got {self.crop!r}.")
        if self.intensity not in INTENSITIES:
            raise ConfigError(f"intensity must be one of {', '.join(INTENSITIES)}, got {self.intensity!r}.")
        if self.channels not in (None, 1, 3):
            raise ConfigError(f"Channels must be 1 (grayscale) or 3 (RGB), got {self.channels}.")
        if self.early_stopping_patience < 1:  # 0 stopped every run after its first epoch, saying only "early stopping"
            raise ConfigError(f"Early-stopping patience must be at least 1 epoch, got {self.early_stopping_patience}.")
        for name, seed in (("seed", self.seed), ("split seed", self.split_seed)):
            if seed is not None and not 0 <= seed < MAX_SEED:  # NumPy takes 0 to 2**32 - 1; an ensemble adds members
                raise ConfigError(f"The {name} must be from 0 to {MAX_SEED - 1:,}, got {seed}.")

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
    """Sent to the progress hook during preparation, after every batch and epoch (CLI progress bar, app panel).

    `epoch` counts finished epochs (0 while the first runs); `fraction` is the share of the preparation done
    (stage "preparing") or of the final evaluation (stage "evaluating", with `eval_elapsed_s` spent in it);
    `first_epoch` is where this session started (a resumed run's resume point) and `train_elapsed_s` the
    seconds this session has spent in epochs, preparation excluded: together they give the time left (eta_s).
    The final evaluation counts as EVALUATION_EPOCHS epochs of the run."""

    stage: str  # "preparing", "training", "evaluating", "done", "cancelled"
    epoch: int = 0  # epochs finished
    epochs: int = 0
    batch: int = 0
    batches: int = 0
    message: str = ""
    history: dict = field(default_factory=dict)
    elapsed_s: float = 0.0  # since the call to train(), preparation included
    epoch_end: bool = False  # sent once per finished (and validated) epoch
    fraction: float = 0.0  # "preparing": share of the images hashed and decoded; "evaluating": of the steps done
    first_epoch: int = 0
    train_elapsed_s: float = 0.0
    eval_elapsed_s: float = 0.0  # stage "evaluating": seconds since the final evaluation began

    def epochs_done(self) -> float:
        """Finished epochs plus the share of the running one (its last batch counts once it is validated)."""
        running = self.batch / self.batches if self.batches and self.batch < self.batches else 0.0
        return self.epoch + running

    def _share(self) -> float:
        return min(max(self.fraction, 0.0), 1.0)

    def fraction_done(self) -> float:
        """0..1: of the preparation while preparing; of the epochs and the final evaluation (EVALUATION_EPOCHS
        more) while training and evaluating (a run stopped early jumps to its evaluation); 1 when done."""
        if self.stage == "preparing":
            return self._share()
        if self.stage == "done":
            return 1.0
        if not self.epochs:
            return self._share() if self.stage == "evaluating" else 0.0
        whole = self.epochs + EVALUATION_EPOCHS
        if self.stage == "evaluating":
            return (self.epochs + EVALUATION_EPOCHS * self._share()) / whole
        return min(self.epochs_done(), self.epochs) / whole

    def current_epoch(self) -> int:
        """The epoch to show, 1-based: the running one, or the one just finished on its end-of-epoch report."""
        if not self.epochs:
            return 0
        return max(1, min(self.epoch if self.epoch_end else self.epoch + 1, self.epochs))

    def eta_s(self) -> float | None:
        """Seconds left, the final evaluation included: while training, at this session's pace per epoch
        (preparation excluded: it is not repeated per epoch), None until a batch has run, and early stopping
        may end the run sooner; while evaluating, at the pace of its steps so far (None before the first ends)."""
        if self.stage == "evaluating":
            share = self._share()
            if share <= 0 or self.eval_elapsed_s <= 0:
                return None
            return self.eval_elapsed_s / share * (1 - share)
        if self.stage != "training" or not self.epochs:
            return None
        done = self.epochs_done() - self.first_epoch
        if done <= 0 or self.train_elapsed_s <= 0:
            return None
        return self.train_elapsed_s / done * (max(self.epochs - self.epochs_done(), 0.0) + EVALUATION_EPOCHS)

    def text(self) -> str:
        """One line for a progress bar: "epoch 1/30, batch 5/40 — 12s elapsed, ~900s left", or the message."""
        if self.stage == "training" and self.epochs:
            eta = self.eta_s()
            left = f", ~{eta:.0f}s left" if eta is not None else ""
            return (f"epoch {self.current_epoch()}/{self.epochs}, batch {self.batch}/{self.batches} — "
                    f"{self.elapsed_s:.0f}s elapsed{left}")
        if self.stage == "preparing" and self.fraction > 0:
            return f"{self.message} ({pct(self._share(), 0)})"
        if self.stage == "evaluating" and self.elapsed_s:
            eta = self.eta_s()
            left = f", ~{eta:.0f}s left" if eta is not None else ""
            return f"{self.message} — {self.elapsed_s:.0f}s elapsed{left}"
        return self.message


ProgressHook = Callable[[TrainProgress], None]


def evaluation_reporter(hook: ProgressHook | None, elapsed: Callable[[], float],
                        **fields) -> Callable[[float, str], None]:
    """What brainclf.training.finalize calls before each of its steps (share of the evaluation done, the step
    in words), as a TrainProgress of stage "evaluating" for `hook`; `elapsed` gives the seconds since train()
    was called, `fields` the run's epochs and history."""
    t0 = time.time()

    def report(share: float, step: str) -> None:
        if hook:
            hook(TrainProgress("evaluating", message=f"Evaluating the best checkpoint: {step}", fraction=share,
                               elapsed_s=elapsed(), eval_elapsed_s=time.time() - t0, **fields))
    return report
