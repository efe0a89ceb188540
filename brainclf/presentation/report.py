"""PDF case reports: one page per analysed slice (fpdf2), after a summary page when there are several. No
Streamlit here.

A page holds the image as the model saw it, the Grad-CAM overlay of the predicted class, the calibrated
probabilities, the refer / out-of-distribution status in the Predict page's words (brainclf.presentation.wording), the
model's name and version, the dates and the intended-use notice. It never holds the upload's file name or
DICOM tags: a case is named by the first 12 hex digits of its SHA-256 (what the app's history and the
audit log show).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
from PIL import Image

from .. import CLASS_NAMES, DISPLAY_NAMES, __version__
from ..inference.explain import overlay_heatmap
from .cases import case_ref
from .scope import case_scope_line, validated_scope
from .wording import (
    INTENDED_USE,
    REFER_MEANS,
    ReferRule,
    gradcam_caveat,
    is_study_model,
    leaning,
    pct,
    pct_pair,
    plural,
    result_status,
    study_note,
    summary_row,
)

# The PDF core fonts cover Latin-1 only: the few typographic characters the wording uses are spelled out.
_LATIN1 = str.maketrans({"—": "-", "–": "-", "≥": ">=", "≤": "<=", "×": "x", "…": "...", "“": '"', "”": '"',
                         "‘": "'", "’": "'", "\u00a0": " ", "\u202f": " "})
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


def _text(s: str) -> str:
    return s.translate(_LATIN1).encode("latin-1", "replace").decode("latin-1")


def _gray(model_input: np.ndarray) -> np.ndarray:
    x = np.asarray(model_input, dtype=np.float32)
    if x.ndim == 3:
        x = x[..., 0] if x.shape[-1] == 1 else x.mean(-1)
    return x


def _png(arr: np.ndarray, side: int = 320) -> Image.Image:
    """uint8 or [0, 1] float array → PIL image upscaled (nearest) so viewers do not blur it."""
    if arr.dtype != np.uint8:
        arr = (np.clip(arr, 0, 1) * 255).round().astype(np.uint8)
    img = Image.fromarray(arr)
    return img.resize((side, side), Image.Resampling.NEAREST) if img.size[0] < side else img


def _overlay(pred) -> Image.Image | None:
    if pred.heatmap is None or pred.model_input is None:
        return None
    return _png(overlay_heatmap(pred.model_input, pred.heatmap, opacity=0.5))


def case_report_pdf(cases: Sequence[ReportCase], created: datetime | None = None) -> bytes:
    """One PDF, one A4 page per case (after a summary page when there are several), as bytes."""
    from fpdf import FPDF

    if not cases:
        raise ValueError("a case report needs at least one analysed slice")
    created = created or datetime.now(UTC)
    pdf = FPDF(format="A4", unit="mm")
    pdf.set_auto_page_break(auto=False)
    pdf.set_creator(f"brainclf {__version__}")
    pdf.set_title("brainclf case report")
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
    _title(pdf, w)
    pdf.set_font("Helvetica", "B", 11)
    pdf.cell(w, 7, _text(f"Summary: {plural(len(cases), 'case')}, one page each, created "
                         f"{created.astimezone(UTC).strftime('%Y-%m-%d %H:%M UTC')}"), new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Helvetica", "B", 9)
    for head, width in _SUMMARY_COLUMNS:
        pdf.cell(width, 6, head, border="B")
    pdf.ln(6)
    pdf.set_font("Helvetica", "", 9)
    for page, case in enumerate(cases, 2):
        if pdf.get_y() > pdf.h - 40:
            pdf.cell(w, 5, _text(f"... and {len(cases) - page + 2} more cases on the following pages."))
            break
        pred = case.prediction
        row = summary_row(case.case_ref, "", case.rule, pred.probabilities, pred.predicted, pred.out_of_distribution)
        for value, (_, width) in zip((str(page), case.case_ref, row["Answer"], row["Status"], row["Confidence"]),
                                     _SUMMARY_COLUMNS):
            pdf.cell(width, 5.5, _text(value))
        pdf.ln(5.5)
    pdf.ln(3)
    pdf.set_font("Helvetica", "I", 9)
    for scope in dict.fromkeys(c.scope for c in cases if c.scope):
        pdf.multi_cell(w, 4.4, _text(scope), new_x="LMARGIN", new_y="NEXT")
    _footer(pdf, 1, total, w)


def _page(pdf, case: ReportCase, index: int, total: int, created: datetime) -> None:
    w = pdf.w - 2 * 15
    pdf.add_page()
    pdf.set_margins(15, 15, 15)
    pdf.set_xy(15, 15)
    _title(pdf, w)
    _who_and_when(pdf, case, created, w)
    _status_box(pdf, case, w)
    _images(pdf, case, w)
    _probabilities(pdf, case, w)
    _footer(pdf, index, total, w)


def _title(pdf, w: float) -> None:
    pdf.set_font("Helvetica", "B", 16)
    pdf.cell(w, 8, "brainclf case report", new_x="LMARGIN", new_y="NEXT")
    # Intended use: first thing on every page.
    pdf.set_fill_color(253, 236, 236)
    pdf.set_text_color(150, 20, 20)
    pdf.set_font("Helvetica", "B", 11)
    pdf.cell(w, 8, _text("Intended use: " + INTENDED_USE), border=1, fill=True, new_x="LMARGIN", new_y="NEXT")
    pdf.set_text_color(0, 0, 0)
    pdf.ln(2)


def _who_and_when(pdf, case: ReportCase, created: datetime, w: float) -> None:
    """Who and when: no file name, no DICOM tags."""
    pred = case.prediction
    pdf.set_font("Helvetica", "", 9.5)
    meta = [("Case", f"{case.case_ref} (first 12 hex digits of the image's SHA-256)"),
            ("Model", f"{pred.model_name}, version {pred.model_version}, file SHA-256 {pred.model_hash}"
                      + (", flip test-time augmentation on" if case.tta else "")),
            ("Analysed", case.analysed.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")),
            ("Report created", created.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
             + f" by brainclf {__version__}")]
    for key, value in meta:
        pdf.set_font("Helvetica", "B", 9.5)
        pdf.cell(32, 5, key)
        pdf.set_font("Helvetica", "", 9.5)
        pdf.multi_cell(w - 32, 5, _text(value), new_x="LMARGIN", new_y="NEXT")
    if case.study_model:
        pdf.set_text_color(150, 20, 20)
        pdf.set_font("Helvetica", "B", 9.5)
        pdf.multi_cell(w, 5, _text(f"This model is a {study_note(case.test_accuracy)}."),
                       new_x="LMARGIN", new_y="NEXT")
        pdf.set_text_color(0, 0, 0)
    pdf.ln(2)


def _status_box(pdf, case: ReportCase, w: float) -> None:
    """Status: the out-of-distribution flag leads; the class is then secondary."""
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
        pdf.cell(w - 6, 7, _text(status.headline), new_x="LMARGIN", new_y="NEXT")
        pdf.set_x(18)
        pdf.set_text_color(130, 130, 130)
        pdf.set_font("Helvetica", "", 10)
        pdf.cell(w - 6, 5, _text(secondary[status.kind]), new_x="LMARGIN", new_y="NEXT")
    else:
        pdf.cell(w - 6, 7, _text(f"{cls} ({pct(pred.confidence)}) - {status.headline}"),
                 new_x="LMARGIN", new_y="NEXT")
    pdf.set_text_color(0, 0, 0)
    pdf.set_font("Helvetica", "", 9.5)
    pdf.set_x(18)
    means = f" Refer means: {REFER_MEANS}." if status.kind == "refer" else ""
    pdf.multi_cell(w - 6, 4.6, _text(status.sentence + means), new_x="LMARGIN", new_y="NEXT")
    if case.scope_line:
        pdf.set_x(18)
        pdf.set_font("Helvetica", "I", 9)
        pdf.multi_cell(w - 6, 4.4, _text(case.scope_line), new_x="LMARGIN", new_y="NEXT")
    bottom = pdf.get_y() + 2
    pdf.rect(15, top, w, bottom - top)
    pdf.set_line_width(0.2)
    pdf.set_draw_color(0, 0, 0)
    pdf.set_y(bottom + 4)


def _images(pdf, case: ReportCase, w: float) -> None:
    """Images: what the model saw, and where its evidence for the predicted class lies."""
    pred = case.prediction
    cls = DISPLAY_NAMES[pred.predicted]
    side = (w - 6) / 2
    top = pdf.get_y()
    size = pred.model_input.shape[0] if pred.model_input is not None else 0
    pdf.set_font("Helvetica", "B", 9.5)
    pdf.cell(side, 5, _text(f"As the model saw it ({size} x {size} px)"))
    pdf.set_x(15 + side + 6)
    pdf.cell(side, 5, _text(f"Grad-CAM for {cls} (red: most evidence)"), new_x="LMARGIN", new_y="NEXT")
    if pred.model_input is not None:
        pdf.image(_png(_gray(pred.model_input)), x=15, y=top + 6, w=side, h=side)
    overlay = _overlay(pred)
    if overlay is not None:
        pdf.image(overlay, x=15 + side + 6, y=top + 6, w=side, h=side)
    else:
        pdf.set_xy(15 + side + 6, top + 6 + side / 2)
        pdf.set_font("Helvetica", "I", 9.5)
        pdf.cell(side, 5, "No Grad-CAM for this model.", align="C")
    pdf.set_y(top + 6 + side + 2)
    pdf.set_font("Helvetica", "I", 8.5)
    pdf.multi_cell(w, 4.2, _text(gradcam_caveat(pred.predicted, case.faithfulness)),
                   new_x="LMARGIN", new_y="NEXT")
    pdf.ln(3)


def _probabilities(pdf, case: ReportCase, w: float) -> None:
    """Calibrated probabilities as bars."""
    pred = case.prediction
    cls = DISPLAY_NAMES[pred.predicted]
    pdf.set_font("Helvetica", "B", 10.5)
    pdf.cell(w, 6, "Calibrated probabilities", new_x="LMARGIN", new_y="NEXT")
    bar_w = w - 40 - 22
    for c in CLASS_NAMES:
        p = float(pred.probabilities[c])
        y = pdf.get_y()
        pdf.set_font("Helvetica", "B" if c == pred.predicted else "", 9.5)
        pdf.cell(40, 6, _text(DISPLAY_NAMES[c]))
        pdf.set_fill_color(230, 234, 240)
        pdf.rect(15 + 40, y + 1, bar_w, 4, style="F")
        pdf.set_fill_color(31, 95, 168)
        if p > 0:
            pdf.rect(15 + 40, y + 1, max(bar_w * p, 0.3), 4, style="F")
        pdf.set_x(15 + 40 + bar_w + 2)
        pdf.cell(20, 6, _text(pct(p)), align="R", new_x="LMARGIN", new_y="NEXT")
    thr = case.rule.thresholds[pred.predicted]
    pdf.set_font("Helvetica", "", 8.5)
    # The threshold as the status sentence says it (pct_pair with the confidence), never in a second format.
    pdf.multi_cell(w, 4.2, _text(f"Refer threshold for a {cls} answer: {pct_pair(pred.confidence, thr)[1]}"
                                 + ("" if case.rule.fitted else " (fixed default, not validated)") + "."),
                   new_x="LMARGIN", new_y="NEXT")


def _footer(pdf, index: int, total: int, w: float) -> None:
    pdf.set_y(pdf.h - 20)
    pdf.set_font("Helvetica", "", 8)
    pdf.set_text_color(90, 90, 90)
    pdf.multi_cell(w, 4, _text(f"{INTENDED_USE} No patient identifiers: the upload's name and DICOM tags are not "
                               f"part of this report. Page {index} of {total}."), align="C")
    pdf.set_text_color(0, 0, 0)


def report_case(prediction, rule: ReferRule, digest: str, analysed: datetime, tta: bool = False,
                card=None) -> ReportCase:
    """A ReportCase from a Prediction and the model's card (for study status and faithfulness figures)."""
    acc = card.test_metrics().get("accuracy") if card is not None else None
    return ReportCase(prediction=prediction, rule=rule, case_ref=case_ref(digest), analysed=analysed, tta=tta,
                      study_model=bool(card is not None and is_study_model(card.architecture, acc)),
                      test_accuracy=acc, faithfulness=card.faithfulness if card is not None else None,
                      scope_line=case_scope_line(card, tta) if card is not None else "",
                      scope=validated_scope(card)["sentence"] if card is not None else "")
