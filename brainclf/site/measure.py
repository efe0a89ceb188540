"""What the site workflow measures and fits, on one model: validation on the held-out part, the site's own
calibration (temperature and refer rule) on the adaptation part, the site's OOD guard, and the Kaggle
`Testing` check that nothing was forgotten. No state, no files: brainclf.site.run keeps those."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np

from ..data import Sample, load_arrays
from ..errors import ConfigError
from ..evaluation.evaluate import evaluate_samples
from ..evaluation.external import evaluate_external
from ..inference.batch_predict import predict_samples, predict_samples_and_features
from ..inference.ood import fit_guard
from ..scoring.operating_point import curve_at, risk_coverage
from ..scoring.rates import sensitivity_specificity
from ..scoring.trust import fit_calibration

OOD_MAX_SLICES = 800  # training-like slices the site's OOD guard is fitted on (the training's cap is 2,000)

# progress(done, total) over a step's slices, called between chunks of predictions: it shows how far the step is
# and may stop it there by raising (a cancelled job: brainclf.site.steps).
SliceProgress = Callable[[int, int], None]


def check_step_memory(model, name: str, batch_size: int, training: bool) -> None:
    """Refuse a model whose layer outputs for one batch would not fit in what a job may use (an uploaded model
    may have any input size up to 1,024 px): a clear message first, not the job process's memory cap.

    Raises:
        ConfigError: saying how much the batch would take and what this server allows.
    """
    from ..model.architectures import activations_per_image  # Keras
    from ..training.prepare import ACTIVATION_COPIES, job_memory_budget

    # A training step keeps every layer's output for the backward pass; inference holds about two at a time.
    per_image = activations_per_image(model) * ACTIVATION_COPIES if training else 2 * activations_per_image(
        model, largest=True)
    need = batch_size * per_image * 4
    budget = job_memory_budget()
    if budget and need > budget:
        raise ConfigError(f"Model {name} would take about {need / 2**30:.1f} GiB for a batch of {batch_size} slices "
                          f"at its input size ({model.input_shape[1]} px); this server lets a job use "
                          f"{budget / 2**30:.1f} GiB. Site steps need a model with a smaller input.")


def validate(predictor, split, membership: str, progress: SliceProgress | None = None) -> dict:
    """The model on the site's held-out part: accuracy with case-group intervals, per class and per sequence
    (manifest.csv), any-tumour sensitivity and specificity, confusion matrix, refer/OOD coverage, the
    risk–coverage curve, and one row per slice (the misclassified ones are those with true != pred)."""
    heldout = split.parts["heldout"]
    predicted = predict_samples_and_features(predictor, heldout, progress)
    report = evaluate_external(predictor, heldout, split.root, membership, dataset=split.name, predicted=predicted)
    rows = report["predictions"]
    report["rates"] = sensitivity_specificity(rows)
    y = np.array([r["true"] for r in rows])
    probs = np.array([r["probs"] for r in rows])
    names = np.array(predictor.card.class_names)
    report["risk_coverage"] = risk_coverage(np.searchsorted(names, y), probs) if len(rows) else None
    report["model"] = {"name": predictor.card.name, "version": predictor.card.version,
                       "sha256": predictor.card.file_sha256}
    report["refer_thresholds"] = predictor.applied_refer_thresholds  # the bars its rows were read with
    return report


def fit_site_calibration(predictor, samples: list[Sample], site: str, target: float, fitted_on: str,
                         confidence: float | None = None, progress: SliceProgress | None = None) -> dict:
    """A card's `calibration` fitted on the site's slices only: temperature per way of running the model and
    the refer thresholds that reach `target` accepted accuracy there, or whose lower bound at `confidence` does
    (brainclf.scoring.trust.fit_calibration). `progress` counts both passes (plain, then with flips) as one."""
    by_mode = {}
    for k, (suffix, tta) in enumerate((("", False), ("_tta", True))):
        def both(done: int, total: int, before: int = k) -> None:
            if progress:
                progress(before * total + done, 2 * total)

        raw, kept, _ = predict_samples(predictor.with_tta(tta), samples, both)
        by_mode[suffix] = (np.array([s.label for s in kept]), raw)
    n = len(by_mode[""][0])
    return fit_calibration(by_mode, fitted_on=fitted_on, target_accuracy=target, sources=[site] * n,
                           confidence=confidence)


def with_calibration(predictor, calibration: dict, ood: dict | None = None):
    """The same loaded model judged by another calibration (and OOD guard): a new card, a new Predictor."""
    card = replace(predictor.card, calibration=calibration, ood=predictor.card.ood if ood is None else ood)
    return type(predictor)(predictor.model, card)


def fit_site_guard(predictor, in_scope: list[Sample], calibration: list[Sample], seed: int = 0,
                   progress: SliceProgress | None = None) -> dict:
    """The OOD guard for a site profile: fitted on features of slices the model is meant for (the site's
    tuning slices and, where found, the model's own training images), its threshold from the calibration part,
    so the site's ordinary scans are no longer "unlike the training images". `progress` hears of its start and
    end only (at most OOD_MAX_SLICES plus the calibration part)."""
    if progress:
        progress(0, 1)
    rng = np.random.default_rng(seed)
    if len(in_scope) > OOD_MAX_SLICES:
        in_scope = [in_scope[i] for i in sorted(rng.choice(len(in_scope), OOD_MAX_SLICES, replace=False))]
    x_tr = load_arrays(in_scope, predictor.contract)[0]
    x_va = load_arrays(calibration, predictor.contract)[0]
    guard = fit_guard(predictor, x_tr, x_va, seed=seed)
    guard["fitted_on"] = (f"{len(x_tr)} slices of the model's scope (site tuning part and training images); "
                          f"threshold: {guard['threshold_from']}")
    if progress:
        progress(1, 1)
    return guard


def kaggle_check(predictor, test_samples: list[Sample], root, progress: SliceProgress | None = None) -> dict:
    """The primary dataset's test split (Kaggle `Testing`) as a card's `metrics.test` stores it, with its
    per-image rows under "predictions": the forgetting check."""
    report = evaluate_samples(predictor, test_samples, Path(root), progress=progress)
    report.pop("misclassified", None)
    return report


def operating(report: dict, threshold: float) -> dict:
    """Coverage and accepted accuracy of the held-out curve at one confidence threshold."""
    return curve_at(report["risk_coverage"], threshold) if report.get("risk_coverage") else {}
