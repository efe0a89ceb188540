"""The shortcut study: how much of the Kaggle class can be read from image *style* alone.

A logistic regression sees no anatomy: only each file's stored size and colour mode, its file size, and a
32-bin histogram of its gray levels with a few summary statistics. If that predicts the Kaggle class far
above chance, a network can score highly by learning the source (scanner, sequence, export) instead of the
tumour — which is what the external set shows. Results are measured, never assumed: `run_study` fits on
the Kaggle Training split (5-fold cross-validation grouped by near duplicates for an in-source figure),
then scores Kaggle Testing and any external folder.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

from .. import CLASS_NAMES
from ..data.datasets import TEST_SPLIT_NAMES, TRAIN_SPLIT_NAMES, Sample, discover
from ..data.dedup import duplicate_groups, hash_files
from ..data.pool import DECODE_WORKERS, decode_many
from ..errors import DataError, ImageError
from ..input.preprocess import RASTER_FORMATS

HIST_BINS = 32
FEATURE_NAMES = (["log width", "log height", "aspect", "colour mode", "log file bytes", "mean", "std",
                  "share black", "share white"] + [f"hist {i}" for i in range(HIST_BINS)])


def style_features(path: Path) -> np.ndarray:
    """Style-only description of one file (no spatial information at all)."""
    data = Path(path).read_bytes()
    try:
        img = Image.open(io.BytesIO(data), formats=RASTER_FORMATS)
        w, h = img.size
        if w * h > 50_000_000:
            raise ImageError(f"{Path(path).name}: too large")
        colour = float(img.mode not in ("L", "I", "I;16", "F", "1"))
        gray = np.asarray(img.convert("L"), dtype=np.float32) / 255.0
    except (OSError, ValueError) as e:
        raise ImageError(f"{Path(path).name}: unreadable ({e})") from None
    hist = np.histogram(gray, bins=HIST_BINS, range=(0, 1))[0] / gray.size
    return np.array([np.log(w), np.log(h), w / h, colour, np.log(len(data)), gray.mean(), gray.std(),
                     (gray < 0.02).mean(), (gray > 0.98).mean(), *hist], dtype=np.float32)


def features_of(samples: list[Sample], workers: int = DECODE_WORKERS) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(features, labels, indices into `samples`) of the readable samples.

    Raises:
        DataError: none of them is readable.
    """
    def one(s):
        try:
            return style_features(s.path), s.label
        except ImageError:
            return None

    got = [(k, r) for k, r in enumerate(decode_many(samples, one, workers)) if r is not None]
    if not got:
        raise DataError(f"None of the {len(samples)} images could be read: no style features to fit or score.")
    return np.stack([f for _, (f, _) in got]), np.array([y for _, (_, y) in got]), np.array([k for k, _ in got])


def style_classifier(seed: int = 0):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, C=1.0, random_state=seed))


def _scores(y: np.ndarray, pred: np.ndarray) -> dict:
    present = sorted(set(y.tolist()))
    return {"n": int(len(y)), "accuracy": float((y == pred).mean()),
            "recall": {CLASS_NAMES[c]: float((pred[y == c] == c).mean()) for c in present},
            "confusion_matrix": [[int(((y == t) & (pred == p)).sum()) for p in range(len(CLASS_NAMES))]
                                 for t in range(len(CLASS_NAMES))],
            "majority_baseline": float(np.bincount(y).max() / len(y))}


CV_FOLDS = 5


def _check_enough(y: np.ndarray, groups: np.ndarray, root: str | Path) -> None:
    """Refuse (DataError) a Training split the 5-fold cross-validation cannot run on: at least two classes, each
    with CV_FOLDS different readable images (near duplicates count once: they stay in one fold)."""
    have = {CLASS_NAMES[c]: len(set(groups[y == c].tolist())) for c in sorted(set(y.tolist()))}
    if len(have) < 2 or min(have.values()) < CV_FOLDS:
        found = ", ".join(f"{c} {n}" for c, n in have.items())
        raise DataError(f"The style study's {CV_FOLDS}-fold cross-validation needs at least 2 classes in {root}'s "
                        f"Training split, each with at least {CV_FOLDS} different readable images (near duplicates "
                        f"count once); found {found}.")


def run_study(kaggle_root: str | Path, external: list[str | Path] = (), seed: int = 0) -> dict:
    """Fit the style-only classifier on Kaggle Training and score it in and out of source.

    Args:
        kaggle_root: folder with Training/ and Testing/ (class sub-folders).
        external: labelled folders of other sources (any subset of the classes).
    Returns:
        {"cv": grouped 5-fold on Training, "testing": Kaggle Testing, "external": {name: scores}, ...}
    """
    from sklearn.model_selection import StratifiedGroupKFold, cross_val_predict


    ds = discover(kaggle_root)
    train = ds.split(TRAIN_SPLIT_NAMES) or []
    test = ds.split(TEST_SPLIT_NAMES) or []
    if not train:
        raise DataError(f"{kaggle_root} has no Training split: the style classifier is fitted on Kaggle Training.")
    x_tr, y_tr, kept = features_of(train)
    groups = duplicate_groups(hash_files([s.path for s in train]))[kept]  # each readable image's own group
    _check_enough(y_tr, groups, kaggle_root)
    cv = StratifiedGroupKFold(n_splits=CV_FOLDS, shuffle=True, random_state=seed)
    oof = cross_val_predict(style_classifier(seed), x_tr, y_tr, groups=groups, cv=cv)
    clf = style_classifier(seed).fit(x_tr, y_tr)
    out = {"features": f"{len(FEATURE_NAMES)} style features: stored size, colour mode, file size, gray-level "
                       f"histogram ({HIST_BINS} bins) and its mean, spread, black and white shares",
           "model": "standardised logistic regression (scikit-learn)",
           "cv": {**_scores(y_tr, oof), "how": "5-fold cross-validation on Kaggle Training, grouped by near "
                                                "duplicates"}}
    if test:
        x_te, y_te, _ = features_of(test)
        out["testing"] = {**_scores(y_te, clf.predict(x_te)), "how": "fit on Training, scored on Kaggle Testing"}
    out["external"] = {}
    for folder in external:
        samples = discover(folder).all_samples()
        x_ex, y_ex, _ = features_of(samples)
        out["external"][Path(folder).resolve().name] = {**_scores(y_ex, clf.predict(x_ex)),
                                                        "how": "fit on Kaggle Training, scored on this source"}
    return out
