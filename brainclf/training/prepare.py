"""Data preparation for a training run: a new run's leakage-free split and its RunState, a resumed run's saved
split, and the training and validation arrays, with "preparing" progress reports on the way."""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from ..data.datasets import Sample, discover, fingerprint, load_arrays, make_splits, relative_path, split_extra_source
from ..data.sources import Source, licence_of, sample_key
from ..errors import ConfigError, DataError
from ..input.preprocess import InputContract
from ..model.card import check_card_rows, file_sha256
from .config import TrainConfig, TrainingCancelled
from .state import RunState

REPORT_STEP = 0.05  # a "preparing" report per 5 % of the preparation (the CLI prints each one)
# Files of the split, evenly spread, whose bytes a resume compares: a folder laid out like the run's (a cropped or
# re-exported copy under the same names) is not the data its epochs learnt from.
CONTENT_SAMPLE = 16


def stratified_subset(samples: list[Sample], n: int, seed: int) -> list[Sample]:
    """At most `n` samples, stratified by class when every class has enough."""
    from sklearn.model_selection import train_test_split

    if n >= len(samples):
        return samples
    labels = [s.label for s in samples]
    try:
        keep, _ = train_test_split(samples, train_size=n, stratify=labels, random_state=seed)
    except ValueError:  # too few per class to stratify
        keep, _ = train_test_split(samples, train_size=n, random_state=seed)
    return keep


def check_sources(config: TrainConfig, sources: list[Source], root: str | Path | None = None) -> None:
    """The extra sources match the config, each has its own name, and none is the primary folder `root` itself
    (its images would be trained on and held out at once)."""
    given = [{"name": s.name, "weight": float(s.weight)} for s in sources]
    if given != [{"name": d["name"], "weight": float(d["weight"])} for d in config.extra_sources]:
        raise ConfigError("The extra data folders given do not match the config's extra_sources.")
    names = [s.name for s in sources]
    if len(set(names)) != len(names):
        raise ConfigError(f"Each --extra-data folder needs its own name; got {names}.")
    same = [s.name for s in sources if root is not None and Path(s.root).resolve() == Path(root).resolve()]
    if same:
        raise ConfigError(f"The extra source {same[0]!r} is the dataset itself (the same folder): pick other sources "
                          "to learn from beside it.")


def _roots(root: Path, sources: list[Source]) -> dict[str, Path]:
    return {"": Path(root), **{s.name: Path(s.root) for s in sources}}


def _key(s: Sample, roots: dict[str, Path]) -> str:
    return sample_key(s.source, relative_path(s.path, roots[s.source]))


def index_samples(root: Path, sources: list[Source]) -> dict[str, Sample]:
    """Every sample of the primary folder and the extra sources, by its run-state key."""
    roots = _roots(root, sources)
    samples = discover(root).all_samples()
    for src in sources:
        samples += discover(src.root, source=src.name).all_samples()
    by_key = {_key(s, roots): s for s in samples}
    # A file linked in from outside its folder was keyed by its target's absolute path before 2026-12-07: a state
    # saved then still resumes (brainclf.data.relative_path).
    old_keys = {sample_key(s.source, s.path.resolve().as_posix()): s for s in samples if s.path.is_symlink()}
    return {**old_keys, **by_key}


class Preparation:
    """Sends "preparing" reports whose `fraction` grows from 0 to 1 over the phases of the preparation (finding
    near-duplicate groups, decoding images), one per REPORT_STEP, never going back; a set `cancel` stops it at the
    next image (TrainingCancelled), not after minutes of hashing and decoding."""

    def __init__(self, hook: Callable[..., None] | None, cancel: threading.Event | None = None):
        self.hook, self.sent, self.cancel = hook, -1.0, cancel  # hook(stage, message, fraction=…): Session.say

    def report(self, message: str, fraction: float, force: bool = False) -> None:
        if self.cancel is not None and self.cancel.is_set():
            raise TrainingCancelled("Training cancelled while preparing its images, before any epoch; start it "
                                    "again to run it.")
        if self.hook and (force or fraction >= self.sent + REPORT_STEP or fraction >= 1.0 > self.sent):
            self.sent = max(self.sent, fraction)
            self.hook("preparing", message, fraction=self.sent)

    def phase(self, message: str, start: float, end: float) -> Callable[[int, int], None]:
        """A (done, total) callback that reports `message` at start + (end - start) * done / total."""
        self.report(message, start, force=True)
        return lambda done, total: self.report(f"{message}: {done}/{total}", start + (end - start) * done / total)


def _split(config: TrainConfig, root: Path, sources: list[Source], prep: Preparation):
    """(train, val, test, extra source splits) of a new run, subsetted for smoke runs (max_train_images)."""
    seed = config.effective_split_seed()
    progress = prep.phase("Finding near-duplicate groups for a leakage-free split", 0.0, 0.5)
    splits = make_splits(discover(root), val_fraction=config.val_fraction, seed=seed, progress=progress)
    train_s, val_s, test_s = splits.train, splits.val, splits.test
    extra = {src.name: split_extra_source(discover(src.root, source=src.name).all_samples(),
                                          config.extra_val_fraction, config.extra_test_fraction, seed,
                                          train_fraction=config.extra_train_fraction, val_fold=config.extra_val_fold)
             for src in sources}
    if config.max_train_images:
        small = max(4, config.max_train_images // 4)
        train_s = stratified_subset(train_s, config.max_train_images, seed)
        val_s = stratified_subset(val_s, small, seed)
        test_s = stratified_subset(test_s, small, seed) if test_s else []
        extra = {n: replace(sp, train=stratified_subset(sp.train, small, seed),
                            val=stratified_subset(sp.val, small, seed), test=stratified_subset(sp.test, small, seed))
                 for n, sp in extra.items()}
    return train_s, val_s, test_s, extra


def new_run(config: TrainConfig, root: Path, sources: list[Source], prep: Preparation):
    """A new run's RunState and its (train, val, test) samples; the extra sources join train and validation."""
    train_s, val_s, test_s, extra = _split(config, root, sources, prep)
    roots = _roots(root, sources)
    if config.refit:  # the held-out part joins training: nothing of these sources is held out any more
        extra = {n: replace(sp, train=sp.train + sp.test, test=[]) for n, sp in extra.items()}
    check_card_rows({"the test split": test_s, **{f"{n}'s held-out part": sp.test for n, sp in extra.items()}})
    source_info = [{**src.describe(), "fingerprint": fingerprint(src.root, {
        "train": extra[src.name].train, "val": extra[src.name].val, "test": extra[src.name].test})}
        for src in sources]
    for sp in extra.values():
        train_s, val_s = train_s + sp.train, val_s + sp.val
    state = RunState(
        config=config.to_dict(), contract=config.contract().to_dict(),
        train_files=[_key(s, roots) for s in train_s], val_files=[_key(s, roots) for s in val_s],
        test_files=[_key(s, roots) for s in test_s],
        external_test_files={n: [_key(s, roots) for s in sp.test] for n, sp in extra.items()},
        sources=[{"name": Path(root).resolve().name, "weight": 1.0, "licence": licence_of(root),
                  "primary": True}] + source_info,
        fingerprint=fingerprint(root, {"train": [s for s in train_s if not s.source],
                                       "val": [s for s in val_s if not s.source], "test": test_s}),
        best_val_loss=float("inf"), patience=config.early_stopping_patience,
        started=time.strftime("%Y-%m-%dT%H:%M:%S%z"), published="")
    state.content_sha256 = content_sha256(state.train_files + state.val_files,
                                          dict(zip(state.train_files + state.val_files, train_s + val_s)))
    return state, (train_s, val_s, test_s)


def content_sha256(keys: list[str], by_key: dict[str, Sample]) -> str:
    """A hash of CONTENT_SAMPLE of the files `keys` name (evenly spread; a run's train and validation keys), their
    names and bytes: what a resume compares with the run's own."""
    picked = sorted({keys[i] for i in np.linspace(0, len(keys) - 1, min(CONTENT_SAMPLE, len(keys))).astype(int)}) \
        if keys else []
    digest = hashlib.sha256()
    for key in picked:
        digest.update(key.encode() + b"\0")
        try:
            digest.update(file_sha256(by_key[key].path).encode())
        except OSError:
            digest.update(b"unreadable")
    return digest.hexdigest()


def saved_split(state: RunState, root: Path, sources: list[Source]):
    """A resumed run's (train, val, test) samples, as its state names them.

    Raises:
        DataError: a file of the split is missing under `root` (or a source), or the files there are not the
            run's (content_sha256 differs): another folder, not the one its epochs learnt from.
    """
    by_rel = index_samples(root, sources)
    try:
        train_s = [by_rel[p] for p in state.train_files]
        val_s = [by_rel[p] for p in state.val_files]
    except KeyError as e:
        raise DataError(f"Cannot resume: {e.args[0]} from the saved split is missing in {root}.") from None
    if state.content_sha256 and content_sha256(state.train_files + state.val_files, by_rel) != state.content_sha256:
        raise DataError(f"Cannot resume: the images under {root} (or its extra sources) are not the ones this run "
                        "learnt from, though their names are (another copy of the data, changed since?). Give it "
                        "the data folder it started on, or start over: --no-resume on the command line; in the "
                        "app, Discard it under Unfinished trainings, or use another model name.")
    return train_s, val_s, [by_rel[p] for p in state.test_files if p in by_rel]


@dataclass
class TrainingArrays:
    x_tr: np.ndarray
    y_tr: np.ndarray
    w_tr: np.ndarray | None  # per-image loss weight of its source; None with the primary source alone
    x_va: np.ndarray
    y_va: np.ndarray
    va_source: np.ndarray
    train_samples: list[Sample]  # the readable training samples, one per row of x_tr


# The arrays are float32, held about three times at the peak (decoded list, np.stack, the input pipeline's copy);
# a training may take this share of the machine's memory: on a shared server the rest is everyone else's.
ARRAY_COPIES = 3
MEMORY_SHARE = 0.5
# A training step holds each layer's float32 output for the backward pass, its gradient and the ops' workspace.
ACTIVATION_COPIES = 3


def physical_memory() -> int | None:
    """This machine's memory in bytes, or None where the OS does not say."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def job_memory_budget(available: int | None = None) -> float | None:
    """Bytes one job (a training, a site step) may hold: MEMORY_SHARE of the machine (`available`, default its
    physical memory); None where the OS does not say."""
    available = physical_memory() if available is None else available
    return MEMORY_SHARE * available if available else None


def check_training_memory(n_images: int, contract: InputContract, available: int | None = None,
                          batch_size: int = 0, activations: int = 0) -> None:
    """Refuse, before decoding, a training whose images and batches would not fit in MEMORY_SHARE of the machine
    (`activations`: the model's layer outputs per image, architectures.activations_per_image).

    Raises:
        ConfigError: saying how much it would need and what to lower.
    """
    budget = job_memory_budget(available)
    images = n_images * contract.size * contract.size * contract.channels * 4 * ARRAY_COPIES
    batches = batch_size * activations * 4 * ACTIVATION_COPIES
    if budget and images + batches > budget:
        raise ConfigError(f"This training would hold about {(images + batches) / 2**30:.1f} GiB in memory: "
                          f"{images / 2**30:.1f} GiB of images ({n_images} images at {contract.size} px, "
                          f"{contract.channels} channel(s)) and {batches / 2**30:.1f} GiB for each batch of "
                          f"{batch_size}; this machine lets a training use {budget / 2**30:.1f} "
                          "GiB. Choose a smaller input size or batch, one channel or fewer images.")


def load_training_arrays(train_s: list[Sample], val_s: list[Sample], contract: InputContract,
                         sources: list[Source], prep: Preparation, start: float,
                         batch: tuple[int, int] = (0, 0)) -> TrainingArrays:
    """Decode the training and validation images (the preparation from `start` to 1), once they and the batches
    (`batch`: batch size, the model's activations per image) are known to fit in memory."""
    n_tr, n_all = len(train_s), len(train_s) + len(val_s)
    check_training_memory(n_all, contract, batch_size=batch[0], activations=batch[1])
    progress = prep.phase(f"Loading {len(train_s)} training and {len(val_s)} validation images", start, 1.0)
    x_tr, y_tr, kept_tr, errs = load_arrays(train_s, contract, lambda i, _: progress(i, n_all))
    x_va, y_va, kept_va, val_errs = load_arrays(val_s, contract, lambda i, _: progress(n_tr + i, n_all))
    for part, x, asked, why in (("training", x_tr, train_s, errs), ("validation", x_va, val_s, val_errs)):
        if len(x) == 0:
            raise DataError(f"None of the {len(asked)} {part} images could be read: {why[:3]}")
    if unread := errs + val_errs:  # left out, and said: the run learns from fewer images than its split lists
        prep.report(f"{len(unread)} of {n_all} images could not be read and are left out (first: {unread[0]})", 1.0,
                    force=True)
    weight_of = {s.name: float(s.weight) for s in sources}
    w_tr = np.array([weight_of.get(s.source, 1.0) for s in kept_tr], np.float32) if sources else None
    return TrainingArrays(x_tr, y_tr, w_tr, x_va, y_va, np.array([s.source for s in kept_va]), kept_tr)
