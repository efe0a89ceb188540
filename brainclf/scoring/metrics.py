"""Evaluation metrics from predicted probabilities (scikit-learn wherever it has the metric).

scikit-learn is imported by the functions that use it: it takes ~1 s to import on a 2-core laptop, and the
modules that import this one (trust, evaluate, provenance) are on the path of the app's first page."""

from __future__ import annotations

import numpy as np

from .. import CLASS_NAMES

LABELS = list(range(len(CLASS_NAMES)))


def finite_rows(y: np.ndarray, probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(y, probs) without the rows holding a probability that is not a finite number: no score can use them."""
    y, probs = np.asarray(y), np.asarray(probs, dtype=np.float64)
    finite = np.isfinite(probs).all(1) if probs.ndim == 2 else np.zeros(len(y), bool)
    return y[finite], probs[finite]


def expected_calibration_error(y_true: np.ndarray, probs: np.ndarray, n_bins: int = 15) -> float:
    """ECE: |accuracy - confidence| averaged over equal-width confidence bins, weighted by bin size. A row with a
    non-finite probability is in no bin, so it is left out of the weights too (they sum to 1 over the rest)."""
    y_finite, p_finite = finite_rows(y_true, probs)
    if not len(p_finite):  # rows, none measurable: not a perfect 0 (no rows at all keeps 0, as callers expect)
        return float("nan") if len(probs) else 0.0
    conf = p_finite.max(1)
    correct = p_finite.argmax(1) == y_finite
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    ece = 0.0
    for lo, hi in zip(edges[:-1], edges[1:]):
        in_bin = (conf > lo) & (conf <= hi)
        if in_bin.any():
            ece += in_bin.mean() * abs(correct[in_bin].mean() - conf[in_bin].mean())
    return float(ece)


def reliability_curve(y_true: np.ndarray, probs: np.ndarray, n_bins: int = 15) -> dict:
    conf = probs.max(1)
    correct = probs.argmax(1) == y_true
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    rows = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        m = (conf > lo) & (conf <= hi)
        if m.any():
            rows.append({"lo": float(lo), "hi": float(hi), "n": int(m.sum()),
                         "confidence": float(conf[m].mean()), "accuracy": float(correct[m].mean())})
    return {"bins": rows}


def roc_curves(y_true: np.ndarray, probs: np.ndarray) -> dict:
    """One-vs-rest ROC and precision-recall curves per class (for plotting)."""
    from sklearn.metrics import auc, precision_recall_curve, roc_curve

    out = {}
    for i, c in enumerate(CLASS_NAMES):
        pos = (y_true == i).astype(int)
        if pos.min() == pos.max():
            continue  # ROC undefined without both positives and negatives
        fpr, tpr, _ = roc_curve(pos, probs[:, i])
        prec, rec, _ = precision_recall_curve(pos, probs[:, i])
        out[c] = {"fpr": fpr.round(5).tolist(), "tpr": tpr.round(5).tolist(), "auc": float(auc(fpr, tpr)),
                  "precision": prec.round(5).tolist(), "recall": rec.round(5).tolist()}
    return out


def classification_metrics(y_true: np.ndarray, probs: np.ndarray) -> dict:
    """Accuracy, loss, per-class P/R/F1, confusion matrix (rows true, columns predicted), AUCs, ECE."""
    from sklearn.metrics import (
        accuracy_score,
        confusion_matrix,
        log_loss,
        precision_recall_fscore_support,
    )

    y_true = np.asarray(y_true, dtype=int)
    probs = np.asarray(probs, dtype=np.float64)
    if len(y_true) == 0:
        return {"n": 0}
    scores = probs  # ranks as given: renormalised rows whose sums differ in the last bit would order tied scores
    probs = probs / probs.sum(1, keepdims=True)  # float32 softmax rows sum to 1 only within ~1e-7
    y_pred = probs.argmax(1)
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=LABELS, zero_division=0)
    per_class = {
        c: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": int(s[i])}
        for i, c in enumerate(CLASS_NAMES)
    }
    curves = roc_curves(y_true, scores)
    for c, cur in curves.items():
        per_class[c]["auc"] = cur["auc"]
    # One-vs-rest macro AUC (as sklearn's roc_auc_score(multi_class="ovr")): the mean over the classes present.
    macro_auc = float(np.mean([cur["auc"] for cur in curves.values()])) if curves else None
    return {
        "n": int(len(y_true)),
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "loss": float(log_loss(y_true, probs, labels=LABELS)),
        "per_class": per_class,
        "confusion_matrix": confusion_matrix(y_true, y_pred, labels=LABELS).tolist(),
        "macro_auc": macro_auc,
        "ece": expected_calibration_error(y_true, probs),
    }
