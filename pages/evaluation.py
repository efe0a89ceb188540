"""Evaluation: how well the active model does, where it errs, glioma vs meningioma, model comparison.
Layout only: every number and sentence comes from brainclf (analysis, views, figures)."""

import pandas as pd
import streamlit as st

from brainclf import CLASS_NAMES
from brainclf.errors import BrainclfError
from brainclf.escaping import md_literal
from brainclf.evaluation import (
    card_is_verified,
    evaluate_folder,
    feature_map,
    feature_map_key,
    load_shortcut_study,
    most_confused,
    report_from_rows,
    risk_coverage_by_source,
    rows_for_cell,
)
from brainclf.presentation import (
    chart_title,
    class_label,
    confusion_matrix_figure,
    coverage_figure,
    deletion_figure,
    feature_map_figure,
    history_figure,
    history_title,
    pr_figure,
    predictor_rule,
    reliability_figure,
    risk_coverage_figure,
    roc_figure,
    shortcut_figure,
    site_training_words,
)
from brainclf.presentation.comparison import compare_cards, test_source
from brainclf.presentation.scope import missing_test_rows_words
from brainclf.presentation.views import (
    cell_heading,
    clean_view,
    count,
    faithfulness_caption,
    folder_notes,
    glioma_meningioma,
    headline_rows,
    per_class_rows,
    progress,
    source_caption,
    trust_view,
    unreadable_message,
)
from pages.common import (
    available_models,
    card_of,
    data_root,
    get_predictor,
    kept_across_pages,
    page_work,
    public,
    require,
    route_through_app,
    settings,
)
from pages.evaluation_external import apply_cell_click, external_section, paged_gallery

route_through_app(once_per_session=True)  # a bookmarked page on a fresh server goes through app.py's navigation
who = require("open_evaluation")
st.title("Evaluation")
predictor = get_predictor()
if predictor is None:
    st.stop()
card = predictor.card

# ---- source: the card's stored test predictions, or a fresh run on a folder (researchers and admins) ------
config = settings()
allowed = [r.path for r in config.data_roots]  # images are only ever opened inside the server's data roots
CARD_SOURCE = "Model card (test split, no re-run)"
kept_across_pages("eval_source", "eval_folder")  # back from another page: the view the user left
if who.can("re_evaluate"):
    source = st.radio("Results from", [CARD_SOURCE, "Re-evaluate on a folder"], horizontal=True, key="eval_source")
else:
    source = CARD_SOURCE  # clinicians read the card's results; no re-evaluation
re_evaluated = source != CARD_SOURCE
# The card stores the test predictions with and without flip TTA: show the ones matching the TTA setting.
rows, card_tta = card.stored_test_predictions(predictor.tta)
where = f"the test split of {test_source(card)} recorded in the {card.name} card (in-distribution)"
data_name = "the test split (in-distribution)"
where += "" if card_is_verified(card) else " (figures claimed by its uploader, not verified on this server)"
root = data_root()
fresh_external = notes = None
if re_evaluated:
    folders = config.evaluation_folders()
    if not folders:
        st.info("This server offers no dataset to evaluate on ($BRAINCLF_DATA or [data] in brainclf.toml).")
        st.stop()
    if st.session_state.get("eval_folder") not in folders:
        here = config.root_of(root)
        preferred = f"{here.name}/Testing" if here else None
        st.session_state["eval_folder"] = preferred if preferred in folders else folders[0]
    choice = st.selectbox("Folder of class sub-folders", folders, key="eval_folder",
                          help="The datasets this server offers, by name, and their split folders (Testing). "
                          "A folder with a manifest.csv (file, sequence) also gets the per-sequence view.")
    if st.button("Evaluate", type="primary", key="eval_run"):
        bar = st.progress(0.0, text="Evaluating…")
        try:
            with page_work().hold("this evaluation"):
                report = evaluate_folder(predictor, config.folder(choice),
                                         progress=lambda d, t: bar.progress(*progress(d, t)))
            st.session_state["eval_result"] = {
                "model": card.label, "folder": choice, "rows": report["predictions"],
                "unreadable": report["unreadable"], "external": report.get("external"), "tta": predictor.tta,
                "notes": folder_notes(report)}
        except BrainclfError as e:
            st.error(public(e))
        bar.empty()
    saved = st.session_state.get("eval_result")
    if isinstance(saved, dict) and saved["model"] == card.label and saved["folder"] in folders:
        folder_done, rows, unreadable = saved["folder"], saved["rows"], saved["unreadable"]
        fresh_external, measured_tta, notes = saved["external"], saved["tta"], saved["notes"]
        where, data_name = folder_done, folder_done
        if measured_tta != predictor.tta:  # the sidebar's TTA changed since: show them as they were measured
            st.info(f"These figures were measured with flip TTA {'on' if measured_tta else 'off'}; press Evaluate "
                    "to measure them as the sidebar now says.")
            predictor = predictor.with_tta(measured_tta)  # its refer thresholds match the stored probabilities
        root = config.folder(folder_done)
        if unreadable:
            st.warning(public(unreadable_message(unreadable)))
    else:
        st.info("Choose a folder and press Evaluate.")
        st.stop()

if not rows:
    st.warning(f"This model {missing_test_rows_words(card, predictor.tta)} Or re-evaluate it on a folder.")
    st.stop()

if predictor.tta and not card_tta and not re_evaluated:
    st.info("This card stores test predictions without TTA only; re-evaluate on a folder to see them with TTA.")
    predictor = predictor.with_tta(False)  # the refer threshold must match the stored predictions
# The rule the Predict page applies: a card without a fitted one gets the fixed fallback bar there, so here too.
rule = predictor_rule(predictor)
report = report_from_rows(rows, rule.thresholds)
on_data = f"{data_name}, {count(report['n'])}"  # every figure's title says what it was measured on
st.caption(md_literal(source_caption(report, where, card.label, predictor.tta)))
if notes:  # what the folder evaluation could not check (no clean subset) or left out (images the model learnt)
    st.caption(notes)
if not re_evaluated and (gone := card.test_metrics(predictor.tta).get("missing_files")):
    st.warning(f"{count(gone, 'test file')} of this model's split {'was' if gone == 1 else 'were'} no longer in the "
               "data folder when it was finalised: these figures leave them out.")
st.table(pd.DataFrame(headline_rows(report)), hide_index=True)
st.table(pd.DataFrame(per_class_rows(report)), hide_index=True)

clean = clean_view(report)
if clean:
    st.info(clean["sentence"], icon=":material/content_copy:")
    st.table(pd.DataFrame(clean["rows"]), hide_index=True)

# ---- confusion matrix and the images behind a cell ---------------------------------------------------------
st.subheader("Confusion matrix")
normalise = st.toggle("Row-normalised (recall on the diagonal)", key="cm_norm")
event = st.plotly_chart(confusion_matrix_figure(report["confusion_matrix"], normalise,
                                                chart_title("Confusion matrix", on_data), clickable=True),
                        key="cm", on_select="rerun", selection_mode="points")
st.caption("Click a cell (or choose the pair below) to see its images.")
apply_cell_click(event, "cell")  # the boxes below: cell_true, cell_pred
worst = most_confused(report["confusion_matrix"])
st.session_state.setdefault("cell_true", worst[0])  # start on the most confused pair
st.session_state.setdefault("cell_pred", worst[1])
a, b = st.columns(2)
true_c = a.selectbox("True class", CLASS_NAMES, format_func=class_label, key="cell_true")
pred_c = b.selectbox("Predicted class", CLASS_NAMES, format_func=class_label, key="cell_pred")
st.markdown(f"#### {cell_heading(rows, true_c, pred_c)}")
st.toggle("Grad-CAM of the true class, not the answer", key="cam_true",
          help="Every gallery on this page: off, the class the model answered; on, the class the slice is (where "
          "the model would have had to look to be right).")


paged_gallery(predictor, rows_for_cell(rows, true_c, pred_c), root, allowed, "cell")

# ---- external validation: images from another source --------------------------------------------------------
external_section(card, predictor, rule, fresh_external, normalise, config, root, allowed)

# ---- the shortcut: why an in-distribution number is not the product's accuracy ------------------------------
study = load_shortcut_study()
if study:
    with st.expander("Why the Kaggle figure overstates: what image style alone predicts"):
        st.plotly_chart(shortcut_figure(study), key="shortcut")
        st.caption("A logistic regression that never sees anatomy — only image size, colour mode, file size and the "
                   "gray-level histogram — predicts the Kaggle class far above chance, because in that dataset "
                   "class, MR sequence and source go together. On another source the same rule collapses. "
                   "Reproduce: `python -m brainclf shortcut --external DIR` (README, 'The shortcut').")

# ---- curves -------------------------------------------------------------------------------------------------
st.subheader("ROC and precision-recall")
left, right = st.columns(2)
left.plotly_chart(roc_figure(report["curves"], chart_title("ROC (one-vs-rest)", on_data)), key="roc")
right.plotly_chart(pr_figure(report["curves"], chart_title("Precision-recall", on_data)), key="pr")
left, right = st.columns(2)
left.plotly_chart(reliability_figure(report["reliability"], chart_title("Calibration", on_data)), key="rel")
histories = [m["history"] for m in card.training.get("members", [])] or card.training.get("history")
if histories:
    right.plotly_chart(history_figure(histories, chart_title(history_title(card), "training and validation splits")),
                       key="hist")
    if site_words := site_training_words(card):  # a site model's training block is its starting model's
        right.caption(site_words)

# ---- trust: calibration, refer rule, OOD guard, Grad-CAM faithfulness ---------------------------------------
st.subheader("When to trust a prediction")
st.caption(md_literal(f"The refer rule's figures are measured on {on_data}; the guard's on a generated set of non-MRI "
                      "images (photos, documents, noise, shapes) and the test split."))
for column, item in zip(st.columns(3), trust_view(card, predictor, report, rule)):
    column.metric(item["label"], item["value"])
    column.caption(item["caption"])
left, right = st.columns(2)
left.plotly_chart(coverage_figure(report["coverage_curve"], report["refer"],
                                  chart_title("Coverage vs accuracy", on_data)), key="coverage")
if len(per_source := risk_coverage_by_source(card, predictor.tta, rule.thresholds)) > 1:
    st.plotly_chart(risk_coverage_figure(per_source), key="risk_coverage")  # stars: the rule in force
faithful = faithfulness_caption(card.faithfulness)
if faithful:
    deletion = card.faithfulness["deletion"]
    right.plotly_chart(deletion_figure(deletion, chart_title("Deletion test", count(deletion["n"], "test image"))),
                       key="deletion")
    st.caption(faithful)

# ---- glioma vs meningioma -----------------------------------------------------------------------------------
st.subheader("Glioma vs meningioma")
gm_sources = {data_name: (rows, root)}  # this page's rows, then each other source's the card records
for name, ext_rows in ({} if re_evaluated else card.external_predictions).items():
    gm_sources[f"{name} (another source)"] = (ext_rows, r.path if (r := config.root(name)) else None)
gm_name = st.radio("Slices from", list(gm_sources), horizontal=True, key="gm_source", format_func=md_literal) \
    if len(gm_sources) > 1 else data_name  # dataset names come from the card
rows, root = gm_sources[gm_name]  # the rest of the section reads these
gm = glioma_meningioma(rows)
st.markdown(gm["sentence"])
for (heading, direction), key in zip(gm["directions"], ("gm_m_g", "gm_g_m")):
    if direction:
        st.markdown(f"**{heading}**")
        paged_gallery(predictor, direction, root, allowed, key, limit=8)
# The map stays until the model, the TTA mode, the dataset or the predictions shown change.
map_key = feature_map_key(card.label, predictor.tta, root, rows)
if root and not who.can("re_evaluate"):  # it runs the model over the dataset's images, as an evaluation does
    st.caption("Mapping the model's features runs it over these images: researchers and admins can.")
elif root and st.button("Map the model's features (PCA of penultimate layer)", key="fmap"):
    with st.spinner("Computing the penultimate-layer features of the glioma and meningioma images…"):
        try:
            with page_work().hold("the feature map"):
                st.session_state["fmap_result"] = (map_key, feature_map(predictor, rows, root, allowed,
                                                                        where=gm_name))
        except (BrainclfError, ValueError) as e:  # ValueError: a model without a pooling layer named "gap"
            st.error(f"The feature map could not be computed: {public(e)}")
saved_map = st.session_state.get("fmap_result")
if root and saved_map and saved_map[0] == map_key:
    fmap = saved_map[1]
    if fmap is None:
        here = config.root_of(root)
        st.warning(f"Fewer than 3 of these images were found in the dataset {here.name if here else ''}.")
    else:
        st.plotly_chart(feature_map_figure(fmap["coords"], fmap["true"], fmap["pred"], fmap["names"],
                                           chart_title(fmap["what"], fmap["data"])),
                        key="fmap_fig")

# ---- two models side by side --------------------------------------------------------------------------------
st.subheader("Compare models")
others = [p for p in available_models() if p.stem != card.name]
if not others:
    st.caption("Only one model is available.")
else:
    other = st.selectbox("Compare with", others, format_func=lambda p: p.stem, key="compare")
    # The cards' own test splits (a folder re-evaluated above is not the other model's data), labelled
    # in-distribution; then, file by file, every external dataset both cards hold rows for.
    cmp = compare_cards(card, card_of(other), predictor.tta, other.stem)
    if cmp["missing"]:
        st.info(cmp["missing"])
    else:
        test = cmp["test"]
        st.caption(test["caption"] + (" The folder evaluated above is not shown here." if re_evaluated else ""))
        st.markdown(test["sentence"])
        st.table(pd.DataFrame(test["table"]), hide_index=True)
        for column, key, (matrix, title, on) in zip(st.columns(2), ("cmp_a", "cmp_b"), test["figures"]):
            column.plotly_chart(confusion_matrix_figure(matrix, normalise, chart_title(title, on)), key=key)
    for sentence in cmp["external"]:
        st.markdown(sentence)
