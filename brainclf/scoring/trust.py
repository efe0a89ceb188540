"""When to trust a prediction: temperature scaling, the refer rule, bootstrap confidence intervals.

All of them work on probabilities; log-probabilities equal the logits up to a per-row constant, which
softmax ignores, so softmax(log p / T) is exactly temperature scaling of the logits.
"""

from __future__ import annotations

import numpy as np

from .. import CLASS_NAMES
from .metrics import expected_calibration_error, finite_rows
from .operating_point import clopper_pearson, fit_curves, risk_coverage, threshold_for, thresholds_for_target


def apply_temperature(probs: np.ndarray, temperature: float) -> np.ndarray:
    if temperature == 1.0:
        return probs
    z = np.log(np.clip(probs, 1e-12, 1.0)) / temperature
    z -= z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def image_nll(y: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """Each image's negative log-likelihood of its true class."""
    return -np.log(np.clip(probs[np.arange(len(y)), y], 1e-12, 1.0))


def nll(y: np.ndarray, probs: np.ndarray) -> float:
    return float(image_nll(y, probs).mean())


T_MIN, T_MAX = 0.05, 20.0


def fit_temperature(y: np.ndarray, probs: np.ndarray) -> float:
    """The temperature minimising validation NLL (golden-section search on log T in [T_MIN, T_MAX], in float64).

    A set whose every answer is right has no error to calibrate against: its NLL falls as T shrinks, without end,
    and a T at the lower edge would make every later answer look certain (a refer rule fitted on it would refer
    nothing). Such a fit returns 1 (the model's own confidences) instead. Rows that are not finite are left out."""
    y, probs = finite_rows(np.asarray(y, dtype=int), probs)  # one NaN row made every loss NaN: the search ran to T_MAX
    if not len(y) or (probs.argmax(1) == y).all():  # its NLL is flat at 0 below some T: the search stops anywhere
        return 1.0
    t = _golden_section(y, probs)
    return 1.0 if t < T_MIN * 1.05 else t


def _golden_section(y: np.ndarray, probs: np.ndarray) -> float:
    lo, hi = np.log(T_MIN), np.log(T_MAX)
    g = (np.sqrt(5) - 1) / 2

    def f(log_t):
        return nll(y, apply_temperature(probs, float(np.exp(log_t))))

    a, b = lo + (1 - g) * (hi - lo), lo + g * (hi - lo)
    fa, fb = f(a), f(b)
    for _ in range(60):
        if fa < fb:
            hi, b, fb = b, a, fa
            a = lo + (1 - g) * (hi - lo)
            fa = f(a)
        else:
            lo, a, fa = a, b, fb
            b = lo + g * (hi - lo)
            fb = f(b)
    return float(np.exp((lo + hi) / 2))


def choose_refer_threshold(y: np.ndarray, probs: np.ndarray, target_accuracy: float = 0.999) -> float:
    """Lowest confidence threshold at which the accepted predictions (confidence >= threshold) reach
    `target_accuracy` on this (validation) set; predictions below it are referred to a radiologist.
    Returns operating_point.REFER_ALL (refer everything, certain answers too) when no threshold reaches it."""
    return threshold_for(risk_coverage(y, probs), target_accuracy)


def choose_refer_thresholds(y: np.ndarray, probs: np.ndarray, target_accuracy: float = 0.999) -> dict[str, float]:
    """The asymmetric refer rule, one confidence threshold per predicted class, fitted on one pooled set.

    Every class gets `choose_refer_threshold`'s threshold. A "no tumour" answer must also be above the
    confidence of every tumour image of this (validation) set that the model called "no tumour": missing a
    tumour is the costly error, so no validation tumour is answered "no tumour" without referral.

    Args:
        y: true class indices of the validation images.
        probs: their calibrated probabilities (N, classes).
    Returns:
        {class name: threshold}; a prediction whose confidence is below its class's threshold is referred.
    """
    return thresholds_for_target(fit_curves(y, probs, np.zeros(len(y), int)), target_accuracy)


def thresholds_per_row(probs: np.ndarray, threshold: float | dict[str, float]) -> np.ndarray:
    """Each row's refer threshold: one number for all, or {class: threshold} by predicted class."""
    if isinstance(threshold, dict):
        table = np.array([float(threshold.get(c, 0.0)) for c in CLASS_NAMES])
        return table[probs.argmax(1)] if len(probs) else np.zeros(0)
    return np.full(len(probs), float(threshold))


def coverage_accuracy(y: np.ndarray, probs: np.ndarray, threshold: float | dict[str, float]) -> dict:
    conf = probs.max(1)
    accepted = conf >= thresholds_per_row(probs, threshold)
    correct = probs.argmax(1) == np.asarray(y)
    shown = {c: float(t) for c, t in threshold.items()} if isinstance(threshold, dict) else float(threshold)
    return {"threshold": shown, "coverage": float(accepted.mean()) if len(y) else 0.0,
            "accepted": int(accepted.sum()), "referred": int((~accepted).sum()),
            "accepted_accuracy": float(correct[accepted].mean()) if accepted.any() else None}


def coverage_curve(y: np.ndarray, probs: np.ndarray, points: int = 50) -> list[dict]:
    """Accuracy of the accepted predictions as the threshold rises (for the coverage-accuracy plot)."""
    conf = np.sort(probs.max(1))
    qs = np.unique(np.quantile(conf, np.linspace(0, 0.99, points))) if len(conf) else []
    return [coverage_accuracy(y, probs, float(t)) for t in qs]


# Draws x images resampled at once: ~16 MB of indices whatever the number of images (a card holding 800,000 rows
# took ~15 GB in one go, on every Evaluation page run that compared with it).
BOOT_CHUNK_CELLS = 2_000_000


def _draws(rng: np.random.Generator, n: int, n_boot: int):
    """The bootstrap's index arrays, (draws, n) each, a bounded chunk at a time."""
    per_chunk = max(1, BOOT_CHUNK_CELLS // max(n, 1))
    for start in range(0, n_boot, per_chunk):
        yield rng.integers(0, n, size=(min(per_chunk, n_boot - start), n))


def _or_exact(interval: list[float], k: int, n: int) -> list[float]:
    """A percentile interval of zero width (every resample all right, or all wrong: [100 %, 100 %], a certainty no
    finite sample gives) replaced by the exact Clopper-Pearson interval of `k` in `n`, as external figures do."""
    return clopper_pearson(k, n) if n and interval[0] == interval[1] else interval


def bootstrap_ci(y: np.ndarray, probs: np.ndarray, n_boot: int = 1000, seed: int = 0) -> dict:
    """95 % percentile bootstrap intervals for accuracy and per-class recall (exact Clopper-Pearson where every
    resample agreed)."""
    y = np.asarray(y, dtype=int)
    right = probs.argmax(1) == y
    accuracy, recall = [], [[] for _ in CLASS_NAMES]
    for idx in _draws(np.random.default_rng(seed), len(y), n_boot):
        correct, yb = right[idx], y[idx]
        accuracy.append(correct.mean(1))
        for i in range(len(CLASS_NAMES)):
            is_c = yb == i
            n_c = is_c.sum(1)
            recall[i].append(np.where(n_c > 0, (correct & is_c).sum(1) / np.maximum(n_c, 1), np.nan))
    out = {"accuracy": _or_exact(np.percentile(np.concatenate(accuracy), [2.5, 97.5]).tolist(),
                                 int(right.sum()), len(y)), "recall": {}}
    for i, c in enumerate(CLASS_NAMES):
        rec = np.concatenate(recall[i])
        out["recall"][c] = (_or_exact(np.nanpercentile(rec, [2.5, 97.5]).tolist(), int(right[y == i].sum()),
                                      int((y == i).sum())) if np.isfinite(rec).any() else None)
    return out


def group_mean_resamples(values: np.ndarray, groups: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """`n_boot` bootstrap means of `values` that resample whole groups (slices of one case are not independent).

    Args:
        values: one number per image (e.g. the difference of two models' losses on it).
        groups: one group id per image; equal ids are drawn together.
    Returns:
        float array of n_boot means, each over the images of the drawn groups.
    """
    _, unit = np.unique(groups, return_inverse=True)
    n_units = int(unit.max()) + 1
    value_sum = np.bincount(unit, weights=values, minlength=n_units)
    count = np.bincount(unit, minlength=n_units).astype(float)
    return np.concatenate([value_sum[idx].sum(1) / count[idx].sum(1) for idx in _draws(rng, n_units, n_boot)])


def fit_calibration(by_mode: dict[str, tuple[np.ndarray, np.ndarray]], fitted_on: str,
                    target_accuracy: float = 0.999, sources: list[str] | None = None,
                    confidence: float | None = None) -> dict:
    """A card's `calibration`: temperature scaling and the refer rule fitted on validation for each way of
    running the model, and whether flip TTA is the default.

    `by_mode` maps a key suffix ("" without flip TTA, "_tta" with it) to (labels, uncalibrated probabilities)
    of the validation images; `fitted_on` says which images those are. With `sources` (each image's source, in
    that order) the card also keeps each source's risk–coverage curve (`operating`), and the refer rule asks
    every source to reach `target_accuracy` on its own (brainclf.scoring.operating_point), with `confidence` by
    the lower bound of its accuracy at that confidence.
    """

    cal = {"fitted_on": fitted_on, "refer_target_accuracy": target_accuracy, "refer_confidence": confidence}
    for suffix, (y, raw) in by_mode.items():
        t = fit_temperature(y, raw)
        probs = apply_temperature(raw, t)
        cal[f"temperature{suffix}"] = t
        cal[f"val_ece_before{suffix}"] = expected_calibration_error(y, raw)
        cal[f"val_ece_after{suffix}"] = expected_calibration_error(y, probs)
        if sources is not None:
            cal[f"operating{suffix}"] = fit_curves(y, probs, sources)
            cal[f"refer_thresholds{suffix}"] = thresholds_for_target(cal[f"operating{suffix}"], target_accuracy,
                                                                     confidence)
            cal[f"refer_threshold{suffix}"] = cal[f"refer_thresholds{suffix}"]["glioma"]
        else:
            cal[f"refer_threshold{suffix}"] = choose_refer_threshold(y, probs, target_accuracy)
            cal[f"refer_thresholds{suffix}"] = choose_refer_thresholds(y, probs, target_accuracy)
        cal[f"val_nll{suffix}"] = nll(y, probs)
        cal[f"val_accuracy{suffix}"] = float((probs.argmax(1) == y).mean()) if len(y) else 0.0
    # How the model is run unless the user says otherwise: with flip TTA only if that lowers the
    # calibrated validation loss (chosen on validation, like every other setting in the card).
    if "" in by_mode and "_tta" in by_mode:
        cal["tta_default"] = bool(cal["val_nll_tta"] < cal["val_nll"])
    return cal
