"""Scoring: numbers from predicted probabilities, no model: metrics, temperature and the refer rule (trust),
the refer rule's per-source operating points, clinicians' rates with NumPy only.

Import from here: the names in __all__ are this layer's public API (pages, CLI, tests, higher layers' entry points).
Modules not listed keep their own names for their tests."""

from .metrics import classification_metrics, expected_calibration_error, reliability_curve, roc_curves
from .operating_point import (
    DEFAULT_TARGET,
    curve_at,
    fit_curves,
    lower_bound,
    risk_coverage,
    slices_needed,
    threshold_for,
    thresholds_for_target,
)
from .rates import sensitivity_specificity
from .trust import (
    apply_temperature,
    bootstrap_ci,
    choose_refer_threshold,
    choose_refer_thresholds,
    coverage_accuracy,
    coverage_curve,
    fit_calibration,
    fit_temperature,
    group_mean_resamples,
    nll,
)

__all__ = ["DEFAULT_TARGET", "apply_temperature", "bootstrap_ci", "choose_refer_threshold", "choose_refer_thresholds",
           "classification_metrics", "coverage_accuracy", "coverage_curve", "curve_at",
           "expected_calibration_error", "fit_calibration", "fit_curves", "fit_temperature",
           "group_mean_resamples", "lower_bound", "nll", "reliability_curve", "risk_coverage", "roc_curves",
           "sensitivity_specificity", "slices_needed", "threshold_for", "thresholds_for_target"]
