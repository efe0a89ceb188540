"""The Evaluation page's content, ready to lay out: formatted numbers and tables in words, the confusion-matrix
click, the galleries (Grad-CAM cached per model version and image content), the feature map and the model
comparison. The page (pages/evaluation.py) only places what these return. No Streamlit here.
"""

from __future__ import annotations

import numpy as np

from .. import CLASS_NAMES, DISPLAY_NAMES
from ..escaping import md_literal
from ..evaluation.analysis import paired_comparison, rows_for_cell
from ..scoring.operating_point import refers_all
from . import scope, wording
from .comparison_words import CLAIMED, no_paired_test, paired_words, second_name
from .operating import bound_clause
from .wording import class_label as label
from .wording import count as number

pct = wording.cell_pct  # a no-break space before '%': a narrow table cell never breaks it onto its own line


def pct_pair(a: float, b: float) -> tuple[str, str]:
    return tuple(p.replace(" ", "\u00a0") for p in wording.pct_pair(a, b))


def count(n: int, word: str = "image", plural: str | None = None) -> str:
    """1 → '1 image', 1234 → '1,234 images' (wording.plural with 'image' as the default noun; a bare number is
    wording.count)."""
    return wording.plural(n, word, plural)


def interval(ci, fmt=pct) -> str:
    """A 95 % interval as 'lo – hi', or '—' where there is none (a class without images)."""
    return f"{fmt(ci[0])} – {fmt(ci[1])}" if ci else "—"


def _three(x) -> str:
    return "—" if x is None else f"{x:.3f}"


def progress(done: int, total: int) -> tuple[float, str]:
    """A progress bar's fraction and text while a folder is evaluated."""
    return (done / total if total else 0.0), f"Evaluating {number(done)} of {count(total)}"


def unreadable_message(unreadable: list[str], shown: int = 5) -> str:
    """'2 unreadable files skipped: a.jpg: …; b.png: …' (the first few)."""
    more = f"; … and {number(len(unreadable) - shown)} more" if len(unreadable) > shown else ""
    return f"{count(len(unreadable), 'unreadable file')} skipped: " + "; ".join(unreadable[:shown]) + more


# ---- the headline ------------------------------------------------------------------------------------------
def source_caption(report: dict, where: str, model_label: str, tta: bool) -> str:
    return f"{count(report['n'])} from {where}; model {model_label}" + (" (flip TTA on)." if tta else ".")


def folder_notes(report: dict) -> str | None:
    """What a folder evaluation (brainclf.evaluation.evaluate_folder) could not check or left out, as Markdown that
    renders literally; None when nothing was."""
    notes = [f"Clean subset: {report['clean_note']}." if report.get("clean_note") else "",
             f"{count(report['excluded_trained_on'])} the model trained or validated on "
             f"{'was' if report['excluded_trained_on'] == 1 else 'were'} left out."
             if report.get("excluded_trained_on") else ""]
    return md_literal(" ".join(n for n in notes if n)) or None


# Its unit said: slices of one case are not independent, so where cases are known (an external folder) the
# case-group interval beside it is the one to read.
HEADLINE_INTERVAL = "95 % interval (images as units)"  # bootstrap, or exact where every resample agrees


def headline_rows(report: dict) -> list[dict]:
    """Accuracy, loss, macro AUC, calibration error and the error count: short values for any width."""
    errors, iv = int(report["n"] - np.trace(np.asarray(report["confusion_matrix"]))), HEADLINE_INTERVAL
    return [
        {"measure": "Accuracy", "value": pct(report["accuracy"]), iv: interval(report["bootstrap"]["accuracy"])},
        {"measure": "Loss (cross-entropy)", "value": _three(report["loss"]), iv: ""},
        {"measure": auc_name(report), "value": _three(report["macro_auc"]), iv: ""},
        {"measure": "Calibration error (ECE, 15 bins)", "value": pct(report["ece"]), iv: ""},
        {"measure": "Errors", "value": f"{number(errors)} of {number(report['n'])}", iv: ""},
    ]


def auc_name(report: dict) -> str:
    """'Macro AUC', or 'Macro AUC (3 classes present)' where the images hold only some classes: the mean is then
    over those, and does not compare with a four-class figure."""
    present = sum(1 for m in report.get("per_class", {}).values() if m.get("support"))
    return "Macro AUC" if present in (0, len(CLASS_NAMES)) else f"Macro AUC ({present} classes present)"


def _recall(m: dict, key: str = "recall") -> str:
    """A class's recall (or F1), '—' when the images hold none of it (scikit-learn reports 0 there)."""
    return pct(m[key]) if m.get("support", 1) else "—"


def per_class_rows(report: dict) -> list[dict]:
    """Per class; precision '—' for a class never predicted (undefined; scikit-learn reports 0 there)."""
    predicted = np.asarray(report["confusion_matrix"]).sum(0)
    out = []
    for i, (c, m) in enumerate(report["per_class"].items()):
        out.append({"class": label(c), "images": number(m['support']),
                    "precision": pct(m["precision"]) if predicted[i] else "—",
                    "recall (sensitivity)": _recall(m), "F1": _recall(m, "f1"), "AUC": _three(m.get("auc"))})
    return out


def clean_view(report: dict) -> dict | None:
    """The leakage-aware view: a sentence and recall with intervals on all images and on the clean subset."""
    clean = report.get("clean")
    if not clean:
        return None
    boot = clean.get("bootstrap") or {}
    n, dup = report["n"], report["n"] - clean["n"]
    sentence = (f"**Leakage-aware view.** {number(dup)} of these {count(n)} {'has' if dup == 1 else 'have'} an "
                f"exact or near duplicate among the training images. On the **clean subset** of "
                f"{count(clean['n'])} the accuracy is **{pct(clean['accuracy'])}** (95 % interval "
                f"{interval(boot.get('accuracy'))}); "
                f"on all images {pct(report['accuracy'])} ({interval(report['bootstrap']['accuracy'])}).")
    rows = [{"class": label(c), "recall (all)": _recall(report["per_class"][c]),
             "95 % interval (all)": interval(report["bootstrap"]["recall"].get(c)),
             "recall (clean)": pct(clean["recall"][c]) if clean["recall"].get(c) is not None else "—",
             "95 % interval (clean)": interval((boot.get("recall") or {}).get(c))} for c in CLASS_NAMES]
    return {"sentence": sentence, "rows": rows}


# ---- the confusion matrix and its cells ------------------------------------------------------------------------
def clicked_cell(event) -> tuple[str, str] | None:
    """(true, predicted) class of the confusion-matrix cell clicked, from `st.plotly_chart(on_select=...)`'s
    event (a dict or an attribute object); None without a click on a cell."""
    selection = event.get("selection") if isinstance(event, dict) else getattr(event, "selection", None)
    points = (selection.get("points") if isinstance(selection, dict) else getattr(selection, "points", None)) or []
    by_display = {DISPLAY_NAMES[c]: c for c in CLASS_NAMES}
    for p in points:
        data = p.get("customdata") if isinstance(p, dict) else None
        if isinstance(data, (list, tuple)) and len(data) == 2 and all(d in CLASS_NAMES for d in data):
            return str(data[0]), str(data[1])
        true, pred = by_display.get(p.get("y")), by_display.get(p.get("x"))
        if true and pred:
            return true, pred
    return None


def cell_heading(rows: list[dict], true: str, pred: str) -> str:
    return f"True {label(true)}, predicted {label(pred)}: {count(len(rows_for_cell(rows, true, pred)))}"


def glioma_meningioma(rows: list[dict]) -> dict:
    """Both directions of the confusion, each with its own heading and rows (most confident first, as
    rows_for_cell orders them): one gallery of both would show only the first direction's first few."""
    m_g, g_m = rows_for_cell(rows, "meningioma", "glioma"), rows_for_cell(rows, "glioma", "meningioma")
    return {"directions": [(f"Meningioma called glioma: {count(len(m_g))}", m_g),
                           (f"Glioma called meningioma: {count(len(g_m))}", g_m)],
            "sentence": f"{count(len(g_m) + len(m_g))} confused between glioma and meningioma "
                        f"({number(len(m_g))} meningioma → glioma, {number(len(g_m))} glioma → meningioma)."}


# ---- external validation ---------------------------------------------------------------------------------------
UPPER_ESTIMATE_NOTE = (f"Bounds, not estimates: this split {scope.LOOSE_SPLIT_WHY}, so its accuracies are upper "
                       "estimates (\"≤\") and its share of tumours called 'no tumour' a lower one (\"≥\"); how many of "
                       "those were neither referred nor flagged can go either way (README, \"Results: read this "
                       "first\").")


def external_view(name: str, ext: dict) -> dict:
    """One external dataset: its heading (Markdown, the card's text escaped), a table of its key rates (with what
    each means) and its sequences."""
    iv = ext.get("intervals") or {}
    acc_ci = iv.get("accuracy")
    bound = scope.upper_estimate(ext)

    def at_most(value):  # an accuracy of a leaky split is an upper estimate
        return scope.upper_mark(bound and value is not None) + pct(value)

    def at_least(value):  # its share of tumours called "no tumour" a lower one
        return scope.lower_mark(bound and value is not None) + pct(value)

    rows = [
        {"measure": "Accuracy", "value": scope.external_pct(ext, pct),
         "detail": f"95 % interval {interval(acc_ci)} ({scope.group_interval(iv)})" if acc_ci
         else f"{count(ext['n'])}; {scope.group_interval(iv)}"},
        {"measure": "Tumours called 'no tumour'", "value": at_least(ext.get("called_notumor_rate")),
         "detail": f"{number(ext.get('called_notumor'))} of {count(ext.get('tumour_images', 0), 'tumour image')}"},
        {"measure": "…not referred or flagged", "value": pct(ext.get("called_notumor_unflagged_rate")),
         "detail": "missed tumours that the refer rule and the OOD guard did not catch: the dangerous errors"},
        {"measure": "Answered (not referred)", "value": pct(ext.get("coverage")),
         "detail": f"accuracy of those answered: {at_most(ext.get('accepted_accuracy'))}"},
    ]
    core = ext.get("t1c_tumours_and_normals")
    sequences = []
    for seq, m in ext.get("by_sequence", {}).items():
        seq_iv = m.get("intervals") or {}
        sequences.append({"sequence": seq, "images": number(m['n']), "accuracy": at_most(m["accuracy"]),
                          "accuracy 95 % interval": interval(seq_iv.get("accuracy")),
                          "tumours called 'no tumour'": pct(m.get("called_notumor_rate")),
                          "…and not referred or flagged": pct(m.get("called_notumor_unflagged_rate")),
                          "referred or flagged": pct(None if m.get("coverage") is None else 1 - m["coverage"])})
    return {"heading": f"**{md_literal(name)}** — {md_literal(ext['membership'])}.", "rows": rows,
            "sequences": sequences, "notes": manifest_notes(ext),
            "caveat": UPPER_ESTIMATE_NOTE if scope.upper_estimate(ext) else None,
            "core": f"Contrast-enhanced (T1C+) tumours and all normal slices: {pct(core['accuracy'])} of "
                    f"{count(core['n'])}." if core else None}


# ---- when to trust a prediction ------------------------------------------------------------------------------------
def _rule_words(predictor, rule) -> str:
    """How the refer rule in force was set: fitted on validation (per class or one bar), or the fixed fallback."""
    if not rule.fitted:
        return (f"This card has no refer rule fitted on validation: the fixed default bar, confidence "
                f"{pct(rule.base)}, applies (not validated).")
    if refers_all(rule.base):
        return "No confidence on validation reached the target accuracy: every answer is referred."
    base, nt = pct_pair(rule.base, rule.threshold("notumor"))
    words = (f"Thresholds fitted on validation: confidence {base}, aiming at {pct(predictor.refer_target_accuracy)} "
             f"right{bound_clause(predictor.refer_confidence)}")
    return words + (f", and {nt} for 'no tumour' so that no validation tumour is answered 'no tumour' without "
                    "referral." if rule.strict_notumor else ".")


def trust_view(card, predictor, report: dict, rule) -> list[dict]:
    """Up to three short figures (label, value, caption): temperature, the refer rule's coverage (`rule`: the one in
    force, brainclf.presentation.wording.refer_rule), the OOD guard."""
    out = []
    cal, refer = card.calibration, report["refer"]
    if cal:
        mode = "_tta" if predictor.tta and "val_ece_after_tta" in cal else ""  # the temperature shown's own mode
        out.append({"label": "Temperature", "value": f"{predictor.temperature:.2f}",
                    "caption": f"Fitted on validation{' (flip TTA)' if mode else ''}. Validation ECE "
                               f"{pct(cal.get('val_ece_before' + mode))} before → "
                               f"{pct(cal.get('val_ece_after' + mode))} after scaling; here {pct(report['ece'])}."})
    # Always shown: a rule that refers everything (no accuracy of those answered) is the case to see most.
    referred = count(refer["referred"])
    answered = (f"Accuracy of those answered {pct(refer['accepted_accuracy'])}; {referred} referred"
                if refer["accepted_accuracy"] is not None else f"None answered: all {referred} referred")
    out.append({"label": "Answered (refer rule)", "value": pct(refer["coverage"]),
                "caption": f"{answered} to a radiologist. " + _rule_words(predictor, rule)})
    measured = (card.ood or {}).get("measured")
    if measured:
        flagged = f"{number(measured.get('non_mri_flagged'))} of {number(measured.get('non_mri_n'))}"
        out.append({"label": "Non-MRI images flagged", "value": flagged,
                    "caption": "Of a generated set (photos, documents, noise, shapes). Test images flagged: "
                               f"{number(measured.get('test_flagged'))} of "
                               f"{count(measured.get('test_n', 0))}, as recorded when the card was made. Colour "
                               "check + Mahalanobis distance of the model's features (and, since 2026-12-07, the CT "
                               "check: cards made before count without it)."})
    return out


def faithfulness_caption(faithfulness: dict) -> str | None:
    d, rnd = faithfulness.get("deletion"), faithfulness.get("randomisation") or {}
    if not d:
        return None
    faster = d["gradcam_auc"] < d["random_auc"]
    sanity = (f" Sanity check: maps from a re-initialised model have mean Spearman correlation "
              f"{rnd['mean_spearman']:.2f} with the trained model's (they should differ)."
              if rnd.get("mean_spearman") is not None else " The re-initialisation sanity check was not run.")
    return (f"Grad-CAM faithfulness on {count(d['n'], 'test image')}: deleting the most salient pixels first lowers "
            f"the predicted-class probability {'faster' if faster else 'no faster'} than deleting random blocks "
            f"(AUC {d['gradcam_auc']:.3f} vs {d['random_auc']:.3f}, lower is faster; lower for "
            f"{pct(d['share_gradcam_lower'], 0)} of images)"
            + ("." if faster else ": on this model the maps do not point at what drives the answer.") + sanity)


# ---- two models on the same images (the card-level comparison, external datasets included: .comparison) -------
def comparison(name_a: str, report_a: dict, params_a, rows_a: list[dict],
               name_b: str, report_b: dict, params_b, rows_b: list[dict],
               claimed: tuple[bool, bool] = (False, False)) -> dict:
    """Side-by-side table, and the paired comparison on the images both models were tested on. `claimed`: whose
    figures are its uploader's claim (brainclf.evaluation.card_is_verified false): its column says so, and no
    paired test is run on them."""
    def column(rep, params):
        return [number(rep['n']), pct(rep["accuracy"]), _three(rep["macro_auc"]), pct(rep["ece"]),
                number(params or None)] + [_recall(rep["per_class"][c]) for c in CLASS_NAMES]

    measures = ["images", "accuracy", auc_name(report_a), "calibration error (ECE)", "parameters"] + [
        f"recall {label(c)}" for c in CLASS_NAMES]
    b_name = second_name(name_a, name_b)
    col_a, col_b = (n + CLAIMED if c else n for n, c in zip((name_a, b_name), claimed))
    table = [{"measure": m, col_a: a, col_b: b}
             for m, a, b in zip(measures, column(report_a, params_a), column(report_b, params_b))]
    if any(claimed):
        who = [n for n, c in zip((name_a, b_name), claimed) if c]
        return {"table": table, "paired": None, "sentence": no_paired_test(who, "test predictions")}
    paired = paired_comparison(rows_a, rows_b)
    if not paired["n"]:
        return {"table": table, "paired": paired, "sentence": "The two models share no test images to compare."}
    sentence = paired_words(paired, name_a, name_b, f"On the {count(paired['n'])} both were tested on")
    return {"table": table, "paired": paired, "sentence": sentence}


def manifest_notes(ext: dict) -> list[str]:
    """What reading the folder's manifest.csv found (brainclf.evaluation.manifest), as Markdown that renders
    literally; [] for a card without it. A card's unknown keys are not checked by its schema: only strings pass."""
    found = ext.get("manifest")
    warnings = found.get("warnings") if isinstance(found, dict) else None
    return [md_literal(w[:600]) for w in warnings if isinstance(w, str)] if isinstance(warnings, list) else []
