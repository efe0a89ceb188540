"""Label audit: images a person should look at before trusting a dataset's labels.

Two independent signals, each a list for a person to judge (nothing is relabelled automatically):
- **CT, not MRI.** On CT the skull is the brightest tissue, a saturated ring around the head; on MRI bone
  is dark. `ct_ring_score` is the share of near-white pixels in the outer band of the head: measured on
  Kaggle Testing, the CT slices it finds score 0.6-0.8 and MR slices stay below ~0.3.
- **The model confidently disagrees** (confident-learning style): on images the model did not train on, the
  labelled class gets < 10 % while another class reaches its own average self-confidence.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .. import CLASS_NAMES
from ..data.datasets import Sample, relative_path
from ..data.pool import decode_many
from ..errors import ImageError
from ..inference.ood import CT_RING_THRESHOLD, ct_ring_score
from ..input.preprocess import decode_image

DISAGREE_BELOW = 0.10


def _score(s: Sample) -> float | None:
    try:
        return ct_ring_score(decode_image(s.path))
    except ImageError:
        return None


def audit_labels(samples: list[Sample], root: str | Path, rows: list[dict] | None = None) -> list[dict]:
    """Suspicious images of `samples`, most suspicious first.

    Args:
        samples: labelled images.
        root: their folder (paths are reported relative to it).
        rows: optional held-out predictions (path relative to root, true, probs), e.g. a card's
            test_predictions, for the disagreement signal.
    Returns:
        [{"path", "label", "reasons": [...], "ct_ring_score", "model_says"}] for flagged images only.
    """
    scores = list(decode_many(samples, _score))
    by_path = {r["path"]: r for r in rows or []}
    self_conf = {}
    if rows:
        probs = np.array([r["probs"] for r in rows])
        labels = np.array([CLASS_NAMES.index(r["true"]) for r in rows])
        self_conf = {c: float(probs[labels == i, i].mean()) for i, c in enumerate(CLASS_NAMES) if (labels == i).any()}
    out = []
    for s, score in zip(samples, scores):
        rel = relative_path(s.path, root)
        reasons, says = [], None
        if score is not None and score >= CT_RING_THRESHOLD:
            reasons.append(f"looks like CT, not MRI (bright skull ring {score:.2f})")
        r = by_path.get(rel)
        if r is not None:
            p = np.asarray(r["probs"])
            top = int(p.argmax())
            if p[s.label] < DISAGREE_BELOW and top != s.label and p[top] >= self_conf.get(CLASS_NAMES[top], 1.0):
                says = CLASS_NAMES[top]
                reasons.append(f"model says {says} ({p[top]:.0%}); label {s.class_name} gets {p[s.label]:.0%}")
        if reasons:
            out.append({"path": rel, "label": s.class_name, "reasons": reasons,
                        "ct_ring_score": None if score is None else round(score, 3), "model_says": says})
    return sorted(out, key=lambda d: (-len(d["reasons"]), -(d["ct_ring_score"] or 0)))
