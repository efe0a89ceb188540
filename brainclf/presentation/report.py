"""PDF case reports: one page per analysed slice (fpdf2), after a summary page when there are several. No
Streamlit here.

A page holds the image as the model saw it, the Grad-CAM overlay of the predicted class, the calibrated
probabilities, the refer / out-of-distribution status in the Predict page's words (presentation.wording), the
model's name and version, the dates and the intended-use notice; a flagged (out-of-distribution) slice's page
leaves out its Grad-CAM and probabilities, as the Predict page does (the blocks: presentation.report_blocks). It
never holds the upload's file name or DICOM tags: a case is named by the first 12 hex digits of its SHA-256
(what the app's history and the audit log show).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from .. import DISPLAY_NAMES, __version__
from .cases import case_ref
from .report_blocks import footer, images, new_pdf, probabilities, text, title
from .scope import case_scope_line, is_study_card, validated_scope
from .wording import (
    REFER_MEANS,
    ReferRule,
    calibrated,
    leaning,
    pct,
    plural,
    result_status,
    study_note,
    summary_row,
)

_STATUS_COLOURS = {"ood": (180, 30, 30), "refer": (200, 110, 0), "accept": (40, 110, 60)}


@dataclass
class ReportCase:
    """One slice for the report: its Prediction (with model_input and heatmap) and how to judge it."""

    prediction: object  # brainclf.inference.predict.Prediction
    rule: ReferRule
    case_ref: str  # short content hash, never the file name
    analysed: datetime
    tta: bool = False
    study_model: bool = False
    test_accuracy: float | None = None
    faithfulness: dict | None = None
    scope_line: str = ""  # the validated scope and the accuracy measured on other sources (brainclf.presentation.scope)
    scope: str = ""  # what the model was validated on, in a sentence (scope.validated_scope)
    calibrated: bool = True  # the card has a temperature for this flip-TTA mode (an upload's may lack one)


def case_report_pdf(cases: Sequence[ReportCase], created: datetime | None = None) -> bytes:
    """One PDF, one A4 page per case (after a summary page when there are several), as bytes."""
    if not cases:
        raise ValueError("a case report needs at least one analysed slice")
    created = created or datetime.now(UTC)
    pdf = new_pdf("brainclf case report")
    total = len(cases) + (len(cases) > 1)
    if len(cases) > 1:
        _summary_page(pdf, cases, total, created)
    for i, case in enumerate(cases, total - len(cases) + 1):
        _page(pdf, case, i, total, created)
    return bytes(pdf.output())


_SUMMARY_COLUMNS = (("Page", 12), ("Case", 28), ("Answer", 72), ("Status", 48), ("Confidence", 20))


def _summary_page(pdf, cases: Sequence[ReportCase], total: int, created: datetime) -> None:
    """One row per case (its page, case reference, answer, status and confidence: the Predict page's summary
    table without file names), then what each model was validated on."""
    w = pdf.w - 2 * 15
    pdf.add_page()
    pdf.set_margins(15, 15, 15)
    pdf.set_xy(15, 15)
    title(pdf, w)
    pdf.set_font("Helvetica", "B", 11)
    pdf.cell(w, 7, text(f"Summary: {plural(len(cases), 'case')}, one page each, created "
                         f"{created.astimezone(UTC).strftime('%Y-%m-%d %H:%M UTC')}"), new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Helvetica", "B", 9)
    for head, width in _SUMMARY_COLUMNS:
        pdf.cell(width, 6, head, border="B")
    pdf.ln(6)
    pdf.set_font("Helvetica", "", 9)
    for page, case in enumerate(cases, 2):
        if pdf.get_y() > pdf.h - 40:
            pdf.cell(w, 5, text(f"... and {len(cases) - page + 2} more cases on the following pages."))
            break
        pred = case.prediction
        row = summary_row(case.case_ref, "", case.rule, pred.probabilities, pred.predicted, pred.out_of_distribution)
        for value, (_, width) in zip((str(page), case.case_ref, row["Answer"], row["Status"], row["Confidence"]),
                                     _SUMMARY_COLUMNS):
            pdf.cell(width, 5.5, text(value))
        pdf.ln(5.5)
    pdf.ln(3)
    pdf.set_font("Helvetica", "I", 9)
    for scope in dict.fromkeys(c.scope for c in cases if c.scope):
        pdf.multi_cell(w, 4.4, text(scope), new_x="LMARGIN", new_y="NEXT")
    footer(pdf, 1, total, w)


def _page(pdf, case: ReportCase, index: int, total: int, created: datetime) -> None:
    w = pdf.w - 2 * 15
    pdf.add_page()
    pdf.set_margins(15, 15, 15)
    pdf.set_xy(15, 15)
    title(pdf, w)
    _who_and_when(pdf, case, created, w)
    flagged = _status_box(pdf, case, w) == "ood"
    images(pdf, case, w, flagged)
    if not flagged:  # as on the Predict page: a flagged slice's probabilities are not meaningful
        probabilities(pdf, case, w)
    footer(pdf, index, total, w)


def _ref_words(ref: str) -> str:
    """What a case reference is made of (presentation.cases.case_ref): a study's slice adds its slice number."""
    if "-" not in ref:
        return "first 12 hex digits of the image's SHA-256"
    return (f"slice {ref.rsplit('-', 1)[1]} of the study whose SHA-256 begins {ref.rsplit('-', 1)[0]}: the file's, or "
            "for single-frame slices that of their SHA-256s in order")


def _who_and_when(pdf, case: ReportCase, created: datetime, w: float) -> None:
    """Who and when: no file name, no DICOM tags."""
    pred = case.prediction
    pdf.set_font("Helvetica", "", 9.5)
    meta = [("Case", f"{case.case_ref} ({_ref_words(case.case_ref)})"),
            ("Model", f"{pred.model_name}, version {pred.model_version}, file SHA-256 {pred.model_hash}…"
                      + (", flip test-time augmentation on" if case.tta else "")),
            ("Analysed", case.analysed.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")),
            ("Report created", created.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
             + f" by brainclf {__version__}")]
    for key, value in meta:
        pdf.set_font("Helvetica", "B", 9.5)
        pdf.cell(32, 5, key)
        pdf.set_font("Helvetica", "", 9.5)
        pdf.multi_cell(w - 32, 5, text(value), new_x="LMARGIN", new_y="NEXT")
    if case.study_model:
        pdf.set_text_color(150, 20, 20)
        pdf.set_font("Helvetica", "B", 9.5)
        pdf.multi_cell(w, 5, text(f"This model is a {study_note(case.test_accuracy)}."),
                       new_x="LMARGIN", new_y="NEXT")
        pdf.set_text_color(0, 0, 0)
    pdf.ln(2)


def _status_box(pdf, case: ReportCase, w: float) -> str:
    """Status: the out-of-distribution flag leads; the class is then secondary. Returns the status's kind."""
    pred = case.prediction
    cls = DISPLAY_NAMES[pred.predicted]
    status = result_status(case.rule, pred.probabilities, pred.out_of_distribution, pred.ood_reason)
    r, g, b = _STATUS_COLOURS[status.kind]
    pdf.set_draw_color(r, g, b)
    pdf.set_line_width(0.6)
    top = pdf.get_y()
    pdf.set_xy(18, top + 2)
    pdf.set_text_color(r, g, b)
    pdf.set_font("Helvetica", "B", 13)
    secondary = {"ood": f"Model's class, not meaningful for this input: {cls} ({pct(pred.confidence)})",
                 "refer": "M" + leaning(pred.predicted, pred.confidence)[1:] + " (not an answer)"}
    if status.kind in secondary:  # the status leads; the class is only greyed
        pdf.cell(w - 6, 7, text(status.headline), new_x="LMARGIN", new_y="NEXT")
        pdf.set_x(18)
        pdf.set_text_color(130, 130, 130)
        pdf.set_font("Helvetica", "", 10)
        pdf.cell(w - 6, 5, text(secondary[status.kind]), new_x="LMARGIN", new_y="NEXT")
    else:
        pdf.cell(w - 6, 7, text(f"{cls} ({pct(pred.confidence)}) - {status.headline}"),
                 new_x="LMARGIN", new_y="NEXT")
    pdf.set_text_color(0, 0, 0)
    pdf.set_font("Helvetica", "", 9.5)
    pdf.set_x(18)
    means = f" Refer means: {REFER_MEANS}." if status.kind == "refer" else ""
    pdf.multi_cell(w - 6, 4.6, text(status.sentence + means), new_x="LMARGIN", new_y="NEXT")
    if case.scope_line:
        pdf.set_x(18)
        pdf.set_font("Helvetica", "I", 9)
        pdf.multi_cell(w - 6, 4.4, text(case.scope_line), new_x="LMARGIN", new_y="NEXT")
    bottom = pdf.get_y() + 2
    pdf.rect(15, top, w, bottom - top)
    pdf.set_line_width(0.2)
    pdf.set_draw_color(0, 0, 0)
    pdf.set_y(bottom + 4)
    return status.kind


def report_case(prediction, rule: ReferRule, digest: str, analysed: datetime, tta: bool = False,
                card=None) -> ReportCase:
    """A ReportCase from a Prediction and the model's card (for study status and faithfulness figures)."""
    acc = card.test_metrics().get("accuracy") if card is not None else None
    return ReportCase(prediction=prediction, rule=rule, case_ref=case_ref(digest), analysed=analysed, tta=tta,
                      study_model=is_study_card(card),
                      test_accuracy=acc, faithfulness=card.faithfulness if card is not None else None,
                      scope_line=case_scope_line(card, tta) if card is not None else "",
                      scope=validated_scope(card)["sentence"] if card is not None else "",
                      calibrated=calibrated(card, tta))
