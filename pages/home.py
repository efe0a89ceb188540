"""Home: what the tool does, intended use, and the active model's card in plain words."""

import pandas as pd
import streamlit as st

from brainclf.escaping import md_literal
from brainclf.evaluation import card_is_verified, made_here_note, provenance_note
from brainclf.model import display_text, short_hash
from brainclf.presentation import (
    absent_classes_words,
    case_scope_line,
    claim_words,
    count,
    external_rates,
    external_reports,
    external_summary,
    external_words,
    grouping_caveat,
    held_out_words,
    limitations_words,
    missed_tumours_unflagged,
    non_commercial,
    pct,
    plural,
    refit_rule_words,
    sensitivity_rows,
    site_training_words,
    upper_mark,
    validated_scope,
)
from pages.common import active_model_path, card_of, require, route_through_app, tta_setting

route_through_app()
require("open_home")
st.title("brainclf — brain MRI tumour classifier")
st.error(
    "**Intended use: research and education only.** This tool is not a medical device and must not be used "
    "for diagnosis or treatment decisions. Every prediction needs review by a qualified radiologist.",
    icon=":material/warning:",
)
st.markdown(
    "Upload a 2-D brain MRI slice (JPEG, PNG or DICOM) on the **Predict** page and the model estimates whether it "
    "shows a **glioma**, a **meningioma**, a **pituitary tumour** or **no tumour**, with a Grad-CAM heat map "
    "of the regions that drove the decision. The **Evaluation** page shows how well the model does on held-out "
    "test images — where it errs, how glioma and meningioma get confused — and the **Model** page lets "
    "researchers pick, upload and train models."
)

path = active_model_path()
card = card_of(path) if path else None
if card is None:
    st.warning("No model is available yet: train one on the Model page.")
    st.stop()

st.subheader(f"Active model: {md_literal(path.stem)} ({short_hash(card.file_sha256)})")  # file name and hash
claimed = claim_words(card)
t = card.training
tta = tta_setting(path, card.tta_default)  # the sidebar's TTA toggle, else the card's default
test = card.test_metrics(tta=tta)
rows, with_tta = card.stored_test_predictions(tta)
clean = test.get("clean") or {}
externals, recipe = external_reports(card)  # a refit's: its split run's
ext_rates, ext_words = external_rates(card) or ([], "")
external = external_summary(card)  # what holds on other sources leads; the Kaggle figure is in-distribution
cols = [*st.columns(2), *st.columns(2)]  # two rows of two: nothing is cut on an 800 px window
if external:
    ext_claimed = claim_words(card, external=True)
    upper = grouping_caveat(card)
    # An upper estimate reads "≤ 74.9 %": the label stays short enough for an 800 px window (tests/test_e2e.py).
    cols[0].metric(f"Accuracy, other sources ({plural(external['n'], 'slice')}){ext_claimed}",
                   f"{upper_mark(external['upper'])}{pct(external['accuracy'])}",
                   help=md_literal(f"{external_words(card)}. {held_out_words(card)} {upper} This is closer to how "
                                   "the model reads a new hospital's scans."))
else:
    cols[0].metric("Accuracy, other sources", "not measured",
                   help="No external validation is recorded for this model: its only figures are in-distribution.")
cols[1].metric(f"Kaggle test (in-distribution){claimed}", pct(test.get("accuracy")),
               help="In-distribution: Kaggle Testing images come from the same sources as the training images. "
               + ("With flip test-time augmentation" if with_tta else "Single pass")
               + f" (this model's default: {'on' if card.tta_default else 'off'}, chosen on validation).")
cols[2].metric(f"Clean-subset accuracy (Kaggle){claimed}", pct(clean.get("accuracy")),
               help=f"In-distribution: {count(clean.get('n'))} Kaggle test images with no near-duplicate among the "
                    f"training images, {'with flip TTA' if with_tta else 'single pass'}.")
if missed := missed_tumours_unflagged(card):
    # A refit's help names its split run.
    cols[3].metric("Tumours missed (external)", pct(missed["rate"]),
                   help=md_literal(missed["words"] + refit_rule_words(card)))
else:
    cols[3].metric("Parameters", count(card.params))
st.caption(md_literal(case_scope_line(card, tta)))
if non_commercial(card):
    st.warning("**Licence.** This model was trained partly on images licensed CC BY-NC-SA (Radiopaedia.org cases): "
               "it may be used for non-commercial research and evaluation only, with attribution.",
               icon=":material/gavel:")
note = provenance_note(card)
if note and not card_is_verified(card):
    st.warning(md_literal(note), icon=":material/upload:")
elif note:
    st.caption(md_literal(note))
if made_here := made_here_note(card):  # who made it on this server, where its card records them
    st.caption(md_literal(made_here))
st.markdown("**Sensitivity and specificity**, in-distribution (Kaggle test split)"
            + (" and on the external source, as recorded in the model card:" if ext_rates else ":"))
table = sensitivity_rows(rows, ext_rates, md_literal(ext_words))
if table:
    st.table(pd.DataFrame(table).set_index("finding"))
st.caption("Sensitivity: share of slices with the finding that the model names; specificity: share without it "
           f"that the model does not name. {absent_classes_words(card)} "
           + md_literal(validated_scope(card)["sentence"]))
sizes = t.get("sizes", {})
with st.expander("Model details (for researchers)"):
    st.text(display_text(card.description, 300))
    st.markdown(
        f"- **Architecture:** `{card.architecture}`, input {card.contract.describe()}, "
        f"{count(card.params)} parameters.\n"
        f"- **Version:** `{card.version}`, trained {md_literal(t.get('finished', card.created)[:10])} on "
        f"{count(sizes.get('train'))} training images (validation {count(sizes.get('val'))}, "
        f"test {count(sizes.get('test'))}), {count(t.get('epochs_run'))} epochs "
        f"(chosen: {count(t.get('best_epoch'))}), "
        f"{t.get('train_seconds', 0) / 60:.0f} min of training recorded.")
    st.text("Machine: " + display_text(card.machine or "not recorded", 120))
    if site_words := site_training_words(card):  # the lines above are its starting model's
        st.caption(site_words)
st.info(limitations_words(card), icon=":material/info:")  # Markdown, the card's words escaped
