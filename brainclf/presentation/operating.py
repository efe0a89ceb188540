"""The refer rule's operating point in words: the bar, the target it was fitted for and, per source, the validation
slices it answered with their lower bound (the Predict page's operating line). No Streamlit here."""

from __future__ import annotations

from .. import CLASS_NAMES
from ..scoring.operating_point import curve_at, lower_bound, reaches, refers_all, thresholds_for_target
from .wording import SHOWN_CONFIDENCE, count, pct


def operating_summary(calibration: dict | None, tta: bool, thresholds: dict[str, float],
                      target: float | None, confidence: float | None = None) -> str | None:
    """The refer rule's operating point in one short line: the bar, the target, and per source the validation slices
    answered, the share right and its lower bound (at `confidence`, else SHOWN_CONFIDENCE); None without curves."""
    block = (calibration or {}).get("operating_tta" if tta else "operating")
    if not block:
        return None
    base = min(thresholds[c] for c in CLASS_NAMES if c != "notumor")
    nt = f" (No tumour: ≥ {pct(thresholds['notumor'])})" if thresholds["notumor"] > base else ""
    shown = confidence or SHOWN_CONFIDENCE
    parts = []
    for source, curve in block["curves"].items():
        at = curve_at(curve, base)
        right = f", {pct(at['accuracy'])} right (at least {pct(lower_bound(at['correct'], at['answered'], shown))} " \
            f"with {pct(shown, 0)} confidence)" if at["accuracy"] is not None else ""
        parts.append(f"{source} {count(at['answered'])} of {count(at['n'])}{right}")
    # Per-source thresholds (the rule since 2026-12-05, whichever way the bar was searched: every source reaches
    # the target at it) or a card fitted on the pooled validation set before.
    per_source = target and (thresholds in (thresholds_for_target(block, target, confidence),
                                            thresholds_for_target(block, target, confidence, joint=False))
                             or all(reaches(curve_at(c, base), target, confidence) for c in block["curves"].values()))
    bound = bound_clause(confidence) if per_source else ""
    where = "on every source" if per_source else "on the pooled validation set"
    aim = f" aiming at {pct(target)} right{bound} {where}" if target else ""
    said = "Every answer is referred: no confidence reached the target" if refers_all(base) else \
        f"Answered when confidence ≥ {pct(base)}{nt},{aim}"
    return f"{said}. Validation answered: {'; '.join(parts)}." + ("" if refers_all(base) else " The rest are referred.")


def bound_clause(confidence: float | None) -> str:
    """' (its 95 %-confidence lower bound)' after a target the rule asks a lower bound to reach; '' otherwise."""
    return f" (its {pct(confidence, 0)}-confidence lower bound)" if confidence else ""
