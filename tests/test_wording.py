"""The clinician-facing sentences (presentation.wording) and the session's case book (presentation.cases)."""

from __future__ import annotations

import re

from brainclf.presentation import (
    INTENDED_USE,
    CaseBook,
    batch_row,
    content_hash,
    gradcam_caveat,
    is_study_model,
    leaning,
    model_label,
    pct,
    pct_pair,
    plural,
    probability_lines,
    refer_rule,
    result_status,
    summary_row,
    widget_key,
)

CAL = {"fitted_on": "validation split (571 images)", "refer_target_accuracy": 0.999, "refer_threshold": 0.99,
       "refer_thresholds": {"glioma": 0.99, "meningioma": 0.99, "notumor": 0.9996, "pituitary": 0.99}}
THRESHOLDS = CAL["refer_thresholds"]


def probs(cls: str, p: float) -> dict[str, float]:
    rest = (1 - p) / 3
    return {c: (p if c == cls else rest) for c in ("glioma", "meningioma", "notumor", "pituitary")}


def one_sentence(text: str) -> bool:
    """A single sentence: one full stop at the end (decimal points and 'e.g.'-free text)."""
    return re.sub(r"\d\.\d", "", text).count(". ") == 0 and text.endswith(".")


def test_refer_sentence_states_threshold_origin_and_meaning_in_one_sentence():
    rule = refer_rule(THRESHOLDS, CAL)
    status = result_status(rule, probs("meningioma", 0.93))
    assert status.kind == "refer" and one_sentence(status.detail), status.detail
    s = status.detail  # the longer explanation ("Why refer?")
    assert "a radiologist should read this slice" in s and "not reliable enough to act on" in s  # what refer means
    assert "93.0 %" in s and "99.0 %" in s  # this answer's confidence and the bar it missed
    assert "validation split (571 images)" in s and "aim at 99.9 % right" in s  # where the bar comes from
    assert "were 99.9 %" not in s and "not recorded" in s  # the target is an aim, never stated as reached


CURVES = {"curves": {"kaggle": {"n": 600, "threshold": [0.995, 0.99, 0.5], "answered": [400, 500, 600],
                                "correct": [400, 499, 560]},
                     "other": {"n": 142, "threshold": [0.995, 0.6], "answered": [40, 142], "correct": [40, 120]}}}


def test_refer_line_is_short_and_says_what_was_measured_on_how_many():
    """Issue #27: the ~55-word refer sentence said "so that accepted answers were 99.9 % accurate" (the target,
    as if achieved), even for a model calibrated on 150 images. The line says what the card measured."""
    measured = refer_rule(THRESHOLDS, {**CAL, "operating": CURVES})
    status = result_status(measured, probs("meningioma", 0.93))
    s = status.sentence
    assert one_sentence(s) and len(s.split()) <= 30, s
    assert s.startswith("Refer: confidence 93.0 %") and "99.0 % bar" in s
    # At 0.99: kaggle 500 answered (499 right), other 40 (40): 540 of 742 answered, 539 right.
    assert "on 742 validation slices, the 540 answered at or above it were 99.8 % right" in s
    assert "99.9 %" not in s
    # Without curves in the card: the bar's origin and its aim, said to be an aim.
    plain = result_status(refer_rule(THRESHOLDS, CAL), probs("meningioma", 0.93)).sentence
    assert one_sentence(plain) and len(plain.split()) <= 32, plain
    assert "validation split (571 images) aiming at 99.9 % right" in plain and "not recorded" in plain
    # The accepted sentence makes no claim of its own either.
    accepted = result_status(measured, probs("glioma", 0.995)).sentence
    assert "accepted answers were" not in accepted and "99.8 % right" in accepted


def test_a_referred_answer_is_a_leaning_not_a_verdict():
    assert leaning("glioma", 0.64) == "model leans Glioma, 64.0 %"


def test_no_tumour_has_the_stricter_rule_and_says_why():
    rule = refer_rule(THRESHOLDS, CAL)
    assert rule.strict_notumor
    status = result_status(rule, probs("notumor", 0.995))  # above the tumour bar, below the no-tumour bar
    assert status.kind == "refer" and one_sentence(status.sentence), status.sentence
    assert "99.96 %" in status.sentence and "stricter" in status.sentence
    s = status.detail
    assert "99.96 %" in s and "stricter" in s and "missing a tumour is the costly error" in s
    assert "no validation tumour was answered \"no tumour\" without referral" in s
    # The same confidence on a tumour class is accepted, with the rule said plainly.
    accepted = result_status(rule, probs("glioma", 0.995))
    assert accepted.kind == "accept" and "99.0 %" in accepted.sentence and "validation" in accepted.sentence


def test_cards_without_a_fitted_threshold_say_the_fallback_is_not_validated():
    rule = refer_rule(dict.fromkeys(THRESHOLDS, 0.0), {})
    assert not rule.fitted and rule.threshold("glioma") == 0.90
    status = result_status(rule, probs("glioma", 0.8))
    assert "never validated" in status.sentence and "90.0 %" in status.sentence
    assert "not validated" in status.detail and "a radiologist should read this slice" in status.detail
    # A card with one symmetric threshold makes no claim about the no-tumour rule.
    old = refer_rule(dict.fromkeys(THRESHOLDS, 0.99), {"refer_threshold": 0.99, "refer_target_accuracy": 0.999})
    assert not old.per_class and "no validation tumour" not in result_status(old, probs("notumor", 0.9)).detail


def test_out_of_distribution_leads_whatever_the_confidence():
    rule = refer_rule(THRESHOLDS, CAL)
    status = result_status(rule, probs("glioma", 0.9999), out_of_distribution=True, ood_reason="the image is in colour")
    assert status.kind == "ood" and status.headline == "Not like a brain MRI slice"
    assert "the image is in colour" in status.sentence and "not meaningful" in status.sentence


def test_percentages_never_round_a_miss_up_to_the_bar_or_to_100():
    assert pct(0.99996) != "100.0 %" and pct(0.99996).startswith("99.99")
    assert pct_pair(0.99951, 0.99954) == ("99.951 %", "99.954 %")
    assert pct_pair(0.93, 0.99) == ("93.0 %", "99.0 %")


def test_gradcam_caveat_says_what_the_map_is_not_and_quotes_the_card():
    text = gradcam_caveat("meningioma", {"deletion": {"n": 100, "share_gradcam_lower": 0.79}})
    assert "not an outline of a lesion" in text and "orbits" in text and "frontal lobe" in text
    assert "79 %" in text and "100 test images" in text and "Evaluation page" in text
    assert "no faithfulness figures" in gradcam_caveat("glioma", {})
    once = gradcam_caveat(None, {})  # said once per page, for every map on it
    assert "evidence for the class shown" in once and "not an outline of a lesion" in once


def test_study_models():
    assert is_study_model("seed", 0.99) and is_study_model("compact_cnn", 0.68)
    assert not is_study_model("compact_cnn_x2", 0.997) and not is_study_model("compact_cnn", None)
    assert "not a medical device" in INTENDED_USE and "not for diagnosis" in INTENDED_USE


def test_case_book_identifies_cases_by_content_and_keeps_the_latest():
    book = CaseBook(max_cases=2)
    a = book.add("a.png", b"image a")
    assert book.add("renamed.png", b"image a") is a and len(book) == 1  # the same bytes are the same case
    book.add("b.png", b"image b")
    book.add("c.png", b"image c")
    assert [c.name for c in book.cases()] == ["b.png", "c.png"] and a.digest not in book  # oldest dropped
    assert [c.number for c in book.cases()] == [2, 3]
    assert a.digest == content_hash(b"image a") and len(a.ref) == 12


def test_widget_keys_carry_content_and_model():
    label = model_label("default", "20261127-54c873ac", tta=True)
    key = widget_key("cam_class", content_hash(b"x"), label)
    assert content_hash(b"x") in key and "default 20261127-54c873ac +TTA" in key
    assert key != widget_key("cam_class", content_hash(b"x"), model_label("default", "20261127-54c873ac"))


def test_plural_counts_with_thousands_separators():
    assert plural(1, "image") == "1 image"
    assert plural(2, "image") == "2 images"
    assert plural(1025, "slice") == "1,025 slices"
    assert plural(0, "case") == "0 cases"
    assert plural(3, "analysis", "analyses") == "3 analyses"


def test_summary_row_is_in_words_and_leads_with_the_flag_for_an_ood_slice():
    rule = refer_rule(THRESHOLDS, CAL, 0.9)
    row = summary_row("ab12", "a.png", rule, probs("meningioma", 0.995), "meningioma")
    assert row == {"Case": "ab12", "File": "a.png", "Answer": "Meningioma", "Status": "Not referred",
                   "Confidence": "99.5 %", "Glioma": "0.2 %", "Meningioma": "99.5 %", "No tumour": "0.2 %",
                   "Pituitary": "0.2 %"}
    low = summary_row("cd34", "b.png", rule, probs("glioma", 0.6), "glioma")
    # Issue #27: a referred row leads with the status; its class is only the model's leaning.
    assert low["Status"] == "Refer to a radiologist" and low["Answer"] == "Refer (model leans Glioma, 60.0 %)"
    odd = summary_row("ef56", "c.png", rule, probs("glioma", 0.995), "glioma", out_of_distribution=True)
    assert odd["Status"] == "Not like a brain MRI slice" and odd["Answer"] == "not assessed"
    # Issue #27: a flagged slice's probabilities are not meaningful, so the table shows none.
    assert odd["Confidence"] == "—" and all(odd[c] == "—" for c in ("Glioma", "Meningioma", "No tumour", "Pituitary"))


def test_batch_row_has_four_columns_the_answer_with_its_status_and_the_probabilities_in_one_cell():
    """Issue #27: the batch table's nine columns scrolled sideways on an 800 px window, hiding classes."""
    rule = refer_rule(THRESHOLDS, CAL, 0.9)
    nb = "\u00a0"
    row = batch_row("ab12", "a.png", rule, probs("meningioma", 0.995), "meningioma")
    assert row == {"Case": "ab12", "File": "a.png", "Answer": "Meningioma, 99.5 % · Not referred",
                   "Probabilities": f"Meningioma{nb}99.5{nb}% · Glioma{nb}0.2{nb}% · No{nb}tumour{nb}0.2{nb}% · "
                                    f"Pituitary{nb}0.2{nb}%"}
    low = batch_row("cd34", "", rule, probs("glioma", 0.6), "glioma")
    assert list(low) == ["Case", "Answer", "Probabilities"]  # no file column when names are hidden
    assert low["Answer"] == "Refer (model leans Glioma, 60.0 %)" and low["Probabilities"].startswith("Glioma")
    odd = batch_row("ef56", "", rule, probs("glioma", 0.995), "glioma", out_of_distribution=True)
    assert odd["Answer"] == "Not like a brain MRI slice: not assessed" and odd["Probabilities"] == "—"
    assert "Glioma" not in str(odd)  # no class beside the flag: a cut cell would show only that


def test_probability_lines_rank_the_classes_in_words():
    lines = probability_lines({"glioma": 0.2, "meningioma": 0.7, "notumor": 0.04, "pituitary": 0.06})
    assert lines == [(0.7, "Meningioma: **70.0 %**"), (0.2, "Glioma: **20.0 %**"), (0.06, "Pituitary: **6.0 %**"),
                     (0.04, "No tumour: **4.0 %**")]


def test_an_output_that_is_not_a_number_reads_as_a_dash_on_an_empty_bar():
    """A broken model's NaN reached st.progress, which raised on every rerun of that session's Predict page."""
    nan = float("nan")
    lines = probability_lines({"glioma": nan, "meningioma": 0.7, "notumor": nan, "pituitary": 0.3})
    assert [bar for bar, _ in lines] == [0.7, 0.3, 0.0, 0.0]
    assert lines[2][1] == "Glioma: **—**" and lines[0][1].startswith("Meningioma")


def test_a_confidence_at_the_refer_bar_is_answered_and_one_step_below_it_is_referred():
    """ReferRule refers below the bar: a confidence equal to a class's bar is answered, the next float below it is
    referred, and a bar of 1.0 (a cut that passed at saturation) answers a confidence of exactly 1.0."""
    import math

    rule = refer_rule(THRESHOLDS, CAL)
    for cls in ("meningioma", "notumor"):  # the symmetric bar and the stricter "no tumour" one
        bar = THRESHOLDS[cls]
        assert not rule.referred(probs(cls, bar))
        assert rule.referred(probs(cls, math.nextafter(bar, 0)))
    certain = refer_rule(dict.fromkeys(THRESHOLDS, 1.0), CAL)
    assert not certain.referred(probs("glioma", 1.0))
    assert certain.referred(probs("glioma", math.nextafter(1.0, 0)))
