"""Clinicians' rates from a card's per-image prediction rows, with NumPy only: the Home page shows them
before anyone has needed scikit-learn (~1 s to import on a 2-core laptop; see brainclf.scoring.metrics)."""

from __future__ import annotations

import numpy as np

from .. import CLASS_NAMES


def arrays_from_rows(rows: list[dict]) -> tuple[np.ndarray, np.ndarray]:
    """Per-image prediction rows (path, true, pred, probs) → (y_true, probs)."""
    y = np.array([CLASS_NAMES.index(r["true"]) for r in rows], dtype=int)
    p = np.array([r["probs"] for r in rows], dtype=np.float64).reshape(-1, len(CLASS_NAMES))
    return y, p


def sensitivity_specificity(rows: list[dict]) -> list[dict]:
    """Clinicians' terms from per-image rows: "any tumour vs no tumour" first, then each class one-vs-rest.

    Returns:
        [{"finding", "sensitivity", "specificity", "positives", "negatives"}]; a rate is None without cases.
    """
    y, p = arrays_from_rows(rows)
    pred = p.argmax(1) if len(p) else np.zeros(0, int)
    nt = CLASS_NAMES.index("notumor")
    tasks = [("Any tumour (vs no tumour)", y != nt, pred != nt)]
    tasks += [(c, y == i, pred == i) for i, c in enumerate(CLASS_NAMES)]
    out = []
    for name, truth, said in tasks:
        pos, neg = int(truth.sum()), int((~truth).sum())
        out.append({"finding": name, "positives": pos, "negatives": neg,
                    "sensitivity": float((said & truth).sum() / pos) if pos else None,
                    "specificity": float((~said & ~truth).sum() / neg) if neg else None})
    return out
