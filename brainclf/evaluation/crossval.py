"""Grouped k-fold comparison of training recipes on validation only.

One split's external validation part is small (171 slices, 101 case groups for external-radiopaedia): it could not
tell apart candidates 5 points apart (README, "Model selection"). So a recipe is trained once per validation fold
of the extra sources (`train --extra-val-fold K`, K = 0 .. k-1; fold 0 is the usual split and the held-out test part
is the same in every fold), and each fold model is scored on its own validation files. Pooled, every development
case of an extra source is scored exactly once, by the model that did not learn from it (out-of-fold), while the
primary source's validation images, the same in every fold, get the mean of the folds' losses.

    fold_scores(predictor, roots)  (one per fold model) ─► pool_folds ─► summarise_pooled
                                                                      └► pooled_difference(a, b, groups) ─► decide
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..data.sources import file_case_groups
from ..errors import DataError
from ..scoring.trust import image_nll
from .selection import PRIMARY, paired_difference, validation_samples, validation_scores


def fold_scores(predictor, roots: dict[str, Path]) -> dict[str, dict]:
    """One fold model on the validation files its card records: {source: {"paths", "y", "nll", "correct"}}."""
    samples = validation_samples(predictor.card, roots)
    scores = validation_scores(predictor, samples)
    return {source: {"paths": [str(s.path) for s in samples[source]], "y": s["y"],
                     "nll": image_nll(s["y"], s["probs"]), "correct": (s["probs"].argmax(1) == s["y"]).astype(float)}
            for source, s in scores.items()}


def pool_folds(folds: list[dict[str, dict]]) -> dict[str, dict]:
    """The folds of one recipe pooled per source, sorted by path. The primary source must have the same validation
    files in every fold: each file gets its mean loss and mean correctness over the folds. Every extra source must
    be split into disjoint folds: each file scored once, out of fold. Anything else is refused."""
    if len(folds) < 2:
        raise DataError("a k-fold comparison needs at least two fold models per recipe.")
    if len({tuple(sorted(f)) for f in folds}) > 1:
        raise DataError("the fold models were validated on different sources.")
    pooled = {}
    for source in folds[0]:
        parts = [f[source] for f in folds]
        path_sets = [set(p["paths"]) for p in parts]
        if source == PRIMARY:
            if any(s != path_sets[0] for s in path_sets):
                raise DataError("the fold models were validated on different primary-source images: they are not "
                                "the folds of one split (train each with --extra-val-fold K and the same seed).")
            order = [np.argsort(p["paths"]) for p in parts]
            pooled[source] = {"paths": sorted(parts[0]["paths"]), "y": parts[0]["y"][order[0]],
                              "nll": np.mean([p["nll"][o] for p, o in zip(parts, order)], axis=0),
                              "correct": np.mean([p["correct"][o] for p, o in zip(parts, order)], axis=0),
                              "folds": len(parts), "out_of_fold": False}
            continue
        if sum(map(len, path_sets)) != len(set().union(*path_sets)):
            raise DataError(f"two fold models share validation files of {source}: give each fold once "
                            "(train --extra-val-fold K, K = 0, 1, ...).")
        paths = [q for p in parts for q in p["paths"]]
        order = np.argsort(paths)
        pooled[source] = {"paths": [paths[i] for i in order],
                          **{k: np.concatenate([p[k] for p in parts])[order] for k in ("y", "nll", "correct")},
                          "folds": len(parts), "out_of_fold": True}
    return pooled


def summarise_pooled(pooled: dict[str, dict]) -> dict[str, dict]:
    """{source: {n, accuracy, nll, folds, out_of_fold}}, as selection.summarise gives for one model."""
    return {source: {"n": len(p["y"]), "accuracy": float(p["correct"].mean()), "nll": float(p["nll"].mean()),
                     "folds": p["folds"], "out_of_fold": p["out_of_fold"]} for source, p in pooled.items()}


def pooled_groups(pooled: dict[str, dict]) -> dict[str, np.ndarray]:
    """Case groups of each source's pooled files (the unit the paired bootstrap resamples)."""
    return {source: file_case_groups([Path(q) for q in p["paths"]]) for source, p in pooled.items()}


def pooled_difference(challenger: dict[str, dict], incumbent: dict[str, dict], groups: dict[str, np.ndarray],
                      n_boot: int = 2000, seed: int = 0) -> dict:
    """The challenger recipe's pooled mean NLL minus the incumbent's, with selection.paired_difference's interval;
    both recipes must have been scored on the same files (the same folds of one split)."""
    if set(challenger) != set(incumbent) or any(challenger[s]["paths"] != incumbent[s]["paths"] for s in challenger):
        raise DataError("the two recipes were scored on different validation files: train both on the same folds.")
    return paired_difference({s: challenger[s]["nll"] - incumbent[s]["nll"] for s in challenger}, groups, n_boot, seed)
