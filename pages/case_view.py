"""The Predict page's case card, widgets only: the status heading (a referral or a flag leads, never a bold
class), and the scan as the model sees it with its Grad-CAM as an overlay beside the probabilities.

Not a page (app.py does not list it); pages/predict.py builds a CaseView and calls these for each case."""

from __future__ import annotations

from dataclasses import dataclass

import streamlit as st

from brainclf import CLASS_NAMES
from brainclf.cases import widget_key
from brainclf.errors import BrainclfError
from brainclf.escaping import md_literal
from brainclf.explain import overlay_heatmap
from brainclf.figures import image_with_heatmap
from brainclf.wording import gradcam_caveat, leaning, pct, probability_lines
from pages.common import class_label, public


@dataclass
class CaseView:
    """What every case card of one page run shares."""

    predictor: object  # the active Predictor (a ProcessPredictor in the app)
    book: object  # the session's CaseBook
    model: str  # the model's label: every per-image widget key carries it
    case_line: str  # the model's scope and other-source accuracy (Markdown-escaped), under every verdict

    def heatmap_for(self, pred, target: str):
        """The map computed with the prediction for its class; any other class on demand."""
        if target == pred.predicted and pred.heatmap is not None:
            return pred.heatmap
        return self.predictor.gradcam(pred.model_input, CLASS_NAMES.index(target))


def headline(view: CaseView, case, pred, status) -> None:
    """The status leads; a class is a bold answer only when the case is neither referred nor flagged."""
    name, answer = md_literal(case.name), md_literal(f"{pred.predicted_display} ({pct(pred.confidence)})")
    sentence = md_literal(status.sentence)  # it quotes the card (where the refer rule was fitted)
    if status.kind == "ood":  # the flag leads; the class is secondary, greyed
        st.markdown(f"#### {name}: :red[:material/block: {status.headline}]")
        st.markdown(f":gray[Model's class, not meaningful for this input: {answer}]")
        st.error(sentence, icon=":material/block:")
    elif status.kind == "refer":  # never a verdict: the model's class is only its leaning, greyed
        st.markdown(f"#### {name}: :orange[:material/warning: {status.headline}]")
        st.markdown(f":gray[{md_literal(leaning(pred.predicted, pred.confidence))}]")
        st.warning(sentence, icon=":material/warning:")
        with st.expander("Why refer?"):
            st.markdown(md_literal(status.detail))
    else:
        st.markdown(f"#### {name}: **{answer}**")
        st.caption(sentence)
    st.caption(view.case_line)


@st.dialog("Grad-CAM, full size", width="large")
def full_size(view: CaseView, digest: str, target: str, opacity: float) -> None:
    case, pred = view.book.get(digest), view.book.result(digest, view.model)
    st.caption(md_literal(f"{case.name} · case {case.ref} · {class_label(target)} · model {pred.model_name} "
                          f"{pred.model_version} ({pred.model_hash})"))
    try:
        heatmap = view.heatmap_for(pred, target)
    except (ValueError, BrainclfError) as e:
        st.warning(f"The Grad-CAM could not be computed: {public(e)}")
        return
    figure = image_with_heatmap(pred.model_input, heatmap, opacity, title=f"Grad-CAM: {class_label(target)}")
    st.plotly_chart(figure.update_layout(height=720), key=widget_key("cam_full", digest, view.model))
    st.caption(md_literal(gradcam_caveat(target, view.predictor.card.faithfulness)))


def scan(view: CaseView, digest: str, pred, target: str, opacity: float, overlay: bool, key) -> None:
    """The slice as the model sees it, the case's main picture, with the Grad-CAM of `target` over it."""
    seen = f"As the model sees it ({view.predictor.contract.describe()})"
    if not overlay:
        st.image(pred.model_input[..., 0] if pred.model_input.shape[-1] == 1 else pred.model_input, clamp=True,
                 caption=f"{seen} · Grad-CAM overlay off", width="stretch")
        return
    try:
        # A picture, not a Plotly figure: it paints at once (the full-size view is the interactive one).
        st.image(overlay_heatmap(pred.model_input, view.heatmap_for(pred, target), opacity), width="stretch",
                 caption=f"{seen} · Grad-CAM: {class_label(target)} · red = most evidence, blue = little")
        if st.button("Full size", key=key("full"), icon=":material/open_in_full:",
                     help="The overlay in a large window"):
            full_size(view, digest, target, opacity)
    except ValueError as e:
        st.warning(f"No Grad-CAM for this model: {public(e)}")
    except BrainclfError as e:  # the model process stopped or is busy: the prediction above stands
        st.warning(f"The Grad-CAM could not be computed just now: {public(e)}")


def model_output(view: CaseView, digest: str, pred, opacity: float, key, compact: bool, overlay_on: bool) -> None:
    """The scan (its Grad-CAM overlay on by default for accepted answers) beside the probabilities (two columns,
    so each stays readable on an 800 px window); `compact` (side by side) stacks them."""
    scan_col, prob_col = (st.container(), st.container()) if compact else st.columns(2, gap="medium")
    with prob_col:
        for p, text in probability_lines(pred.probabilities):
            st.progress(p, text=text)
        target = st.selectbox("Grad-CAM for class", CLASS_NAMES, index=pred.predicted_index,
                              format_func=class_label, key=key("cam_class"))
        overlay = st.toggle("Grad-CAM overlay", value=overlay_on, key=key("overlay"),
                            help="The map over the scan; its opacity is set once, above the cases.")
    with scan_col:
        scan(view, digest, pred, target, opacity, overlay, key)
