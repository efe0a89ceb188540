"""The refer rule's operating point: per-source risk–coverage curves fitted on validation, thresholds for any
target with every source reaching it, the server's target, and how pages and cards show it."""

from __future__ import annotations

import json

import numpy as np
import pytest

from brainclf import CLASS_NAMES
from brainclf.evaluation import risk_coverage_by_source
from brainclf.model import validate_card
from brainclf.model.card_schema import CardSchemaError
from brainclf.presentation import operating_summary, refer_rule
from brainclf.scoring import (
    choose_refer_threshold,
    choose_refer_thresholds,
    curve_at,
    fit_calibration,
    fit_curves,
    risk_coverage,
    threshold_for,
    thresholds_for_target,
)
from brainclf.scoring.operating_point import REFER_ALL


def probs_for(y: np.ndarray, skill: float, seed: int) -> np.ndarray:
    """Softmax outputs whose argmax is right with probability ~`skill`, confident when right more often."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 1, (len(y), len(CLASS_NAMES)))
    right = rng.random(len(y)) < skill
    logits[np.arange(len(y)), np.where(right, y, (y + 1) % len(CLASS_NAMES))] += rng.uniform(1, 5, len(y))
    e = np.exp(logits - logits.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def lowest_passing_confidence(y: np.ndarray, p: np.ndarray, target: float) -> float:
    """Brute force: the lowest confidence t of the images at which those with confidence >= t are at least
    `target` right; REFER_ALL where no t is."""
    conf, right = p.max(1), p.argmax(1) == y
    passing = [t for t in np.unique(conf) if right[conf >= t].mean() >= target]
    return float(min(passing)) if passing else REFER_ALL


@pytest.mark.parametrize("target", [0.999, 0.98, 0.9, 0.6, "overall"])
def test_threshold_from_the_stored_curve_is_the_one_fitted_on_the_images(target):
    y = np.random.default_rng(1).integers(0, 4, 500)
    p = probs_for(y, 0.85, seed=2)
    # 30 images of one confidence, right first and then wrong: a cut answers all of them or none.
    top = np.argsort(-p.max(1))[5]
    p[:30], y[:20], y[20:30] = p[top], p[top].argmax(), (p[top].argmax() + 1) % len(CLASS_NAMES)
    if target == "overall":  # reached exactly, by answering everything: "at least the target" includes it
        target = float((p.argmax(1) == y).mean())
    expected = lowest_passing_confidence(y, p, target)
    assert threshold_for(risk_coverage(y, p), target) == expected
    assert choose_refer_threshold(y, p, target) == expected


def test_every_source_reaches_the_target_on_its_own_validation_part():
    """A small, poor source hides behind a large, good one when pooled: its own curve must set the bar."""
    rng = np.random.default_rng(0)
    y_big, y_small = rng.integers(0, 4, 800), rng.integers(0, 3, 150)
    p = np.r_[probs_for(y_big, 0.98, 3), probs_for(y_small, 0.65, 4)]
    y, sources = np.r_[y_big, y_small], ["kaggle"] * 800 + ["other"] * 150
    block = fit_curves(y, p, sources)
    table = thresholds_for_target(block, 0.95)
    pooled = choose_refer_threshold(y, p, 0.95)
    assert table["glioma"] > pooled  # the pooled bar would not do for the small source
    for source, curve in block["curves"].items():
        at = curve_at(curve, table["glioma"])
        assert at["answered"] == 0 or at["accuracy"] >= 0.95, source
    small = curve_at(block["curves"]["other"], pooled)
    assert small["accuracy"] < 0.95  # …as the pooled bar shows


def test_no_tumour_needs_more_than_the_most_confident_missed_tumour():
    y = np.array([0, 1, 2, 2, 3])
    p = np.array([[.1, .1, .7, .1], [.05, .9, .03, .02], [0, 0, .99, .01], [0, .01, .97, .02], [0, 0, .05, .95]])
    block = fit_curves(y, p, ["a"] * 5)
    table = thresholds_for_target(block, 0.5)
    assert table["notumor"] > 0.7 and np.float32(table["notumor"]) > np.float32(0.7)
    assert table["notumor"] == choose_refer_thresholds(y, p, 0.5)["notumor"]


def test_calibration_with_sources_keeps_curves_and_the_schema_checks_them():
    rng = np.random.default_rng(5)
    y = rng.integers(0, 4, 300)
    raw = probs_for(y, 0.8, 6)
    cal = fit_calibration({"": (y, raw), "_tta": (y, raw)}, "validation split (300 images)", 0.98,
                          sources=["brain-tumor-mri"] * 200 + ["external-radiopaedia"] * 100)
    assert set(cal["operating"]["curves"]) == {"brain-tumor-mri", "external-radiopaedia"}
    assert cal["refer_thresholds"] == thresholds_for_target(cal["operating"], 0.98)
    checked = validate_card(_card(cal))
    assert checked["calibration"]["operating"]["curves"]["external-radiopaedia"]["n"] == 100
    broken = json.loads(json.dumps(cal))
    broken["operating"]["curves"]["brain-tumor-mri"]["correct"][0] = 99  # more right than answered
    with pytest.raises(CardSchemaError, match="more slices right than answered"):
        validate_card(_card(broken))


def _card(calibration: dict) -> dict:
    from brainclf.model import read_card

    return {**read_card(_card.model).to_dict(), "calibration": calibration}


@pytest.fixture(autouse=True)
def _smoke_card(smoke_model):
    _card.model = smoke_model


def test_the_server_target_changes_the_rule_and_its_wording(smoke_predictor):
    p = smoke_predictor
    assert p.card.calibration.get("operating"), "new trainings store the curves"
    loose, strict = p.with_refer_target(0.8), p.with_refer_target(0.9999)
    assert loose.refer_target == 0.8 and strict.refer_target_accuracy == 0.9999
    assert loose.refer_thresholds["glioma"] <= strict.refer_thresholds["glioma"]
    assert p.with_refer_target(None) is p
    with pytest.raises(ValueError, match="accepted accuracy"):
        p.with_refer_target(0.5)
    line = operating_summary(p.card.calibration, p.tta, strict.refer_thresholds, 0.9999)
    assert "99.99 % right on every source" in line and "Validation answered:" in line
    rule = refer_rule(strict.refer_thresholds, p.card.calibration, tta=p.tta, target=0.9999)
    assert rule.target_accuracy == 0.9999


def test_cards_without_curves_keep_their_thresholds(smoke_predictor):
    p = smoke_predictor
    old = type(p.card)(**{**p.card.__dict__, "calibration": {
        k: v for k, v in p.card.calibration.items() if not k.startswith("operating")}})
    legacy = object.__new__(type(p))
    legacy.__dict__.update({**p.__dict__, "card": old})  # a copy: the session's predictor stays as it is
    assert legacy.with_refer_target(0.8) is legacy  # nothing to read a new bar off: unchanged
    assert operating_summary(old.calibration, p.tta, legacy.refer_thresholds, 0.98) is None


def test_an_uploaded_card_without_a_target_or_with_an_empty_cut_still_reads_its_bar(smoke_predictor):
    p = smoke_predictor
    cal = {k: v for k, v in json.loads(json.dumps(p.card.calibration)).items() if k != "refer_target_accuracy"}
    curve = next(iter(cal["operating"]["curves"].values()))
    curve["answered"][0], curve["correct"][0] = 0, 0  # a cut that answered nothing: the schema allows it
    odd = object.__new__(type(p))
    odd.__dict__.update({**p.__dict__, "card": type(p.card)(**{**p.card.__dict__, "calibration": cal})})
    assert odd.with_refer_target(None, 0.95).refer_target == 0.999  # the schema's default target
    assert 0 < odd.with_refer_target(0.98).refer_thresholds["glioma"] <= 1
    assert threshold_for(curve, 0.98) <= 1.0


def test_risk_coverage_view_has_validation_and_held_out_curves_per_source(smoke_predictor):
    p = smoke_predictor
    views = risk_coverage_by_source(p.card, p.tta, p.refer_thresholds)
    validation = [v for v in views if not v["held_out"]]
    held = [v for v in views if v["held_out"]]
    assert validation and held and held[0]["label"] == "Kaggle test split"
    assert held[0]["n"] == len(p.card.stored_test_predictions(p.tta)[0])
    assert all(0 <= c <= 1 for v in views for c in v["coverage"]) and held[0]["point"]["coverage"] <= 1


def test_the_symmetric_threshold_follows_the_server_target(smoke_predictor):
    strict = smoke_predictor.with_refer_target(0.9999)
    assert strict.refer_threshold == strict.refer_thresholds["glioma"]


def test_an_older_card_gets_its_curves_without_a_threshold_changing(smoke_predictor, synthetic_dataset):
    from brainclf.evaluation import PRIMARY, operating_curves, validation_samples

    samples = validation_samples(smoke_predictor.card, {PRIMARY: synthetic_dataset})
    block = operating_curves(smoke_predictor, samples)
    assert block["curves"][PRIMARY]["n"] == len(samples[PRIMARY])
    stored = smoke_predictor.card.calibration["operating_tta" if smoke_predictor.tta else "operating"]
    (trained,) = stored["curves"].values()  # training names the source by its folder: one source here
    assert block["curves"][PRIMARY]["answered"] == trained["answered"]  # what training stored


def test_the_operating_line_says_when_thresholds_were_fitted_on_the_pooled_set():
    # Made up rather than the smoke model's curve: whether its lowest cut falls below the target depends on how that
    # tiny model trained (its wrong "no tumour" answers are referred at every bar).
    block = {"curves": {"s": risk_coverage(np.array([0, 0, 1]), np.array([[.9, .1, 0, 0], [.7, .3, 0, 0],
                                                                           [.6, .4, 0, 0]]))},
             "worst_notumor_miss": 0.0}
    own = thresholds_for_target(block, 0.98)
    # A bar a source falls below the target at (the lowest cut answers every slice, the wrong one too): a rule
    # fitted on the pooled set, not on every source.
    (curve,) = block["curves"].values()
    assert curve["correct"][-1] < 0.98 * curve["answered"][-1]
    pooled = dict.fromkeys(own, float(curve["threshold"][-1]))
    assert "on every source" in operating_summary({"operating": block}, False, own, 0.98)
    assert "on the pooled validation set" in operating_summary({"operating": block}, False, pooled, 0.98)


def test_every_source_reaches_the_target_at_the_joint_threshold_even_where_accuracy_is_not_monotone():
    """Source A passes 98 % from 0.62 but dips below it at 0.86 (2 of 3 right); source B first passes at 0.86. The
    highest own bar (0.86) leaves A below the target there: the joint threshold walks up to where both pass."""
    from brainclf.scoring.operating_point import curve_at, joint_threshold, risk_coverage

    def source(rows):
        conf, right = zip(*rows)
        y = np.zeros(len(rows), int)
        probs = np.array([[c, (1 - c) / 3, (1 - c) / 3, (1 - c) / 3] if r else [(1 - c) / 3, c, (1 - c) / 3,
                                                                                    (1 - c) / 3]
                          for c, r in rows])
        return risk_coverage(y, probs)

    a = source([(0.95, True), (0.88, True), (0.86, False), (0.70, True)] + [(0.62, True)] * 60)
    b = source([(0.97, True), (0.93, True), (0.86, True), (0.80, False), (0.55, False)])
    t = joint_threshold([a, b], 0.98)
    for curve in (a, b):
        at = curve_at(curve, t)
        assert not at["answered"] or at["accuracy"] >= 0.98
    assert t > 0.86  # above A's miss
    assert curve_at(a, 0.86)["accuracy"] < 0.98 <= curve_at(a, 0.60)["accuracy"]  # the dip the old rule missed
    # A card fitted with the old per-source rule (the highest own bar) still reads as fitted on every source.
    from brainclf.scoring.operating_point import thresholds_for_target

    block = {"curves": {"a": a, "b": b}, "worst_notumor_miss": 0.0}
    old = thresholds_for_target(block, 0.98, joint=False)
    assert old["glioma"] == 0.86 and thresholds_for_target(block, 0.98)["glioma"] == t
    assert "right on every source" in operating_summary({"operating": block}, False, old, 0.98)


def test_the_joint_threshold_is_the_lowest_cut_at_which_every_source_passes():
    """A (0.9, 0.6, both right) passes from 0.6; B (0.95, 0.8 right, 0.5 wrong) from 0.8. At 0.6 A answers both
    and B the same two as at 0.8: both pass, so 0.6, not the highest own bar 0.8."""
    from brainclf.scoring.operating_point import joint_threshold

    def source(conf, right):
        y = np.array([0 if r else 1 for r in right])
        probs = np.array([[c, 1 - c, 0, 0] for c in conf])
        return risk_coverage(y, probs)

    a, b = source([0.9, 0.6], [True, True]), source([0.95, 0.8, 0.5], [True, True, False])
    assert joint_threshold([a, b], 0.9) == 0.6
    # A card whose bar was searched another way (0.7: neither this rule's nor the highest own bar) but which every
    # source passes still reads as fitted on every source; one that a source fails there does not.
    block = {"curves": {"a": a, "b": b}, "worst_notumor_miss": 0.0}
    assert "on every source" in operating_summary({"operating": block}, False, dict.fromkeys(CLASS_NAMES, 0.7), 0.9)
    assert "pooled" in operating_summary({"operating": block}, False, dict.fromkeys(CLASS_NAMES, 0.5), 0.9)
    assert joint_threshold([a, source([0.7, 0.6], [False, False])], 0.9) == REFER_ALL  # a source never passes
    rng = np.random.default_rng(0)
    for _ in range(200):  # against brute force over every cut
        curves = [source(rng.uniform(0.5, 1, n), rng.random(n) < 0.9) for n in rng.integers(1, 25, 2)]
        cuts = sorted({t for c in curves for t in c["threshold"]})
        passing = [t for t in cuts if all(not (at := curve_at(c, t))["answered"] or at["accuracy"] >= 0.9
                                          for c in curves)]
        never = any(threshold_for(c, 0.9) == REFER_ALL for c in curves)
        assert joint_threshold(curves, 0.9) == (REFER_ALL if never or not passing else passing[0])


def test_the_applied_rule_reaches_its_target_on_the_data_it_was_fitted_on():
    """The base bar was searched counting right "no tumour" answers that the "no tumour" bar then refers: 4
    answered at 75 % against a target of 80 %. The curves now leave those answers out: no bar reaches 80 % with the
    answers left, so everything is referred."""
    from brainclf.scoring import coverage_accuracy

    def row(c, k):
        p = np.full(4, (1 - c) / 3)
        p[k] = c
        return p

    probs = np.array([row(.99, 0)] * 4 + [row(.8, 2)] + [row(.7, 2)] * 6)
    y = np.array([0, 0, 0, 1, 0, 2, 2, 2, 2, 2, 2])
    at = coverage_accuracy(y, probs, thresholds_for_target(fit_curves(y, probs, ["s"] * 11), 0.8))
    assert at["accepted"] == 0
    rng = np.random.default_rng(3)
    for _ in range(200):  # two sources, random skills: each reaches the target wherever the rule answers
        y = rng.integers(0, 4, 60)
        probs, sources = probs_for(y, rng.uniform(0.6, 0.95), int(rng.integers(1 << 30))), np.repeat(["a", "b"], 30)
        thresholds = thresholds_for_target(fit_curves(y, probs, sources), 0.9)
        for s in ("a", "b"):
            at = coverage_accuracy(y[sources == s], probs[sources == s], thresholds)
            assert not at["accepted"] or at["accepted_accuracy"] >= 0.9


def test_a_source_that_passes_only_at_certainty_still_joins_the_joint_bar():
    from brainclf.scoring.operating_point import joint_threshold

    a = risk_coverage([0, 0], np.array([[1.0, 0, 0, 0], [0, .9, .1, 0]]))  # right only at 1.0
    b = risk_coverage([1], np.array([[.05, .95, 0, 0]]))
    assert joint_threshold([a, b], 0.98) == 0.95
