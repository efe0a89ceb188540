"""Choosing between candidate models on validation only: each candidate's calibrated accuracy and negative
log-likelihood on the validation files its card records, per source, and the rule that picks one.

    validation_samples(card, roots) ─► {source: [Sample]} ─► validation_by_source(predictor, ...) ─► choose(...)

Candidates must share one validation set (same split), or the comparison says nothing; test sets never enter.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from . import CLASS_NAMES
from .batch_predict import predict_samples
from .data import Sample
from .errors import DataError
from .sources import split_key
from .trust import apply_temperature, nll

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


def validation_by_source(predictor, samples: dict[str, list[Sample]]) -> dict[str, dict]:
    """{source: {n, accuracy, nll}} with the predictor's calibrated probabilities (its TTA setting)."""
    out = {}
    for source, items in samples.items():
        raw, kept, errors = predict_samples(predictor, items)
        if errors:
            raise DataError(f"{len(errors)} validation image(s) of {source} unreadable, e.g. {errors[0]}")
        probs = apply_temperature(raw, predictor.temperature)
        y = np.array([s.label for s in kept])
        out[source] = {"n": len(y), "accuracy": float((probs.argmax(1) == y).mean()), "nll": nll(y, probs)}
    return out


def mean_nll(results: dict[str, dict]) -> float:
    """The selection score: the validation negative log-likelihood averaged over sources (each source counts
    once, whatever its size, so a small external source is not drowned by a large primary one)."""
    return float(np.mean([r["nll"] for r in results.values()]))


def choose(candidates: dict[str, dict[str, dict]]) -> str:
    """The name of the candidate with the lowest mean_nll (the first of equals)."""
    if not candidates:
        raise DataError("no candidates to choose from.")
    return min(candidates, key=lambda name: mean_nll(candidates[name]))
