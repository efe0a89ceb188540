"""The blocks of a PDF case report page (fpdf2) that show the slice and the model's output: the title and the
footer every page has, the images (the slice as the model saw it, its Grad-CAM) and the calibrated
probabilities. A flagged (out-of-distribution) slice gets neither its Grad-CAM nor its probabilities, as on the
Predict page, where they are behind "Show the model's output anyway". No Streamlit here."""

from __future__ import annotations

import numpy as np
from PIL import Image

from .. import CLASS_NAMES, DISPLAY_NAMES, __version__
from ..inference.explain import overlay_heatmap
from .wording import INTENDED_USE, gradcam_caveat, pct, pct_pair

# The PDF core fonts cover Latin-1 only: the few typographic characters the wording uses are spelled out.
_LATIN1 = str.maketrans({"—": "-", "–": "-", "≥": ">=", "≤": "<=", "×": "x", "…": "...", "“": '"', "”": '"',
                         "‘": "'", "’": "'", "\u00a0": " ", "\u202f": " "})


def new_pdf(title: str):
    """An A4 fpdf2 document in millimetres without automatic page breaks, naming brainclf and `title`."""
    from fpdf import FPDF

    pdf = FPDF(format="A4", unit="mm")
    pdf.set_auto_page_break(auto=False)
    pdf.set_creator(f"brainclf {__version__}")
    pdf.set_title(title)
    return pdf


def text(s: str) -> str:
    return s.translate(_LATIN1).encode("latin-1", "replace").decode("latin-1")


def gray(model_input: np.ndarray) -> np.ndarray:
    x = np.asarray(model_input, dtype=np.float32)
    if x.ndim == 3:
        x = x[..., 0] if x.shape[-1] == 1 else x.mean(-1)
    return x


def png(arr: np.ndarray, side: int = 320) -> Image.Image:
    """uint8 or [0, 1] float array → PIL image upscaled (nearest) so viewers do not blur it."""
    if arr.dtype != np.uint8:
        arr = (np.clip(arr, 0, 1) * 255).round().astype(np.uint8)
    img = Image.fromarray(arr)
    return img.resize((side, side), Image.Resampling.NEAREST) if img.size[0] < side else img


def _overlay_of(pred) -> Image.Image | None:
    if pred.heatmap is None or pred.model_input is None:
        return None
    return png(overlay_heatmap(pred.model_input, pred.heatmap, opacity=0.5))


def title(pdf, w: float) -> None:
    pdf.set_font("Helvetica", "B", 16)
    pdf.cell(w, 8, "brainclf case report", new_x="LMARGIN", new_y="NEXT")
    # Intended use: first thing on every page.
    pdf.set_fill_color(253, 236, 236)
    pdf.set_text_color(150, 20, 20)
    pdf.set_font("Helvetica", "B", 11)
    pdf.cell(w, 8, text("Intended use: " + INTENDED_USE), border=1, fill=True, new_x="LMARGIN", new_y="NEXT")
    pdf.set_text_color(0, 0, 0)
    pdf.ln(2)


FLAGGED_NOTE = ("Probabilities and Grad-CAM are not shown: this slice is not like the brain MRI slices the model "
                "was validated on, so the model's output is not meaningful for it.")


def images(pdf, case, w: float, flagged: bool = False) -> None:
    """Images: what the model saw, and where its evidence for the predicted class lies; for a flagged slice, the
    slice alone and why its Grad-CAM and probabilities are left out."""
    pred = case.prediction
    side = (w - 6) / 2
    top = pdf.get_y()
    size = pred.model_input.shape[0] if pred.model_input is not None else 0
    pdf.set_font("Helvetica", "B", 9.5)
    pdf.cell(side, 5, text(f"As the model saw it ({size} x {size} px)"))
    pdf.set_x(15 + side + 6)
    if not flagged:
        pdf.cell(side, 5, text(f"Grad-CAM for {DISPLAY_NAMES[pred.predicted]} (red: most evidence)"))
    if pred.model_input is not None:
        pdf.image(png(gray(pred.model_input)), x=15, y=top + 6, w=side, h=side)
    overlay = None if flagged else _overlay_of(pred)
    if overlay is not None:
        pdf.image(overlay, x=15 + side + 6, y=top + 6, w=side, h=side)
    else:
        pdf.set_xy(15 + side + 6, top + 6 + side / 2 - 10)
        pdf.set_font("Helvetica", "I", 9.5)
        pdf.multi_cell(side, 5, text(FLAGGED_NOTE) if flagged else "No Grad-CAM for this model.", align="C")
    pdf.set_y(top + 6 + side + 2)
    if not flagged:
        pdf.set_font("Helvetica", "I", 8.5)
        pdf.multi_cell(w, 4.2, text(gradcam_caveat(pred.predicted, case.faithfulness)), new_x="LMARGIN",
                       new_y="NEXT")
    pdf.ln(3)


def probabilities(pdf, case, w: float) -> None:
    """Calibrated probabilities as bars."""
    pred = case.prediction
    cls = DISPLAY_NAMES[pred.predicted]
    pdf.set_font("Helvetica", "B", 10.5)
    title = "Calibrated probabilities" if case.calibrated else "Probabilities (not calibrated: the model's card has " \
        "no temperature for this mode)"
    pdf.cell(w, 6, title, new_x="LMARGIN", new_y="NEXT")
    bar_w = w - 40 - 22
    for c in CLASS_NAMES:
        p = float(pred.probabilities[c])
        y = pdf.get_y()
        pdf.set_font("Helvetica", "B" if c == pred.predicted else "", 9.5)
        pdf.cell(40, 6, text(DISPLAY_NAMES[c]))
        pdf.set_fill_color(230, 234, 240)
        pdf.rect(15 + 40, y + 1, bar_w, 4, style="F")
        pdf.set_fill_color(31, 95, 168)
        if p > 0:
            pdf.rect(15 + 40, y + 1, max(bar_w * p, 0.3), 4, style="F")
        pdf.set_x(15 + 40 + bar_w + 2)
        pdf.cell(20, 6, text(pct(p)), align="R", new_x="LMARGIN", new_y="NEXT")
    thr = case.rule.thresholds[pred.predicted]
    pdf.set_font("Helvetica", "", 8.5)
    # The threshold as the status sentence says it (pct_pair with the confidence), never in a second format.
    pdf.multi_cell(w, 4.2, text(f"Refer threshold for a {cls} answer: {pct_pair(pred.confidence, thr)[1]}"
                                + ("" if case.rule.fitted else " (fixed default, not validated)") + "."),
                   new_x="LMARGIN", new_y="NEXT")


def footer(pdf, index: int, total: int, w: float) -> None:
    pdf.set_y(pdf.h - 20)
    pdf.set_font("Helvetica", "", 8)
    pdf.set_text_color(90, 90, 90)
    pdf.multi_cell(w, 4, text(f"{INTENDED_USE} No patient identifiers: the upload's name and DICOM tags are not "
                               f"part of this report. Page {index} of {total}."), align="C")
    pdf.set_text_color(0, 0, 0)


