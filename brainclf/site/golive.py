"""The one-page go-live report of a site run (fpdf2, as the case report): what was measured at the site, on
which slices, before and after calibration and adaptation, and the Kaggle `Testing` check."""

from __future__ import annotations

from datetime import UTC, datetime

from .. import __version__
from ..errors import ConfigError
from ..presentation.report_blocks import new_pdf
from ..presentation.report_blocks import text as _text
from ..presentation.wording import INTENDED_USE, plural
from .split import PARTS, left_out_words
from .summary import ROWS, cell, columns, forgetting, promise, saved_models


def site_report_pdf(state: dict, created: datetime | None = None) -> bytes:
    """The go-live report of a site run's state (brainclf.site.run), as PDF bytes.

    Raises:
        ConfigError: the run has not validated the model yet.
    """
    if not (state.get("steps") or {}).get("validate"):
        raise ConfigError("Run the validate step before asking for a go-live report.")
    created = created or datetime.now(UTC)
    pdf = new_pdf("brainclf go-live report")
    pdf.add_page()
    w = pdf.w - pdf.l_margin - pdf.r_margin
    pdf.set_font("Helvetica", "B", 16)
    pdf.multi_cell(w, 8, _text(f"Go-live report: site {state['site']}"), new_x="LMARGIN", new_y="NEXT")  # wraps
    pdf.set_font("Helvetica", "", 9.5)
    model, split = state["model"], {k: len(state["split"][k]) for k in PARTS}
    pdf.multi_cell(w, 5, _text(
        f"Model {model['name']} {model['version']} (file {model['sha256'][:12]}). Created "
        f"{created:%Y-%m-%d %H:%M} UTC by brainclf {__version__}. Site slices: {split['tune']} tuning and "
        f"{split['calibration']} calibration (the adaptation part), {plural(split['heldout'], 'held-out slice')} "
        f"in {plural(state['groups'], 'case group')} overall; case groups never straddle the parts. The table's "
        "figures are measured on the held-out part, which no step learnt from; each promise line under it on the "
        "part it names, the forgetting check on Kaggle Testing."
        f"{left_out_words(state['split'].get('left_out'))}"), new_x="LMARGIN", new_y="NEXT")
    for warning in state["split"].get("warnings") or []:  # what the case grouping could not use
        pdf.multi_cell(w, 5, _text(f"Warning: {warning}"), new_x="LMARGIN", new_y="NEXT")
    pdf.ln(2)
    _table(pdf, w, columns(state))
    for line in saved_models(state):  # the models this report certifies
        pdf.multi_cell(w, 5, _text(line), new_x="LMARGIN", new_y="NEXT")
    _kaggle(pdf, w, state["steps"].get("adapt"))
    for step in ("calibrate", "adapt"):
        if said := promise(state["steps"].get(step)):
            pdf.multi_cell(w, 5, _text(f"{step.capitalize()}: {said}"), new_x="LMARGIN", new_y="NEXT")
    pdf.ln(3)
    pdf.set_font("Helvetica", "B", 10)
    pdf.set_text_color(150, 20, 20)
    pdf.multi_cell(w, 5, _text("Intended use: " + INTENDED_USE), new_x="LMARGIN", new_y="NEXT")
    pdf.set_text_color(0, 0, 0)
    return bytes(pdf.output())


def _table(pdf, w: float, cols: list[tuple[str, dict]]) -> None:
    first = 70
    each = (w - first) / max(len(cols), 1)
    pdf.set_font("Helvetica", "B", 9.5)
    pdf.cell(first, 7, "Held-out part", border=1)
    for heading, _ in cols:
        pdf.cell(each, 7, _text(heading), border=1, align="C")
    pdf.ln()
    pdf.set_font("Helvetica", "", 9.5)
    for label, key in ROWS:
        pdf.cell(first, 6, _text(label), border=1)
        for _, report in cols:
            pdf.cell(each, 6, _text(cell(report, key)), border=1, align="C")
        pdf.ln()


def _kaggle(pdf, w: float, adapt: dict | None) -> None:
    if not adapt:
        return
    pdf.ln(2)
    pdf.set_font("Helvetica", "", 9.5)
    a = adapt["adapt"]
    text = (f"Adaptation: {a['epochs_run']} epochs on {plural(a['tune_slices'], 'site slice')} with "
            f"{plural(a['replay_images'], 'replayed training image')} ({a['seconds']:.0f} s), epoch {a['best_epoch']} "
            f"kept ({a.get('chosen_on') or 'lowest calibrated loss on the calibration part'}). ")
    checked = forgetting(adapt)
    text += checked[0] if checked else "Kaggle Testing was not found: forgetting not checked."
    pdf.multi_cell(w, 5, _text(text), new_x="LMARGIN", new_y="NEXT")
