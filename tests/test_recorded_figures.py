"""What the pages say of figures recorded in a card: external figures re-read with the refer rule in force (or
labelled with the mode they were recorded in), per-source curves' stars only where the rule's bars are theirs,
the temperature's ECE in its own mode, and the Home page's caveats from the card rather than fixed words."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from brainclf import CLASS_NAMES
from brainclf.evaluation import risk_coverage_by_source, with_refer_rule
from brainclf.evaluation.external import summarise as summarise_rows
from brainclf.presentation import (
    absent_classes_words,
    limitations_words,
    missed_tumours_unflagged,
    pct,
    recorded_rule_note,
)


def _rows(n: int = 40, seed: int = 0) -> list[dict]:
    """External rows as a card stores them: half glioma, half no tumour, confidences spread over 0.5-1."""
    rng = np.random.default_rng(seed)
    rows = []
    for k in range(n):
        true = "glioma" if k % 2 else "notumor"
        top = float(rng.uniform(0.5, 1.0))
        pred = true if k % 5 else ("notumor" if true == "glioma" else "glioma")
        probs = [(1 - top) / 3] * 4
        probs[CLASS_NAMES.index(pred)] = top
        rows.append({"path": f"{true}/{k}.png", "true": true, "pred": pred, "probs": probs, "referred": False,
                     "ood": False, "sequence": "T1" if k < n // 2 else "T2", "group": k})
    return rows


def test_external_figures_are_re_read_with_the_rule_in_force():
    rows = _rows()
    recorded = {**summarise_rows(rows), "by_sequence": {"T1": summarise_rows(rows[:20]),
                                                         "T2": summarise_rows(rows[20:])}, "tta": False}
    assert recorded["coverage"] == 1.0  # recorded with no bar: everything answered
    rows[3]["ood"] = True  # flagged: caught whatever the bar
    for row in rows[4:6]:  # the card schema lets rows leave both flags out (False)
        del row["referred"], row["ood"]
    recorded = {**summarise_rows(rows), "by_sequence": {"T1": summarise_rows(rows[:20]),
                                                         "T2": summarise_rows(rows[20:])}, "tta": False}
    strict = with_refer_rule(recorded, rows, {c: 0.8 for c in CLASS_NAMES})
    confident = [max(r["probs"]) >= 0.8 for r in rows]
    answered = [c and not r.get("ood") for r, c in zip(rows, confident)]
    assert strict["coverage"] == np.mean(answered) < 1 and strict["ood_flagged"] == 1
    assert strict["referred"] == len(rows) - sum(confident)
    assert strict["accuracy"] == recorded["accuracy"]  # what the model said is unchanged
    missed = [r["true"] != "notumor" and r["pred"] == "notumor" and a for r, a in zip(rows, answered)]
    assert strict["called_notumor_unflagged"] == sum(missed) < recorded["called_notumor_unflagged"]
    assert strict["by_sequence"]["T1"]["coverage"] == np.mean(answered[:20])
    assert strict["by_sequence"]["T1"]["n"] == 20 and recorded["by_sequence"]["T1"]["coverage"] == 0.95  # the flag
    # The intervals come with the rule: the unflagged miss rate's is the new rows', not the recorded one's.
    stale = {**recorded, "intervals": {**recorded["intervals"], "called_notumor_unflagged_rate": [0.0, 0.0]}}
    again = with_refer_rule(stale, rows, {c: 0.8 for c in CLASS_NAMES})
    marked = [{**r, "referred": not c} for r, c in zip(rows, confident)]
    assert again["intervals"] == summarise_rows(marked)["intervals"]
    assert again["intervals"]["called_notumor_unflagged_rate"] != [0.0, 0.0]
    ungrouped = [{k: v for k, v in r.items() if k != "group"} for r in rows]  # the card schema lets rows omit it
    kept = with_refer_rule(stale, ungrouped, {c: 0.8 for c in CLASS_NAMES})
    assert kept["coverage"] == strict["coverage"] and kept["intervals"]["accuracy"] == stale["intervals"]["accuracy"]
    assert kept["intervals"]["called_notumor_unflagged_rate"] is None  # the rule's own: no stale bar around it


def test_a_report_recorded_in_the_other_mode_says_so_instead():
    assert recorded_rule_note(False, False) is None and recorded_rule_note(True, True) is None
    note = recorded_rule_note(False, True)
    assert "as recorded (single pass" in note and note.endswith("which is read with flip TTA.")
    assert "as recorded (with flip TTA" in recorded_rule_note(True, False)


def _card(rows: list[dict], ext_tta: bool) -> SimpleNamespace:
    curve = {"n": 10, "answered": [10, 5], "correct": [9, 5], "threshold": [0.0, 0.9]}
    single, tta = ({"curves": {"brain-tumor-mri": curve}, "worst_notumor_miss": w} for w in (0.7, 0.55))
    return SimpleNamespace(
        calibration={"operating": single, "operating_tta": tta},  # each mode its own worst missed tumour
        metrics={"external": {"ext": {"tta": ext_tta}}}, external_predictions={"ext": rows},
        stored_test_predictions=lambda tta: ([], tta))


def test_per_source_curves_star_only_rows_of_the_rule_s_own_mode():
    rows, bars = _rows(), {c: 0.6 for c in CLASS_NAMES}
    (held,) = [v for v in risk_coverage_by_source(_card(rows, ext_tta=False), False, bars) if v["held_out"]]
    confident = np.mean([max(r["probs"]) >= 0.6 for r in rows])
    assert held["label"] == "ext, held-out cases" and held["point"]["coverage"] == confident < 1
    (other,) = [v for v in risk_coverage_by_source(_card(rows, ext_tta=False), True, bars) if v["held_out"]]
    assert other["label"] == "ext, held-out cases (single pass)" and other["point"] is None
    # A "no tumour" answer at or below the worst validation miss of the rows' own mode (single pass: 0.7, not flip
    # TTA's 0.55) is referred at every cut, as on validation.
    low_notumor = sum(r["pred"] == "notumor" and max(r["probs"]) <= 0.7 for r in rows)
    assert low_notumor > sum(r["pred"] == "notumor" and max(r["probs"]) <= 0.55 for r in rows)
    assert max(held["coverage"]) == max(other["coverage"]) == (len(rows) - low_notumor) / len(rows)


def test_the_temperature_caption_reads_the_ece_of_the_temperature_shown():
    from brainclf.evaluation import report_from_rows
    from brainclf.presentation import refer_rule
    from brainclf.presentation.views import trust_view

    rows = _rows()
    cal = {"val_ece_before": 0.072, "val_ece_after": 0.024, "val_ece_before_tta": 0.066, "val_ece_after_tta": 0.036}
    card = SimpleNamespace(calibration=cal, ood=None)
    rule = refer_rule({c: 0.9 for c in CLASS_NAMES}, cal)
    report = report_from_rows([{**r, "clean": True} for r in rows], rule.thresholds)
    for tta, before, after in ((True, 0.066, 0.036), (False, 0.072, 0.024)):
        predictor = SimpleNamespace(temperature=1.5, tta=tta, refer_target_accuracy=0.98, refer_confidence=None)
        (temp,) = [t for t in trust_view(card, predictor, report, rule) if t["label"] == "Temperature"]
        caption = temp["caption"].replace("\xa0", " ")  # the page's tables keep a figure and its % together
        assert f"ECE {pct(before)} before → {pct(after)} after" in caption
        assert ("(flip TTA)" in temp["caption"]) == tta


def _external(n, tumours, missed, classes):
    return {"n": n, "accuracy": 0.7, "tumour_images": tumours, "called_notumor_unflagged": missed,
            "classes_present": classes}


def test_home_caveats_come_from_the_card():
    card = SimpleNamespace(metrics={"external": {"a": _external(100, 80, 2, ["glioma", "notumor"]),
                                                 "b": _external(50, 20, 3, ["meningioma", "notumor"])}},
                           extra={}, site=None, provenance=None)
    missed = missed_tumours_unflagged(card)  # pooled over both sources, not the first one's rate
    assert (missed["missed"], missed["tumours"], missed["sources"]) == (5, 100, ["a", "b"])
    assert missed["rate"] == 0.05
    assert absent_classes_words(card) == ("The other-source slices hold no pituitary slice: no figure there speaks "
                                          "for it.")
    everything = SimpleNamespace(metrics={"external": {"a": _external(10, 5, 0, list(CLASS_NAMES))}}, extra={},
                                 site=None)
    assert absent_classes_words(everything) == "" and absent_classes_words(SimpleNamespace(
        metrics={}, extra={}, site=None)) == ""
    assert missed_tumours_unflagged(SimpleNamespace(metrics={}, extra={})) is None
    assert "It has not been validated on other scanners" in limitations_words(card)


def test_a_site_model_s_limitations_name_its_site_with_the_card_s_words_escaped():
    scope = {"scope": "validated at St *Elsewhere*: 70 % right on 400 held-out slices"}
    site = SimpleNamespace(metrics={}, extra={}, provenance=None, site=scope, measured_site=scope)
    words = limitations_words(site)
    assert "Beyond its site (Validated at St \\*Elsewhere\\*" in words
    assert "It has not been validated" not in words


def test_a_site_models_training_figures_are_named_as_its_starting_models():
    from brainclf.presentation import history_title, site_training_words

    def card(name, site, provenance=None):
        return SimpleNamespace(name=name, site=site, measured_site=site if not provenance else {})

    plain = card("default", {})
    assert history_title(plain) == "Training history of default" and site_training_words(plain) is None
    adapt = {"tune_slices": 600, "replay_images": 1800, "epochs_run": 14, "best_epoch": 10}
    site = {"name": "clinic_1", "adapted": True, "base_model": {"name": "kaggle_only"}, "adapt": adapt}
    adapted = card("clinic-kaggle_only-adapted", site)
    assert history_title(adapted) == "Training history of its starting model kaggle_only"
    assert site_training_words(adapted) == (
        "The training figures are its starting model kaggle\\_only's. It was then fine-tuned at clinic\\_1 on 600 "
        "site slices, with 1,800 of its own training images replayed, for 14 epochs (epoch 10 kept).")
    profile = card("clinic-default", {"name": "clinic", "adapted": False, "base_model": {"name": "default"}})
    assert site_training_words(profile) == "The same weights as default, calibrated at clinic: the training " \
                                           "figures are default's."
    # An upload's own site block (installed before add_model dropped it) is its uploader's words: not shown.
    forged = card("up", {**site, "adapt": {"tune_slices": "[x](http://evil)"}}, provenance={"uploaded": "x"})
    assert site_training_words(forged) is None and history_title(forged) == "Training history of up"
    odd = card("odd", {**site, "adapt": {"tune_slices": "[x](http://evil)", "epochs_run": True}})
    assert "[x]" not in site_training_words(odd) and "on ? site slices" in site_training_words(odd)


def test_the_bundled_refit_default_keeps_its_recipe_runs_missed_tumours_and_absent_class():
    """Its figures are its split run's (a refit): the Home page lost both when they were read from counts that the
    linked block did not keep."""
    from brainclf.model import read_card

    card = read_card("models/default.keras")
    split = read_card("models/default_split.keras").metrics["external"]["external-radiopaedia"]
    missed = missed_tumours_unflagged(card)
    assert (missed["missed"], missed["tumours"]) == (split["called_notumor_unflagged"], split["tumour_images"])
    assert "single pass" in missed["words"] and missed["rate"] == split["called_notumor_unflagged_rate"]
    assert absent_classes_words(card).startswith("The other-source slices hold no pituitary slice")
    # A refit linked before the counts were kept: its one source's rate, said as a share.
    old = SimpleNamespace(metrics={}, extra={"recipe_run": {"model": "s", "external": {"ext": {
        "n": 427, "accuracy": 0.7, "called_notumor_unflagged_rate": 0.003}}}})
    assert missed_tumours_unflagged(old)["rate"] == 0.003 and missed_tumours_unflagged(old)["missed"] is None


def test_a_rule_that_answers_nothing_says_so_instead_of_a_bar_of_100_percent():
    from brainclf.presentation import operating_summary, refer_rule
    from brainclf.presentation.views import trust_view
    from brainclf.presentation.wording import refer_line
    from brainclf.scoring.operating_point import REFER_ALL

    curve = {"n": 10, "answered": [10, 4], "correct": [6, 3], "threshold": [0.5, 1.0]}  # never 99 % right
    cal = {"operating": {"curves": {"a": curve}, "worst_notumor_miss": 0.0}, "refer_target_accuracy": 0.99}
    bars = {c: REFER_ALL for c in CLASS_NAMES}
    said = operating_summary(cal, False, bars, 0.99)
    assert said.startswith("Every answer is referred: no confidence reached the target") and "≥" not in said
    rule = refer_rule(bars, cal)
    probs = {c: 1.0 if c == "glioma" else 0.0 for c in CLASS_NAMES}
    assert rule.referred(probs) and "every answer is referred" in refer_line(rule, probs)
    predictor = SimpleNamespace(temperature=1.0, tta=False, refer_target_accuracy=0.99, refer_confidence=None)
    report = {"refer": {"accepted_accuracy": 1.0, "coverage": 0.0, "referred": 3}, "ece": 0.1}
    (answered,) = [t for t in trust_view(SimpleNamespace(calibration={}, ood=None), predictor, report, rule)
                   if t["label"].startswith("Answered")]
    assert "every answer is referred" in answered["caption"]


def test_the_predict_page_promises_an_ood_flag_only_where_the_card_has_a_guard():
    from brainclf.presentation import guard_words

    guarded = guard_words(SimpleNamespace(ood={"threshold": 3.0, "means": [0.1]}))
    assert guarded.startswith("Colour images, CT slices (told by their bright skull) and slices unlike these")
    assert "no out-of-distribution guard" in guard_words(SimpleNamespace(ood=None))
    assert "uploader's" not in guard_words(SimpleNamespace(ood={"threshold": 3.0}, provenance={}, measured_site={}))
    upload = SimpleNamespace(ood={"threshold": 1e9}, provenance={"uploaded_by": "x"}, measured_site={})
    assert "refer rule and out-of-distribution guard are its uploader's, not fitted on this server" in \
        guard_words(upload)
    profile = SimpleNamespace(ood={"threshold": 3.0}, provenance={"uploaded_by": "x"}, measured_site={"site": "s"})
    assert "uploader's" not in guard_words(profile)  # a site step fitted them here


def test_the_unreferred_miss_mark_takes_the_worst_source_and_says_whose_figures():
    from brainclf.presentation import unreferred_miss_warning
    from brainclf.presentation.model_table import misses_words

    def card(external, site=None, provenance=None):
        return SimpleNamespace(metrics={"external": external}, extra={}, measured_site=site or {},
                               provenance=provenance or {})

    a = {"n": 2000, "accuracy": 0.9, "tumour_images": 2000, "called_notumor_unflagged": 0}
    b = {"n": 300, "accuracy": 0.8, "tumour_images": 300, "called_notumor_unflagged": 12}  # 4 %; 0.52 % pooled
    marked = unreferred_miss_warning(card({"a": a, "b": b}))
    assert marked.startswith("answered 'no tumour' for 4.0 % of b's tumour slices")
    assert unreferred_miss_warning(card({"a": a})) is None
    near = {**b, "tumour_images": 343, "called_notumor_unflagged": 7}  # 2.04 %: not "2.0 %, the bar is 2.0 %"
    assert "2.04 % of b's" in unreferred_miss_warning(card({"b": near})) and "the bar is 2.00 %" in \
        unreferred_miss_warning(card({"b": near}))
    site = card({"st-x": b}, site={"site": "st-x"})
    assert "of its site's held-out part (st-x)'s tumour slices" in unreferred_miss_warning(site)
    assert misses_words(site) == "misses tumours at its site"
    upload = card({"b": b}, provenance={"uploaded_by": "x"})
    assert unreferred_miss_warning(upload).endswith(", claimed by the uploader, not verified")
