"""The refer rule's operating point: a risk–coverage curve per source, fitted on validation, and the thresholds
for any accepted-accuracy target (an admin setting), chosen so that *every* source reaches the target on its own
validation part.

Why per source: on the pooled validation set the small external source hides behind the large primary one. For
the multi-source default (2026-12-05, validation, flip TTA) a threshold for 98 % pooled accepted accuracy
accepted external answers that were 88 % right; asking each source to reach 98 % accepts them at 100 %.

A curve stores, at each confidence cut (highest first; ties are one cut, as `confidence >= threshold` accepts
them all), how many validation slices would be answered and how many of those were right: integers, so the
target comparison is exact and a card can be re-read without the data.

    fit_curves(y, calibrated probabilities, source of each) ─► calibration["operating" (+ "_tta")]
    thresholds_for_target(that block, target) ─► {class: refer threshold}
"""

from __future__ import annotations

import numpy as np
from scipy.stats import beta

from .. import CLASS_NAMES

DEFAULT_TARGET = 0.98  # accepted accuracy on each source's validation part, unless the server sets another
NOTUMOR = CLASS_NAMES.index("notumor")
FALLBACK_REFER_BELOW = 0.90  # the refer bar of a card without one fitted on validation: fixed, unvalidated


def risk_coverage(y: np.ndarray, probs: np.ndarray, referred: np.ndarray | None = None) -> dict:
    """At each confidence cut, highest first: {"threshold", "answered", "correct"} lists and the total "n". Rows
    marked `referred` are referred at every cut: they count in "n" only."""
    y = np.asarray(y)
    n = len(y)
    if referred is not None:
        y, probs = y[~referred], probs[~referred]
    conf, correct = probs.max(1), probs.argmax(1) == y
    order = np.argsort(-conf, kind="stable")
    conf_sorted = conf[order]
    cut = np.r_[conf_sorted[1:] != conf_sorted[:-1], True] if len(order) else np.zeros(0, bool)
    return {"n": int(n), "threshold": [float(t) for t in conf_sorted[cut]],
            "answered": (np.arange(1, len(order) + 1)[cut]).tolist(),
            "correct": np.cumsum(correct[order])[cut].astype(int).tolist()}


def lower_bound(correct: int, answered: int, confidence: float) -> float:
    """One-sided Clopper–Pearson lower bound of an accuracy seen as `correct` of `answered`: the true accuracy is
    at least this with probability `confidence` (0.0 where nothing was right)."""
    return float(beta.ppf(1 - confidence, correct, answered - correct + 1)) if correct else 0.0


def clopper_pearson(k: int, n: int, confidence: float = 0.95) -> list[float]:
    """Exact two-sided Clopper–Pearson interval of `k` successes in `n` trials: each side is lower_bound's
    one-sided bound at half the remaining risk, the upper one taken from the failures."""
    one_sided = 1 - (1 - confidence) / 2
    return [lower_bound(k, n, one_sided), 1.0 - lower_bound(n - k, n, one_sided)]


def slices_needed(target: float, confidence: float) -> int:
    """How many answered validation slices, all right, it takes for the lower bound at `confidence` to reach
    `target`: the fewest a source's validation part must answer before such a promise can be made at all."""
    n = max(1, int(np.ceil(np.log(1 - confidence) / np.log(target))))
    while lower_bound(n, n, confidence) < target:  # the closed form, guarded against rounding
        n += 1
    return n


# The bar where no cut reaches the target: one float32 step above 1, so that a saturated answer (a calibrated
# confidence of exactly 1.0, common in float32 at temperatures up to ~1.6) is referred too; a bar of 1.0 itself is
# a cut that passed. The card schema's Threshold allows it.
REFER_ALL = float(np.nextafter(np.float32(1), np.float32(2)))


def refers_all(threshold: float) -> bool:
    """Whether a bar is REFER_ALL's: no cut reached the target on validation, so nothing is answered."""
    return float(threshold) > 1.0


def threshold_for(curve: dict, target: float, confidence: float | None = None) -> float:
    """The lowest threshold whose answered slices were at least `target` accurate; REFER_ALL where none was.

    With `confidence`, "at least `target` accurate" means the lower bound at that confidence, not the share seen:
    a bar fitted on few slices then asks for more of them (149 right of 149 for 98 % at 95 % confidence)."""
    # c / a, not c >= target * a: the same division as a running accuracy, so a bar never moves by rounding. The
    # bound is below the share seen, so it is computed only where the share reaches the target.
    ok = _passing_cuts(curve, target, confidence)
    return float(ok[-1]) if ok else REFER_ALL


def _passing_cuts(curve: dict, target: float, confidence: float | None) -> list[float]:
    return [t for t, a, c in zip(curve["threshold"], curve["answered"], curve["correct"])
            if a and c / a >= target and (confidence is None or lower_bound(c, a, confidence) >= target)]


def joint_threshold(curves: list[dict], target: float, confidence: float | None = None) -> float:
    """The lowest threshold at which every source's answered slices reach `target` at once; REFER_ALL where some
    source reaches it at no cut of its own, or no cut suits them all.

    Accuracy among the answered is not monotone in the threshold, so neither the highest of the sources' own
    lowest bars (threshold_for) nor any one source's cuts settle it: every cut of every source is tried, lowest
    first; a source that answers nothing at a cut passes it."""
    # Not threshold_for(...) >= 1.0: a source whose only passing cut is 1.0 (saturated answers) does reach it.
    if not curves or not all(_passing_cuts(c, target, confidence) for c in curves):
        return REFER_ALL
    cuts = np.unique(np.concatenate([np.asarray(c["threshold"], float) for c in curves]))  # ascending
    passes = np.ones(len(cuts), bool)
    for c in curves:
        desc = np.asarray(c["threshold"], float)
        last = np.searchsorted(-desc, -cuts, side="right") - 1  # each cut: the last of this curve's cuts at or above
        answered = np.where(last >= 0, np.asarray(c["answered"], int)[np.maximum(last, 0)], 0)
        correct = np.where(last >= 0, np.asarray(c["correct"], int)[np.maximum(last, 0)], 0)
        passes &= [reaches({"answered": int(a), "correct": int(k)}, target, confidence)
                   for a, k in zip(answered, correct)]
    hit = np.flatnonzero(passes)
    return float(cuts[hit[0]]) if len(hit) else REFER_ALL


def reaches(at: dict, target: float, confidence: float | None = None) -> bool:
    """Whether a source's answered slices at one cut (curve_at) reach `target` (its lower bound at `confidence`,
    where given); answering nothing reaches it."""
    a, c = at["answered"], at["correct"]
    return not a or (c / a >= target and (confidence is None or lower_bound(c, a, confidence) >= target))


def curve_at(curve: dict, threshold: float) -> dict:
    """{"n", "answered", "correct", "coverage", "accuracy"} of one curve at a threshold."""
    i = [k for k, t in enumerate(curve["threshold"]) if t >= threshold]
    answered, correct = (curve["answered"][i[-1]], curve["correct"][i[-1]]) if i else (0, 0)
    n = curve["n"]
    return {"n": n, "answered": answered, "correct": correct, "coverage": answered / n if n else 0.0,
            "accuracy": correct / answered if answered else None}


def fit_curves(y: np.ndarray, probs: np.ndarray, sources: list[str] | np.ndarray) -> dict:
    """{"curves": {source: curve}, "worst_notumor_miss": the highest "no tumour" probability of a validation
    tumour called "no tumour" (0.0: none was)}; `probs` are calibrated.

    The curves are those of the rule as applied: a "no tumour" answer at or below the worst miss is referred at
    every bar (thresholds_for_target's "no tumour" bar), so it is never counted as answered. Counted, a bar could
    reach the target only through right "no tumour" answers that the rule then refers, and miss it as applied."""
    y, sources = np.asarray(y, int), np.asarray(sources)
    missed = (probs.argmax(1) == NOTUMOR) & (y != NOTUMOR)
    worst = float(probs[missed, NOTUMOR].max()) if missed.any() else 0.0
    below_bar = referred_notumor(probs, strict_notumor_bar(worst))
    return {"curves": {str(s): risk_coverage(y[sources == s], probs[sources == s], below_bar[sources == s])
                       for s in dict.fromkeys(sources)},
            "worst_notumor_miss": worst}


def thresholds_for_target(block: dict, target: float, confidence: float | None = None,
                          joint: bool = True) -> dict[str, float]:
    """{class: refer threshold}: the lowest at which every source reaches `target` on validation together (or
    its lower bound at `confidence` does) and, for "no tumour", also one float32 step above the most confident
    missed tumour. `joint=False`: the highest of the sources' own bars, the rule of cards fitted 2026-12-05/06."""
    curves = list(block["curves"].values())
    base = (joint_threshold(curves, target, confidence) if joint
            else max((threshold_for(c, target, confidence) for c in curves), default=REFER_ALL))
    strict = strict_notumor_bar(block.get("worst_notumor_miss", 0.0))
    return {c: max(base, strict) if c == "notumor" else base for c in CLASS_NAMES}


def strict_notumor_bar(worst: float | None) -> float:
    """The "no tumour" bar over the most confident validation tumour called "no tumour" (`worst`): one float32 step
    above it, as the float32 probabilities a Predictor compares with it; 0.0 where none was (no stricter bar)."""
    return float(np.nextafter(np.float32(worst), np.float32(2))) if worst else 0.0


def referred_notumor(probs: np.ndarray, bar: float) -> np.ndarray:
    """The "no tumour" answers under the strict "no tumour" `bar`: referred at every cut of a risk-coverage curve,
    as the rule applies them (every curve of one rule counts them so: validation, held-out, a site's)."""
    return (probs.argmax(1) == NOTUMOR) & (probs[:, NOTUMOR] < bar) if len(probs) else np.zeros(0, bool)


def with_fallback_bar(thresholds: dict[str, float], fallback: float | None = None) -> dict[str, float]:
    """Per-class refer bars as every reader applies them: `thresholds` where any is fitted, else `fallback`
    (default FALLBACK_REFER_BELOW) for every class."""
    if any(float(t) > 0 for t in thresholds.values()):
        return {c: float(thresholds.get(c, 0.0)) for c in CLASS_NAMES}
    return dict.fromkeys(CLASS_NAMES, FALLBACK_REFER_BELOW if fallback is None else fallback)
