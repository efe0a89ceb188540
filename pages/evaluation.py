"""Evaluation: how well the active model does, where it errs, glioma vs meningioma, model comparison."""

from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

from brainclf import CLASS_NAMES
from brainclf.analysis import (
    embed_2d,
    misclassified,
    most_confused,
    penultimate_features,
    report_from_rows,
    resolve_image,
    rows_for_cell,
)
from brainclf.errors import BrainclfError
from brainclf.evaluate import evaluate_folder
from brainclf.explain import overlay_heatmap
from brainclf.external import load_shortcut_study, sequence_table
from brainclf.figures import (
    confusion_matrix_figure,
    coverage_figure,
    deletion_figure,
    external_sequence_figure,
    feature_map_figure,
    history_figure,
    pr_figure,
    reliability_figure,
    roc_figure,
    shortcut_figure,
)
from brainclf.preprocess import load_model_input
from pages.common import (
    available_models,
    card_of,
    class_label,
    data_root,
    get_predictor,
    public,
    require,
    route_through_app,
    settings,
)

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
if who.can("re_evaluate"):
    source = st.radio("Results from", ["Model card (test split, no re-run)", "Re-evaluate on a folder"],
                      horizontal=True, key="eval_source")
else:
    source = "Model card (test split, no re-run)"  # clinicians read the card's results; no re-evaluation
# The card stores the test predictions with and without flip TTA: show the ones matching the TTA setting.
rows, card_tta = card.stored_test_predictions(predictor.tta)
where = f"the test split recorded in the {card.name} card"
root = data_root()
saved, fresh_external, folder_done = None, None, None
if source.startswith("Re-evaluate"):
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
            folder = config.folder(choice)
            report = evaluate_folder(predictor, folder,
                                     progress=lambda d, t: bar.progress(d / t, text=f"Evaluating {d}/{t} images"))
            st.session_state["eval_result"] = (card.label, choice, report["predictions"], report["unreadable"],
                                               report.get("external"))
        except BrainclfError as e:
            st.error(public(e))
        bar.empty()
    saved = st.session_state.get("eval_result")
    if saved and saved[0] == card.label and saved[1] in folders:
        _, folder_done, rows, unreadable, fresh_external = saved
        where = f"`{folder_done}`"
        root = config.folder(folder_done)
        if unreadable:
            st.warning(f"{len(unreadable)} unreadable files skipped: " + public("; ".join(unreadable[:5])))
    else:
        st.info("Choose a folder and press Evaluate.")
        st.stop()

if not rows:
    st.warning("This model's card holds no test predictions; re-evaluate it on a folder.")
    st.stop()

if predictor.tta and not card_tta and not source.startswith("Re-evaluate"):
    st.info("This card stores test predictions without TTA only; re-evaluate on a folder to see them with TTA.")
    predictor = predictor.with_tta(False)  # the refer threshold must match the stored predictions
report = report_from_rows(rows, predictor.refer_thresholds)
st.caption(f"{report['n']} images from {where}; model {card.label}"
           + (" (flip TTA on)." if predictor.tta and (card_tta or source.startswith("Re-evaluate")) else "."))
c = st.columns(5)
lo, hi = report["bootstrap"]["accuracy"]
c[0].metric("Accuracy", f"{report['accuracy']:.2%}", help=f"95% bootstrap CI {lo:.2%} – {hi:.2%}")
c[1].metric("Loss", f"{report['loss']:.4f}")
c[2].metric("Macro AUC", f"{report['macro_auc']:.4f}" if report["macro_auc"] is not None else "—")
c[3].metric("ECE", f"{report['ece']:.2%}", help="Expected calibration error (15 bins)")
c[4].metric("Errors", f"{sum(r['true'] != r['pred'] for r in rows)}")
st.dataframe(pd.DataFrame([{"class": class_label(k), **{m: round(v, 4) if isinstance(v, float) else v
                                                        for m, v in pc.items()}}
                           for k, pc in report["per_class"].items()]), hide_index=True)

clean = report.get("clean")
if clean:
    clo, chi = clean["bootstrap"]["accuracy"] if clean.get("bootstrap") else (float("nan"),) * 2
    st.info(f"**Leakage-aware view.** {report['n'] - clean['n']} of these {report['n']} images have an exact or "
            f"near duplicate among the training images. On the **clean subset** of {clean['n']} images the "
            f"accuracy is **{clean['accuracy']:.2%}** (95% CI {clo:.2%} – {chi:.2%}); "
            f"overall {report['accuracy']:.2%} (95% CI {lo:.2%} – {hi:.2%}).", icon=":material/content_copy:")
    def ci_text(ci) -> str:  # a class with no images here (pituitary in an external set) has no interval
        return "{:.3f} – {:.3f}".format(*ci) if ci else "—"

    st.dataframe(pd.DataFrame([{"class": class_label(k), "recall (all)": report["per_class"][k]["recall"],
                                "95% CI (all)": ci_text(report["bootstrap"]["recall"].get(k)),
                                "recall (clean)": clean["recall"].get(k),
                                "95% CI (clean)": ci_text((clean.get("bootstrap") or {}).get("recall", {}).get(k))}
                               for k in CLASS_NAMES]),
                 hide_index=True)

# ---- confusion matrix and the images behind a cell ---------------------------------------------------------
st.subheader("Confusion matrix")
normalise = st.toggle("Row-normalised (recall on the diagonal)", key="cm_norm")
event = st.plotly_chart(confusion_matrix_figure(report["confusion_matrix"], normalise), key="cm",
                        on_select="rerun", selection_mode="points")
st.caption("Click a cell (or choose the pair below) to see its images.")
worst = most_confused(report["confusion_matrix"])
points = (event or {}).get("selection", {}).get("points", []) if isinstance(event, dict) else \
    getattr(getattr(event, "selection", None), "points", [])
by_display = {class_label(k): k for k in CLASS_NAMES}
if points:
    clicked = (by_display.get(points[0].get("y")), by_display.get(points[0].get("x")))
    if None not in clicked and st.session_state.get("cm_clicked") != clicked:
        st.session_state["cm_clicked"] = clicked  # apply a click once; the boxes stay free to change after
        st.session_state["cell_true"], st.session_state["cell_pred"] = clicked
a, b = st.columns(2)
st.session_state.setdefault("cell_true", worst[0])  # start on the most confused pair
st.session_state.setdefault("cell_pred", worst[1])
true_c = a.selectbox("True class", CLASS_NAMES, format_func=class_label, key="cell_true")
pred_c = b.selectbox("Predicted class", CLASS_NAMES, format_func=class_label, key="cell_pred")
cell = rows_for_cell(rows, true_c, pred_c)
st.markdown(f"**{len(cell)} images** true *{class_label(true_c)}*, predicted *{class_label(pred_c)}*.")


def show_gallery(items, key: str, limit: int = 12, image_root=None) -> None:
    root_here = image_root or root
    if not items:
        return
    if not root_here:
        st.info("Pick a dataset in the sidebar to see these images (the server offers none yet: $BRAINCLF_DATA "
                "or [data] in brainclf.toml).")
        st.dataframe(pd.DataFrame([{"file": r["path"], **{k: p for k, p in zip(CLASS_NAMES, r["probs"])}}
                                   for r in items]), hide_index=True, key=f"{key}_table")
        return
    cols = st.columns(4)
    for j, r in enumerate(items[:limit]):
        path = resolve_image(r["path"], root_here, allowed=allowed)
        with cols[j % 4]:
            if path is None:
                st.caption(f"{Path(str(r['path'])).name}: not found in the dataset")
                continue
            x = load_model_input(path, predictor.contract)
            heat = predictor.gradcam(x, CLASS_NAMES.index(r["pred"]))
            st.image(overlay_heatmap(x, heat, 0.45), width="stretch",
                     caption=f"{Path(r['path']).name}: " + ", ".join(
                         f"{class_label(k)[:4]} {p:.0%}" for k, p in zip(CLASS_NAMES, r["probs"]) if p >= 0.01))
    if len(items) > limit:
        st.caption(f"… and {len(items) - limit} more.")


show_gallery(cell, "cell")

# ---- external validation: images from another source --------------------------------------------------------
st.subheader("External validation")
st.caption("The Kaggle test split above comes from the same sources as the training images, so its accuracy is "
           "an **in-distribution** figure. These are slices from another source, which is how a clinician's own "
           "scans look to the model.")
externals = dict(card.metrics.get("external", {}))
fresh = fresh_external
if fresh:
    externals = {f"{fresh['dataset']} (just evaluated)": fresh}
if not externals:
    st.info("No external validation is recorded for this model. Re-evaluate it on an external folder, or run "
            "`python -m brainclf evaluate --model … --data EXTERNAL --record`.")
for name, ext in externals.items():
    iv = ext.get("intervals") or {}
    st.markdown(f"**{name}** — {ext['membership']}.")
    e = st.columns(4)
    acc_ci = iv.get("accuracy")
    e[0].metric("Accuracy", f"{ext['accuracy']:.1%}",
                help=f"95% CI {acc_ci[0]:.1%} – {acc_ci[1]:.1%} (resampling {iv.get('groups')} case groups)"
                if acc_ci else None)
    e[1].metric("Tumours called 'no tumour'", f"{ext['called_notumor_rate']:.1%}"
                if ext.get("called_notumor_rate") is not None else "—",
                help=f"{ext['called_notumor']:,} of {ext['tumour_images']:,} tumour images")
    e[2].metric("…not referred or flagged", f"{ext['called_notumor_unflagged_rate']:.1%}"
                if ext.get("called_notumor_unflagged_rate") is not None else "—",
                help="Missed tumours that the refer rule and the OOD guard did not catch: the dangerous errors.")
    e[3].metric("Answered (not referred)", f"{ext['coverage']:.1%}",
                help=f"Accuracy of those answered: {ext['accepted_accuracy']:.1%}"
                if ext.get("accepted_accuracy") is not None else None)
    core = ext.get("t1c_tumours_and_normals")
    if core:
        st.caption(f"Contrast-enhanced (T1C+) tumours and all normal slices: {core['accuracy']:.1%} of "
                   f"{core['n']:,} images.")
    left, right = st.columns(2)
    if ext.get("by_sequence"):
        left.plotly_chart(external_sequence_figure(ext), key=f"ext_seq_{name}")
    right.plotly_chart(confusion_matrix_figure(ext["confusion_matrix"], normalise, f"{name}: confusion"),
                       key=f"ext_cm_{name}")
    if ext.get("by_sequence"):
        st.dataframe(pd.DataFrame(sequence_table(ext)), hide_index=True,
                     column_config={k: st.column_config.NumberColumn(k, format="percent") for k in (
                         "accuracy", "tumours called 'no tumour'", "…and not referred or flagged",
                         "referred or flagged")})
    ext_rows = ext.get("predictions") or card.external_predictions.get(name, [])
    wrong = misclassified(ext_rows)
    if wrong:
        with st.expander(f"Misclassified external images ({len(wrong):,}), most confident first, with Grad-CAM"):
            sequences = list(ext.get("by_sequence", {}))
            pick = st.selectbox("Sequence", ["all", *sequences], key=f"ext_seq_pick_{name}")
            shown = wrong if pick == "all" else misclassified(ext_rows, pick)
            ext_root = config.root(ext.get("dataset", name))  # the server's root of that name, nothing else
            show_gallery(shown, f"ext_{name}", image_root=ext_root.path if ext_root else (root if fresh else None))

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
left.plotly_chart(roc_figure(report["curves"]), key="roc")
right.plotly_chart(pr_figure(report["curves"]), key="pr")
left, right = st.columns(2)
left.plotly_chart(reliability_figure(report["reliability"], "Reliability (calibration)"), key="rel")
histories = [m["history"] for m in card.training.get("members", [])] or card.training.get("history")
if histories:
    right.plotly_chart(history_figure(histories), key="hist")

# ---- trust: calibration, refer rule, OOD guard, Grad-CAM faithfulness ---------------------------------------
st.subheader("When to trust a prediction")
cal, refer = card.calibration, report["refer"]
t1, t2, t3 = st.columns(3)
if cal:
    t1.metric("Temperature (fitted on validation)", f"{predictor.temperature:.3f}")
    t1.caption(f"Validation ECE {cal.get('val_ece_before', 0):.2%} before → {cal.get('val_ece_after', 0):.2%} after "
               f"scaling; shown here: {report['ece']:.2%}.")
if refer["accepted_accuracy"] is not None:
    rule = predictor.refer_thresholds
    nt, base = rule["notumor"], predictor.refer_threshold
    t2.metric("Refer rule: coverage", f"{refer['coverage']:.1%}",
              help=f"Predictions below confidence {base:.3f} (a 'no tumour' answer: below {nt:.3f}) are referred "
                   "to a radiologist.")
    t2.caption(f"Accepted accuracy {refer['accepted_accuracy']:.2%}; {refer['referred']:,} referred. Thresholds "
               f"chosen on validation: {base:.3f} for ≥ 99.9 % accuracy, and {nt:.3f} for 'no tumour' so that no "
               "validation tumour is answered 'no tumour' without referral.")
if card.ood.get("measured"):
    m = card.ood["measured"]
    t3.metric("OOD guard: non-MRI flagged", f"{m['non_mri_flagged']}/{m['non_mri_n']}")
    t3.caption(f"Test images flagged: {m.get('test_flagged', 0)}/{m.get('test_n', 0)}. Colour check + "
               "Mahalanobis distance of penultimate features.")
left, right = st.columns(2)
left.plotly_chart(coverage_figure(report["coverage_curve"], predictor.refer_threshold), key="coverage")
if card.faithfulness.get("deletion"):
    d, rnd = card.faithfulness["deletion"], card.faithfulness.get("randomisation", {})
    right.plotly_chart(deletion_figure(d), key="deletion")
    st.caption(f"Grad-CAM faithfulness on {d['n']} test images: deleting the most salient pixels first lowers "
               f"the predicted-class probability faster than deleting random blocks (AUC {d['gradcam_auc']:.3f} vs "
               f"{d['random_auc']:.3f}; lower for {d['share_gradcam_lower']:.0%} of images). Sanity check: maps "
               f"from a re-initialised model have mean Spearman correlation {rnd.get('mean_spearman', 0):.2f} "
               "with the trained model's (they should differ).")

# ---- glioma vs meningioma -----------------------------------------------------------------------------------
st.subheader("Glioma vs meningioma")
confused = rows_for_cell(rows, "glioma", "meningioma") + rows_for_cell(rows, "meningioma", "glioma")
st.markdown(f"{len(confused)} test images confused between glioma and meningioma "
            f"({len(rows_for_cell(rows, 'meningioma', 'glioma'))} meningioma → glioma, "
            f"{len(rows_for_cell(rows, 'glioma', 'meningioma'))} glioma → meningioma).")
show_gallery(confused, "gm", limit=8)
if root and st.button("Map the model's features (PCA of penultimate layer)", key="fmap"):
    gm_rows = [r for r in rows if r["true"] in ("glioma", "meningioma")]
    paths = [(r, resolve_image(r["path"], root, allowed=allowed)) for r in gm_rows]
    paths = [(r, p) for r, p in paths if p is not None]
    if not paths:
        here = config.root_of(root)
        st.warning(f"None of the images were found in the dataset {here.name if here else ''}.")
    else:
        with st.spinner(f"Computing features of {len(paths)} images…"):
            x = np.stack([load_model_input(p, predictor.contract) for _, p in paths])
            coords = embed_2d(penultimate_features(predictor.model, x))
        st.plotly_chart(feature_map_figure(coords, [r["true"] for r, _ in paths], [r["pred"] for r, _ in paths],
                                           [r["path"] for r, _ in paths], "Penultimate-layer features (PCA)"),
                        key="fmap_fig")

# ---- two models side by side --------------------------------------------------------------------------------
st.subheader("Compare models")
others = [p for p in available_models() if p.stem != card.name]
if not others:
    st.caption("Only one model is available.")
else:
    other = st.selectbox("Compare with", others, format_func=lambda p: p.stem, key="compare")
    oc = card_of(other)
    if oc is None or not oc.test_predictions:
        st.info(f"{other.name} has no test predictions in its card.")
    else:
        orep = report_from_rows(oc.test_predictions)
        table = pd.DataFrame({
            "metric": ["images", "accuracy", "macro AUC", "ECE", "parameters"]
            + [f"recall {class_label(k)}" for k in CLASS_NAMES],
            card.name: [report["n"], report["accuracy"], report["macro_auc"], report["ece"], card.params]
            + [report["per_class"][k]["recall"] for k in CLASS_NAMES],
            oc.name: [orep["n"], orep["accuracy"], orep["macro_auc"], orep["ece"], oc.params]
            + [orep["per_class"][k]["recall"] for k in CLASS_NAMES],
        })
        st.dataframe(table, hide_index=True)
        left, right = st.columns(2)
        left.plotly_chart(confusion_matrix_figure(report["confusion_matrix"], normalise, card.name), key="cmp_a")
        right.plotly_chart(confusion_matrix_figure(orep["confusion_matrix"], normalise, oc.name), key="cmp_b")
