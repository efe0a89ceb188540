"""Style reweighting ("just train twice", Liu et al. 2021) against the Kaggle shortcut.

In the primary (Kaggle) source, image style alone (file size, stored size, gray-level histogram;
brainclf.evaluation.shortcut) predicts the class for about three slices in four, so a network can learn the
source instead of the tumour. Here a style-only classifier is fitted out of fold (grouped by near duplicates) on
the primary source's training slices; those it gets wrong, where style points to another class, weigh
1 + factor times the others in the loss. The primary source's mean weight stays 1, so its balance against the
extra sources is unchanged: only where the network's attention goes within it moves.
"""

from __future__ import annotations

import numpy as np

from .. import CLASS_NAMES
from ..data.datasets import Sample
from ..data.dedup import duplicate_groups, hash_files
from ..evaluation.shortcut import features_of, style_classifier

FOLDS = 5


def style_weights(samples: list[Sample], factor: float, seed: int) -> tuple[np.ndarray, dict]:
    """Per-sample loss multipliers (1 for extra sources' slices) and a summary for the run's log and card.

    Slices of the primary source (`source == ""`) that a grouped out-of-fold style classifier misreads weigh
    1 + `factor` relative to the rest, scaled so the primary source's mean multiplier is 1. An unreadable file,
    or too few slices per class to fold, leaves every weight at 1 and says why.
    """
    from sklearn.model_selection import StratifiedGroupKFold, cross_val_predict

    weights = np.ones(len(samples), np.float32)
    primary = [k for k, s in enumerate(samples) if s.source == ""]
    labels = np.array([samples[k].label for k in primary])
    if factor <= 0 or len(primary) == 0 or np.bincount(labels).min(initial=len(labels)) < FOLDS:
        return weights, {"factor": factor, "applied": False, "why": "too few primary-source slices per class"}
    x, y, kept = features_of([samples[k] for k in primary])
    groups = duplicate_groups(hash_files([samples[primary[k]].path for k in kept]))
    cv = StratifiedGroupKFold(n_splits=FOLDS, shuffle=True, random_state=seed)
    misread = cross_val_predict(style_classifier(seed), x, y, groups=groups, cv=cv) != y
    raw = np.where(misread, 1.0 + factor, 1.0)
    weights[np.asarray(primary)[kept]] = raw / raw.mean()
    summary = {"factor": factor, "applied": True, "primary_slices": int(len(kept)),
               "misread_by_style": int(misread.sum()),
               "misread_by_class": {CLASS_NAMES[c]: int(misread[y == c].sum()) for c in np.unique(y)},
               "weight_misread": float((1.0 + factor) / raw.mean()), "weight_other": float(1.0 / raw.mean())}
    return weights, summary


def describe(summary: dict) -> str:
    """One line for the run's log."""
    if not summary["applied"]:
        return f"Style reweighting off: {summary['why']}."
    return (f"Style reweighting: {summary['misread_by_style']} of {summary['primary_slices']} primary-source "
            f"training slices are misread by style alone; they weigh {summary['weight_misread']:.2f}, "
            f"the others {summary['weight_other']:.2f}.")
