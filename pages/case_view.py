"""The Predict page's case card, widgets only: the status heading (a referral or a flag leads, never a bold
class), and the scan as the model sees it with its Grad-CAM as an overlay beside the probabilities.

Not a page (app.py does not list it); pages/predict.py builds a CaseView and calls these for each case."""

from __future__ import annotations

from dataclasses import dataclass

import streamlit as st

from brainclf import CLASS_NAMES
from brainclf.errors import BrainclfError
from brainclf.escaping import md_literal
from brainclf.inference import overlay_heatmap
from brainclf.input import upload_alias
from brainclf.presentation import (
    UNCALIBRATED,
    calibrated,
    class_label,
    full_size_figure,
    gradcam_caveat,
    leaning,
    original_view,
    pct,
    probability_lines,
    viewer_picture,
    widget_key,
)
from pages.common import public


@dataclass
class CaseView:
    """What every case card of one page run shares."""

    predictor: object  # the active Predictor (a ProcessPredictor in the app)
    book: object  # the session's CaseBook
    model: str  # the model's label: every per-image widget key carries it
    case_line: str  # the model's scope and other-source accuracy (Markdown-escaped), under every verdict
    show_names: bool = True  # file names beside case ids ("Show file names"); headings are always the case id

    def heatmap_for(self, pred, target: str):
        """The map computed with the prediction for its class; any other class on demand."""
        if target == pred.predicted and pred.heatmap is not None:
            return pred.heatmap
        return self.predictor.gradcam(pred.model_input, CLASS_NAMES.index(target))


def headline(view: CaseView, case, pred, status) -> None:
    """The status leads; a class is a bold answer only when the case is neither referred nor flagged."""
    # The case id, never the file name (it may hold a patient's name, and long names wrap): that is a tooltip.
    name = md_literal(f"Case {case.ref}")
    answer = md_literal(f"{pred.predicted_display} ({pct(pred.confidence)})")
    tip = {"help": md_literal(f"File: {case.name}")} if view.show_names else {}
    sentence = md_literal(status.sentence)  # it quotes the card (where the refer rule was fitted)
    if status.kind == "ood":  # the flag leads; the class is secondary, greyed
        st.markdown(f"#### {name}: :red[:material/block: {status.headline}]", **tip)
        st.markdown(f":gray[Model's class, not meaningful for this input: {answer}]")
        st.error(sentence, icon=":material/block:")
    elif status.kind == "refer":  # never a verdict: the model's class is only its leaning, greyed
        st.markdown(f"#### {name}: :orange[:material/warning: {status.headline}]", **tip)
        st.markdown(f":gray[{md_literal(leaning(pred.predicted, pred.confidence))}]")
        st.warning(sentence, icon=":material/warning:")
        with st.expander("Why refer?"):
            st.markdown(md_literal(status.detail))
    else:
        st.markdown(f"#### {name}: **{answer}**", **tip)
        st.caption(sentence)
    st.caption(view.case_line)


@st.dialog("Full size", width="large")
def full_size(view: CaseView, digest: str, target: str, opacity: float, overlay_on: bool) -> None:
    """The upload at its own resolution (wheel to zoom, drag to pan), the Grad-CAM mapped onto it as an optional
    overlay (on as the case's card has it: off for a referral or a flag), and a DICOM's window centre and width
    (its own tags' values first)."""
    case, pred = view.book.get(digest), view.book.result(digest, view.model)
    st.caption(md_literal(f"Case {case.ref}" + (f" · {case.name}" if view.show_names else "") + f" · "
                          f"Grad-CAM class {class_label(target)} · model {pred.model_name} {pred.model_version} "
                          f"({pred.model_hash})"))
    try:
        shown = original_view(case.data, upload_alias(case.name), view.predictor.contract, case.frame)
        overlay = st.toggle("Grad-CAM overlay", value=overlay_on, key=widget_key("full_overlay", digest, view.model))
        heatmap = view.heatmap_for(pred, target) if overlay else None
    except (ValueError, BrainclfError) as e:
        st.warning(f"The full-size view could not be made: {public(e)}")
        return
    window = None
    if shown.values is not None:
        c1, c2 = st.columns(2)
        centre = c1.number_input("Window centre", value=float(shown.values.centre), step=10.0, format="%.0f",
                                 key=widget_key("window_centre", digest, view.model))
        # At least min_value, or Streamlit raises: frame_values keeps the file's preset to that already.
        width = c2.number_input("Window width", value=max(float(shown.values.width), 1.0), min_value=1.0, step=10.0,
                                format="%.0f", key=widget_key("window_width", digest, view.model),
                                help="DICOM window/level: centre - width/2 is black, centre + width/2 white.")
        window = (centre, width)
    width_px, height_px = shown.size
    title = f"{width_px}×{height_px} px" + (" (shown scaled down)" if shown.scaled else "") + (
        f" · Grad-CAM: {class_label(target)}" if heatmap is not None else "")
    figure = full_size_figure(viewer_picture(shown, heatmap, opacity, window), title=title)
    st.plotly_chart(figure, key=widget_key("cam_full", digest, view.model),
                    config={"scrollZoom": True, "displaylogo": False})
    st.caption("Scroll to zoom, drag to pan, double-click to reset.")
    if heatmap is not None:
        st.caption(md_literal(gradcam_caveat(target, view.predictor.card.faithfulness)))


def scan(view: CaseView, digest: str, pred, target: str, opacity: float, overlay: bool, key) -> None:
    """The slice as the model sees it, the case's main picture, with the Grad-CAM of `target` over it."""
    seen = f"As the model sees it ({view.predictor.contract.describe()})"
    if not overlay:
        st.image(pred.model_input[..., 0] if pred.model_input.shape[-1] == 1 else pred.model_input, clamp=True,
                 caption=md_literal(f"{seen} · Grad-CAM overlay off"), width="stretch")
    else:
        try:
            # A picture, not a Plotly figure: it paints at once (the full-size view is the interactive one).
            st.image(overlay_heatmap(pred.model_input, view.heatmap_for(pred, target), opacity), width="stretch",
                     caption=md_literal(f"{seen} · Grad-CAM: {class_label(target)} · red = most evidence, "
                                        "blue = little"))
        except ValueError as e:
            st.warning(f"No Grad-CAM for this model: {public(e)}")
        except BrainclfError as e:  # the model process stopped or is busy: the prediction above stands
            st.warning(f"The Grad-CAM could not be computed just now: {public(e)}")
    if st.button("Full size", key=key("full"), icon=":material/open_in_full:",
                 help="The upload at its own resolution, to zoom and pan, with the Grad-CAM as an overlay"
                 " (and window/level for DICOM)"):
        full_size(view, digest, target, opacity, overlay)


def controls(view: CaseView, pred, key, overlay_on: bool) -> tuple[str, bool]:
    """The probabilities as bars (said when not calibrated), the Grad-CAM's class and its overlay switch; returns
    (class, overlay on)."""
    if not calibrated(view.predictor.card, view.predictor.tta):
        st.caption(UNCALIBRATED)
    for p, text in probability_lines(pred.probabilities):
        st.progress(p, text=text)
    target = st.selectbox("Grad-CAM for class", CLASS_NAMES, index=pred.predicted_index, format_func=class_label,
                          key=key("cam_class"), help="The overlay below puts this class's map over the scan; its "
                          "opacity is set once, above the cases.")
    # No help icon on the switch: at 800 px its column is ~200 px and the icon cut the label to "Grad-CAM ove…".
    overlay = st.toggle("Grad-CAM overlay", value=overlay_on, key=key("overlay"))
    return target, overlay


def model_output(view: CaseView, digest: str, pred, opacity: float, key, overlay_on: bool) -> None:
    """The scan (its Grad-CAM overlay on by default for accepted answers), the card's main picture, beside the
    probabilities in a narrower column (at 800 px the scan takes 3/5 of the card, each column still readable)."""
    scan_col, prob_col = st.columns([3, 2], gap="medium")
    with prob_col:
        target, overlay = controls(view, pred, key, overlay_on)
    with scan_col:
        scan(view, digest, pred, target, opacity, overlay, key)


def compare(view: CaseView, items: list[tuple], opacity: float) -> None:
    """Cases side by side, row by row so that their scans line up (same size, same top) whatever their headings
    hold: the headings, then the scans, then the model's output (a flagged case's behind "Show the model's output
    anyway", its scan without the overlay until asked). `items`: (digest, case, prediction, status, key)."""
    heads, scans, outputs = (st.columns(len(items), gap="medium") for _ in range(3))
    for head, at, output, (digest, case, pred, status, key) in zip(heads, scans, outputs, items):
        with head:
            headline(view, case, pred, status)
        with output:
            if status.kind == "ood":
                with st.expander("Show the model's output anyway"):
                    target, overlay = controls(view, pred, key, overlay_on=False)
            else:
                target, overlay = controls(view, pred, key, overlay_on=status.kind == "accept")
        with at:
            scan(view, digest, pred, target, opacity, overlay, key)
