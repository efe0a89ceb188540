"""Choosing between candidate models on validation only: each candidate's calibrated accuracy and negative
log-likelihood on the validation files its card records, per source, and the rule that picks one.

    validation_samples(card, roots) ─► {source: [Sample]} ─► validation_scores(predictor, ...) ─► summarise
                                                         └► validation_groups ─► nll_difference(a, b) ─► decide

Candidates must share one validation set (same split), or the comparison says nothing; test sets never enter.
`choose` names the lowest mean NLL; `decide` keeps the incumbent unless a challenger is better by more than
the validation set can resolve (171 external slices could not separate candidates 5 points apart, 2026-11-27).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .. import CLASS_NAMES
from ..data.datasets import Sample
from ..data.sources import file_case_groups, split_key
from ..errors import DataError
from ..inference.batch_predict import predict_samples
from ..scoring.operating_point import fit_curves
from ..scoring.trust import apply_temperature, group_mean_resamples, image_nll, nll

PRIMARY = "brain-tumor-mri"  # how the primary source's files (no `source::` prefix) are reported


def validation_samples(card, roots: dict[str, Path]) -> dict[str, list[Sample]]:
    """The card's validation files as samples, grouped by source name.

    Args:
        card: a ModelCard whose training.files.val lists `rel` (primary) or `source::rel` keys.
        roots: folder of each source by name; the primary source under PRIMARY.
    Returns:
        {source: samples}, in the card's order. Raises DataError when a source's folder is not given or a file
        is missing (a comparison on part of the set would not be the one the card's choice was made on).
    """
    keys = card.training.get("files", {}).get("val") or []
    if not keys:
        raise DataError(f"model {card.name!r}: its card records no validation files to compare on.")
    out: dict[str, list[Sample]] = {}
    for key in keys:
        source, rel = split_key(key)
        source = source or PRIMARY
        if source not in roots:
            raise DataError(f"validation files of source {source!r} but no folder given for it "
                            f"(given: {', '.join(sorted(roots)) or 'none'}).")
        path = Path(roots[source]) / rel
        if not path.is_file():
            raise DataError(f"validation file missing: {source}/{rel}")
        label = next((CLASS_NAMES.index(part) for part in Path(rel).parts[:-1] if part in CLASS_NAMES), None)
        if label is None:
            raise DataError(f"validation file {source}/{rel} is not inside a class folder "
                            f"({', '.join(CLASS_NAMES)}).")
        out.setdefault(source, []).append(Sample(path, label))
    return out


def shared_validation_samples(cards: list, roots: dict[str, Path]) -> dict[str, list[Sample]]:
    """validation_samples of candidates that share one validation set; DataError when their cards record
    different validation files (a comparison on different images says nothing)."""
    if len({tuple(sorted(c.training.get("files", {}).get("val") or ())) for c in cards}) > 1:
        raise DataError("the candidates were validated on different files: train them on one split.")
    return validation_samples(cards[0], roots)


def validation_scores(predictor, samples: dict[str, list[Sample]]) -> dict[str, dict]:
    """{source: {"y": labels, "probs": calibrated probabilities}} with the predictor's TTA setting, in sample order."""
    out = {}
    for source, items in samples.items():
        raw, kept, errors = predict_samples(predictor, items)
        if errors:
            raise DataError(f"{len(errors)} validation image(s) of {source} unreadable, e.g. {errors[0]}")
        out[source] = {"y": np.array([s.label for s in kept]), "probs": apply_temperature(raw, predictor.temperature)}
    return out


def summarise(scores: dict[str, dict]) -> dict[str, dict]:
    """{source: {n, accuracy, nll}} from validation_scores."""
    return {source: {"n": len(s["y"]), "accuracy": float((s["probs"].argmax(1) == s["y"]).mean()),
                     "nll": nll(s["y"], s["probs"])} for source, s in scores.items()}


def operating_curves(predictor, samples: dict[str, list[Sample]]) -> dict:
    """operating_point.fit_curves on a card's validation files (calibrated, with the predictor's TTA setting): how
    a model trained before cards kept these curves gets them, its fitted thresholds left as they are."""
    scores = validation_scores(predictor, samples)
    y = np.concatenate([s["y"] for s in scores.values()])
    probs = np.concatenate([s["probs"] for s in scores.values()])
    return fit_curves(y, probs, [source for source, s in scores.items() for _ in s["y"]])


def validation_groups(samples: dict[str, list[Sample]]) -> dict[str, np.ndarray]:
    """Case groups of each source's validation files (near duplicates joined with file-name series), the unit a
    paired comparison resamples."""
    return {source: file_case_groups([s.path for s in items]) for source, items in samples.items()}


def nll_difference(challenger: dict[str, dict], incumbent: dict[str, dict], groups: dict[str, np.ndarray],
                   n_boot: int = 2000, seed: int = 0) -> dict:
    """The challenger's mean NLL minus the incumbent's (negative = the challenger is better), with a 95 % paired
    percentile bootstrap interval that resamples case groups within each source.

    Args:
        challenger, incumbent: validation_scores of two models on the same samples.
        groups: validation_groups of those samples.
    Returns:
        {"difference", "interval": (lo, hi), "resamples"}; each source counts once, as in mean_nll.
    """
    if set(challenger) != set(incumbent) or any(len(challenger[s]["y"]) != len(incumbent[s]["y"]) or
                                                 (challenger[s]["y"] != incumbent[s]["y"]).any() for s in challenger):
        raise DataError("the two models were scored on different validation images.")
    return paired_difference({s: image_nll(challenger[s]["y"], challenger[s]["probs"])
                              - image_nll(incumbent[s]["y"], incumbent[s]["probs"]) for s in challenger},
                             groups, n_boot, seed)


def paired_difference(per_source: dict[str, np.ndarray], groups: dict[str, np.ndarray], n_boot: int = 2000,
                      seed: int = 0) -> dict:
    """The mean over sources of each source's mean per-image difference, with a 95 % percentile bootstrap interval
    that resamples case groups within each source: {"difference", "interval": (lo, hi), "resamples"}."""
    rng = np.random.default_rng(seed)
    resampled = np.mean([group_mean_resamples(d, groups[s], n_boot, rng) for s, d in per_source.items()], axis=0)
    lo, hi = np.percentile(resampled, [2.5, 97.5])
    return {"difference": float(np.mean([d.mean() for d in per_source.values()])),
            "interval": (float(lo), float(hi)), "resamples": n_boot}


def mean_nll(results: dict[str, dict]) -> float:
    """The selection score: the validation negative log-likelihood averaged over sources (each source counts
    once, whatever its size, so a small external source is not drowned by a large primary one)."""
    return float(np.mean([r["nll"] for r in results.values()]))


def choose(candidates: dict[str, dict[str, dict]]) -> str:
    """The name of the candidate with the lowest mean_nll (the first of equals)."""
    if not candidates:
        raise DataError("no candidates to choose from.")
    return min(candidates, key=lambda name: mean_nll(candidates[name]))


def decide(incumbent: str, differences: dict[str, dict]) -> str:
    """The incumbent stays unless a challenger's NLL is lower beyond doubt: the whole interval of its
    nll_difference below 0. Among such challengers, the one with the largest improvement."""
    better = {name: d["difference"] for name, d in differences.items() if d["interval"][1] < 0}
    return min(better, key=better.get) if better else incumbent
