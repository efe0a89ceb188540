"""The Evaluation page's external validation: the figures on slices from another source (the card's, or a folder
just evaluated), per sequence, with the misclassified ones and their Grad-CAM; and the image galleries the page
shows (brainclf.presentation.gallery)."""

import pandas as pd
import streamlit as st

from brainclf.escaping import csv_row, md_literal
from brainclf.evaluation import misclassified, with_refer_rule
from brainclf.presentation import (
    chart_title,
    class_label,
    clicked_cell,
    confusion_matrix_figure,
    external_sequence_figure,
    gallery,
    no_external_note,
    recorded_rule_note,
)
from brainclf.presentation import count as number
from brainclf.presentation.views import count, external_view


@st.cache_data(max_entries=64, show_spinner="Re-reading the external figures under the refer rule in force…")
def _under_rule(thresholds: tuple, ext: dict, rows: list[dict]) -> dict:
    """with_refer_rule, once per rule, figures and rows (a card's recorded ones or a folder just evaluated; a card
    re-recorded is another entry): its case-group intervals take about a second, and the page reruns on every
    click."""
    return with_refer_rule(ext, rows, dict(thresholds))


def apply_cell_click(event, key: str, usable=lambda cell: True) -> bool:
    """A click on a confusion-matrix cell picks its (true, predicted) pair in the boxes `KEY_true` and `KEY_pred`
    below it, once per click (the selection persists across reruns; the boxes stay free to change after) and only
    where `usable(cell)`; whether one was just applied."""
    cell = clicked_cell(event)
    if not cell or st.session_state.get(f"{key}_clicked") == cell:
        if not cell:
            st.session_state.pop(f"{key}_clicked", None)  # deselected: the same cell may be clicked again
        return False
    st.session_state[f"{key}_clicked"] = cell
    if not usable(cell):
        return False
    st.session_state[f"{key}_true"], st.session_state[f"{key}_pred"] = cell
    return True


def _clicked_error(event, wrong: list[dict], key: str) -> bool:
    """An external matrix's error cell opens its misclassified gallery on that pair, all sequences (right answers
    and empty cells have nothing to show)."""
    applied = apply_cell_click(event, key, lambda c: c[0] != c[1] and any((r["true"], r["pred"]) == c for r in wrong))
    if applied:
        st.session_state[f"{key}_seq_pick"] = "all"
    return applied


def _class_or_all(c: str) -> str:
    return "all" if c == "all" else class_label(c)


def paged_gallery(predictor, rows: list[dict], root, allowed, key: str, limit: int = 12) -> None:
    """`rows`' images, `limit` to a page, with a page picker where there are more (a confusion of 800 images is
    explored page by page, not cut at the first dozen)."""
    pages = -(-len(rows) // limit)
    start = 0
    if root and pages > 1:
        if st.session_state.get(f"{key}_page", 1) > pages:  # fewer rows than when the page was picked
            st.session_state[f"{key}_page"] = pages
        page = st.number_input(f"Page (of {pages})", min_value=1, max_value=pages, value=1, key=f"{key}_page")
        start = (int(page) - 1) * limit
    cam_of = "true" if st.session_state.get("cam_true") else "pred"  # the page's one switch (evaluation.py)
    show_gallery(gallery(predictor, rows, root, allowed, limit=limit, start=start, cam_of=cam_of), key)


def show_gallery(shown, key: str) -> None:
    if shown.table is not None:
        st.info("Pick a dataset in the sidebar to see these images (the server offers none yet: $BRAINCLF_DATA "
                "or [data] in brainclf.toml).")
        st.dataframe(pd.DataFrame(map(csv_row, shown.table)), hide_index=True, key=f"{key}_table")
        return
    cols = st.columns(4)
    for j, item in enumerate(shown.items):
        with cols[j % 4]:
            if item.image is None:
                st.caption(md_literal(item.caption))  # file names from the card
            else:
                st.image(item.image, width="stretch", caption=md_literal(item.caption))
    if shown.more:
        st.caption(shown.more)


def external_section(card, predictor, rule, fresh_external: dict | None, normalise: bool, config, root,
                     allowed) -> None:
    """`rule`: the refer rule in force (wording.predictor_rule); `fresh_external`: a folder's external report just
    measured (shown instead of the card's); `root`: the dataset picked in the sidebar; `allowed`: the data roots
    images may be opened from."""
    st.subheader("External validation")
    st.caption("A test split drawn from the same sources as the training images (the card's) gives an "
               "**in-distribution** figure. These are slices from another source, which is how a clinician's own "
               "scans look to the model.")
    externals = dict(card.metrics.get("external", {}))
    if fresh_external:
        externals = {f"{fresh_external['dataset']} (just evaluated)": fresh_external}
    if not externals:
        st.info(md_literal(no_external_note(card)))
    if card.provenance and not fresh_external and externals:
        st.warning("These external figures are the uploader's claim: re-measuring an upload on the Model page covers "
                   "its test split only. Re-evaluate on an external folder to measure them here.",
                   icon=":material/upload:")
    for name, ext in externals.items():
        ext_rows = ext.get("predictions") or card.external_predictions.get(name, [])
        mode_note = recorded_rule_note(bool(ext.get("tta")), predictor.tta)
        if mode_note is None:  # the rows' mode: what they answer under the rule in force
            ext = _under_rule(tuple(sorted(rule.thresholds.items())), ext, ext_rows)
        view = external_view(name, ext)
        st.markdown(view["heading"])
        st.table(pd.DataFrame(view["rows"]), hide_index=True)
        if view["caveat"]:
            st.warning(view["caveat"], icon=":material/info:")
        if mode_note:
            st.caption(mode_note)
        for note in view["notes"]:  # what reading the folder's manifest.csv found (rows naming no slice, conflicts)
            st.warning(note, icon=":material/description:")
        if view["core"]:
            st.caption(view["core"])
        left, right = st.columns(2)
        if view["sequences"]:
            left.plotly_chart(external_sequence_figure(ext), key=f"ext_seq_{name}")
        event = right.plotly_chart(confusion_matrix_figure(ext["confusion_matrix"], normalise, chart_title(
            "Confusion matrix", f"{name}, {count(ext['n'])}"), clickable=True), key=f"ext_cm_{name}",
            on_select="rerun", selection_mode="points")
        if view["sequences"]:
            st.dataframe(pd.DataFrame(map(csv_row, view["sequences"])), hide_index=True)
        wrong = misclassified(ext_rows)
        if wrong:
            ext_root = config.root(ext.get("dataset", name))  # the server's root of that name, nothing else
            _external_gallery(name, ext, ext_rows, _clicked_error(event, wrong, f"extgal::{name}"), predictor,
                              ext_root.path if ext_root else (root if fresh_external else None), allowed)


def _external_gallery(name: str, ext: dict, ext_rows: list[dict], clicked: bool, predictor, image_root,
                      allowed) -> None:
    """The external source's misclassified slices with Grad-CAM, filtered by sequence, true and predicted class;
    opened by a click on an error cell of its confusion matrix (`clicked`)."""
    wrong = misclassified(ext_rows)
    title = f"Misclassified external images ({number(len(wrong))}), most confident first, with Grad-CAM"
    with st.expander(title, expanded=clicked):
        seq, true_c, pred_c = st.columns(3)
        pick = seq.selectbox("Sequence", ["all", *ext.get("by_sequence", {})], key=f"extgal::{name}_seq_pick")
        classes = ["all", *sorted({r["true"] for r in wrong} | {r["pred"] for r in wrong})]
        true_pick = true_c.selectbox("True class", classes, format_func=_class_or_all, key=f"extgal::{name}_true")
        pred_pick = pred_c.selectbox("Predicted class", classes, format_func=_class_or_all, key=f"extgal::{name}_pred")
        shown = [r for r in misclassified(ext_rows, None if pick == "all" else pick)
                 if true_pick in ("all", r["true"]) and pred_pick in ("all", r["pred"])]
        st.caption(f"{count(len(shown))} shown.")
        paged_gallery(predictor, shown, image_root, allowed, f"extgal::{name}")  # no chart key
