"""A study: the slices of one multi-frame DICOM, each with its own result, summed up per study (how many
slices per answer, referred, flagged; the most confident tumour slice), and that summary in one line. No
Streamlit."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

from .. import CLASS_NAMES, DISPLAY_NAMES
from .wording import ReferRule, pct, plural, result_status

NO_TUMOUR = "notumor"


class SliceResult(NamedTuple):
    frame: int  # 0-based
    predicted: str | None  # None: the slice could not be processed
    confidence: float
    kind: str  # "accept", "refer", "ood" (wording.Status.kind) or "error"


@dataclass
class StudySummary:
    slices: int
    answers: dict[str, int] = field(default_factory=dict)  # class → accepted slices, in CLASS_NAMES order
    referred: int = 0
    flagged: int = 0
    failed: int = 0
    top_tumour: SliceResult | None = None  # the most confident tumour slice, neither flagged nor failed


def study_summary(results: list[SliceResult]) -> StudySummary:
    """Counts per status and per accepted answer, and the slice the model is surest shows a tumour (an accepted
    or referred one: a flagged slice's class is not meaningful)."""
    summary = StudySummary(slices=len(results))
    accepted = [r.predicted for r in results if r.kind == "accept"]
    summary.answers = {c: accepted.count(c) for c in CLASS_NAMES if c in accepted}
    summary.referred = sum(r.kind == "refer" for r in results)
    summary.flagged = sum(r.kind == "ood" for r in results)
    summary.failed = sum(r.kind == "error" for r in results)
    tumours = [r for r in results if r.kind in ("accept", "refer") and r.predicted not in (None, NO_TUMOUR)]
    summary.top_tumour = max(tumours, key=lambda r: (r.confidence, -r.frame), default=None)
    return summary


def slice_result(frame: int, result, rule: ReferRule) -> SliceResult:
    """One slice's Prediction (or its error message) as the summary counts it."""
    if result is None or isinstance(result, str):
        return SliceResult(frame, None, 0.0, "error")
    kind = result_status(rule, result.probabilities, result.out_of_distribution).kind
    return SliceResult(frame, result.predicted, result.confidence, kind)


def study_summary_text(summary) -> str:
    """A study.StudySummary in one line: 'Study of 12 slices: Glioma 5, No tumour 3 · 3 referred · 1 flagged ·
    most confident tumour slice: 7 (Glioma, 98.0 %).'"""
    answers = ", ".join(f"{DISPLAY_NAMES.get(c, c)} {n}" for c, n in summary.answers.items()) or "no accepted answer"
    parts = [f"Study of {plural(summary.slices, 'slice')}: {answers}", f"{summary.referred} referred",
             f"{summary.flagged} flagged as not like a brain MRI"]
    if summary.failed:
        parts.append(f"{summary.failed} not processed")
    top = summary.top_tumour
    referred = ", referred: not an answer" if top and top.kind == "refer" else ""
    parts.append(f"most confident tumour slice: {top.frame + 1} ({DISPLAY_NAMES.get(top.predicted, top.predicted)}, "
                 f"{pct(top.confidence)}{referred})" if top else "no slice leans to a tumour")
    return " · ".join(parts) + "."
