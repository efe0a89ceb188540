"""Dataset discovery, leakage-aware splits and loading images into arrays.

Two layouts are understood:
  ROOT/<split>/<class>/*.jpg   (Kaggle: Training/, Testing/)
  ROOT/<class>/*.jpg           (a pooled folder, or one split such as .../Testing)
Class folders must be named glioma, meningioma, notumor, pituitary (the fixed class order).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .. import CLASS_NAMES
from ..errors import DataError, ImageError
from ..input.preprocess import IMAGE_SUFFIXES, InputContract, load_model_input
from .dedup import duplicate_groups, hash_files
from .pool import DECODE_WORKERS, decode_many
from .sources import file_case_groups

DATA_ENV = "BRAINCLF_DATA"
TRAIN_SPLIT_NAMES = ("Training", "training", "train")
TEST_SPLIT_NAMES = ("Testing", "testing", "test")

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class Sample:
    path: Path
    label: int
    source: str = ""  # "" for the primary data folder, else the extra source's name (brainclf.data.sources)

    @property
    def class_name(self) -> str:
        return CLASS_NAMES[self.label]


@dataclass
class Dataset:
    root: Path
    splits: dict[str, list[Sample]] = field(default_factory=dict)  # "" = pooled

    @property
    def pooled(self) -> bool:
        return list(self.splits) == [""]

    def all_samples(self) -> list[Sample]:
        return [s for samples in self.splits.values() for s in samples]

    def split(self, names: tuple[str, ...]) -> list[Sample] | None:
        for n in names:
            if n in self.splits:
                return self.splits[n]
        return None


def resolve_data_root(data: str | os.PathLike | None) -> Path:
    """--data wins, then $BRAINCLF_DATA; there is no hard-coded default."""
    value = data or os.environ.get(DATA_ENV)
    if not value:
        raise DataError(f"No data folder given: pass --data DIR or set {DATA_ENV}.")
    return Path(value).expanduser()


def _class_folders(folder: Path) -> dict[str, Path]:
    return {p.name: p for p in folder.iterdir() if p.is_dir() and p.name in CLASS_NAMES}


def _list_images(folder: Path, label: int, source: str = "") -> list[Sample]:
    """The images under a class folder; DataError naming a folder under it that cannot be listed (rglob skips
    one silently: a class evaluated or trained without its images, and no word said)."""
    unreadable: list[OSError] = []
    for _ in os.walk(folder, onerror=unreadable.append):
        pass
    if unreadable:
        where = unreadable[0].filename or folder
        raise DataError(f"{where} cannot be read ({unreadable[0].strerror or unreadable[0]}); its images would be "
                        "left out without a word. Fix its permissions, or move it out of the dataset.")
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    return [Sample(p, label, source) for p in files]


def discover(root: str | os.PathLike, source: str = "") -> Dataset:
    """Find class folders (pooled) or split folders of class folders under `root`; any subset of the
    classes may be present. `source` tags every sample (multi-source training)."""
    root = Path(root).expanduser()
    if not root.exists():
        raise DataError(f"Data folder {root} does not exist.")
    if not root.is_dir():
        raise DataError(f"{root} is not a folder: expected a folder of class sub-folders.")
    expected = ", ".join(CLASS_NAMES)
    classes = _class_folders(root)
    ds = Dataset(root)
    if classes:
        ds.splits[""] = [s for i, c in enumerate(CLASS_NAMES) if c in classes
                         for s in _list_images(classes[c], i, source)]
    else:
        for sub in sorted(p for p in root.iterdir() if p.is_dir()):
            sub_classes = _class_folders(sub)
            if sub_classes:
                ds.splits[sub.name] = [
                    s for i, c in enumerate(CLASS_NAMES) if c in sub_classes
                    for s in _list_images(sub_classes[c], i, source)
                ]
    if not ds.splits:
        raise DataError(
            f"{root} has no class sub-folders. Expected {root}/<class>/ or {root}/<split>/<class>/ "
            f"with class folders named {expected}."
        )
    empty = [name or str(root) for name, samples in ds.splits.items() if not samples]
    if empty:
        raise DataError(f"No JPEG/PNG images found in {', '.join(empty)} (class folders: {expected}).")
    return ds


def relative_path(path: Path, root: Path) -> str:
    """`path` relative to `root` (a dataset's key for a file: cards, manifests, splits). A file reached through a
    link inside the root whose target lies outside it keeps its place in the root, not the target's absolute path
    (which matched no manifest row, no card key, and would put a local path into a card)."""
    try:
        return Path(path).resolve().relative_to(Path(root).resolve()).as_posix()
    except ValueError:
        pass
    try:
        return Path(os.path.abspath(path)).relative_to(os.path.abspath(root)).as_posix()
    except ValueError:
        return Path(path).as_posix()


def fingerprint(root: Path, splits: dict[str, list[Sample]]) -> dict:
    """Counts per split and class plus a hash of the sorted relative file list: identifies the data."""
    counts = {
        name: {c: sum(s.label == i for s in samples) for i, c in enumerate(CLASS_NAMES)}
        for name, samples in splits.items()
    }
    listing = sorted(f"{name}:{relative_path(s.path, root)}" for name, samples in splits.items() for s in samples)
    return {
        "root_name": Path(root).name,
        "counts": counts,
        "file_list_sha256": hashlib.sha256("\n".join(listing).encode()).hexdigest(),
    }


@dataclass
class Splits:
    train: list[Sample]
    val: list[Sample]
    test: list[Sample]


def folds_for(fraction: float) -> int:
    """How many grouped folds a split-off share of `fraction` makes (one fold is split off)."""
    return max(2, round(1 / fraction))


def _grouped_split(samples: list[Sample], groups: np.ndarray, fraction: float, seed: int,
                   fold: int = 0) -> tuple[list, list]:
    """Stratified split where duplicate groups stay whole; returns (rest, held_out). The held-out part is fold
    `fold` of folds_for(fraction) StratifiedGroupKFold folds (fold 0: the split every run made before folds)."""
    from sklearn.model_selection import StratifiedGroupKFold

    n_splits = folds_for(fraction)
    if not 0 <= fold < n_splits:
        raise DataError(f"Fold {fold} does not exist: splitting off {fraction * 100:.0f} % makes folds 0 to "
                        f"{n_splits - 1}.")
    labels = np.array([s.label for s in samples])
    if len(set(groups.tolist())) < n_splits:
        raise DataError(f"Too few images to split off {fraction * 100:.0f} %: {len(samples)} images in "
                        f"{len(set(groups.tolist()))} duplicate groups; need at least {n_splits} groups.")
    if (most := np.bincount(labels).max()) < n_splits:  # scikit-learn refuses it with a traceback
        raise DataError(f"Too few images to split off {fraction * 100:.0f} %: no class has {n_splits} images (the "
                        f"most is {most}); add images: at least {n_splits} of a class, many more for a useful split.")
    sgkf = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    splits = sgkf.split(np.zeros(len(samples)), labels, groups)
    for _ in range(fold):
        next(splits)
    rest_idx, held_idx = next(splits)
    return [samples[i] for i in rest_idx], [samples[i] for i in held_idx]


def make_splits(ds: Dataset, val_fraction: float = 0.1, test_fraction: float = 0.15, seed: int = 42,
                progress: Progress | None = None) -> Splits:
    """Leakage-aware splits: near-duplicate groups (see dedup.py) never straddle train/val(/test).

    Kaggle layout: test = the dataset's own Testing split; validation is carved from Training.
    Pooled layout: stratified grouped train/val/test split of everything.
    """
    if not 0 < val_fraction < 0.5:
        raise DataError(f"val_fraction must be between 0 and 0.5, got {val_fraction}.")
    if ds.pooled:
        samples = ds.splits[""]
        groups = duplicate_groups(hash_files([s.path for s in samples], progress))
        rest, test = _grouped_split(samples, groups, test_fraction, seed)
        index = {s.path: i for i, s in enumerate(samples)}
        rest_groups = groups[[index[s.path] for s in rest]]
        train, val = _grouped_split(rest, rest_groups, val_fraction / (1 - test_fraction), seed)
        return Splits(train, val, test)
    train_all = ds.split(TRAIN_SPLIT_NAMES)
    test = ds.split(TEST_SPLIT_NAMES) or []
    if train_all is None:
        raise DataError(f"{ds.root} has splits {sorted(ds.splits)} but no Training split.")
    groups = duplicate_groups(hash_files([s.path for s in train_all], progress))
    train, val = _grouped_split(train_all, groups, val_fraction, seed)
    return Splits(train, val, test)


def split_extra_source(samples: list[Sample], val_fraction: float, test_fraction: float, seed: int,
                       progress: Progress | None = None, train_fraction: float = 1.0, val_fold: int = 0) -> Splits:
    """Grouped stratified train/val/test split of one extra source: case groups (near duplicates joined
    with file-name series, brainclf.data.sources.file_case_groups) never straddle it. `train_fraction` < 1 keeps that
    share of the training case groups (for learning curves); validation and test stay exactly the same.
    `val_fold` picks which of the development part's grouped folds is validation (grouped k-fold over the
    source's cases, extra_val_folds of them; fold 0 is the usual split); the test part is the same for every fold."""
    paths = [s.path for s in samples]
    groups = file_case_groups(paths, progress)
    rest, test = _grouped_split(samples, groups, test_fraction, seed)
    index = {s.path: i for i, s in enumerate(samples)}
    rest_groups = groups[[index[s.path] for s in rest]]
    train, val = _grouped_split(rest, rest_groups, val_fraction / (1 - test_fraction), seed, fold=val_fold)
    if train_fraction < 1:  # StratifiedGroupKFold folds: the share comes out as 1/k or 1 - 1/k of the cases
        train_groups = groups[[index[s.path] for s in train]]
        if train_fraction < 0.5:
            _, train = _grouped_split(train, train_groups, train_fraction, seed)
        else:
            train, _ = _grouped_split(train, train_groups, 1 - train_fraction, seed)
    return Splits(train, val, test)


def extra_val_folds(val_fraction: float, test_fraction: float) -> int:
    """How many validation folds split_extra_source's development part has (5 with the default fractions)."""
    return folds_for(val_fraction / (1 - test_fraction))


def decode_sample(s: Sample, contract: InputContract) -> tuple[np.ndarray | None, str | None]:
    """(model input, None) or (None, error message): one unreadable file never stops a long job."""
    try:
        return load_model_input(s.path, contract), None
    except ImageError as e:
        return None, str(e)


def load_arrays(samples: list[Sample], contract: InputContract, progress: Progress | None = None,
                workers: int = DECODE_WORKERS) -> tuple[np.ndarray, np.ndarray, list[Sample], list[str]]:
    """Decode and preprocess `samples` in parallel → (x float32 NHWC, y int, kept samples, errors)."""
    xs, ys, kept, errors = [], [], [], []
    results = decode_many(samples, lambda s: decode_sample(s, contract), workers, progress)
    for s, (x, err) in zip(samples, results):
        if err:
            errors.append(err)
        else:
            xs.append(x)
            ys.append(s.label)
            kept.append(s)
    x = np.stack(xs) if xs else np.zeros((0, *contract.shape), np.float32)
    return x, np.array(ys, dtype=np.int64), kept, errors
