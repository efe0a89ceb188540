"""The refer rule's promise with its uncertainty: the lower bound of a validation accuracy (Clopper–Pearson), shown
beside every source's figure, and the admin setting that asks the bound, not the share seen, to reach the target."""

from __future__ import annotations

import numpy as np
import pytest

from brainclf.presentation import operating_summary
from brainclf.scoring import (
    fit_calibration,
    lower_bound,
    risk_coverage,
    slices_needed,
    threshold_for,
    thresholds_for_target,
)
from brainclf.scoring.operating_point import REFER_ALL
from brainclf.serving.settings import load_settings


def curve_of(outcomes: list[bool]) -> dict:
    """A one-source curve whose answers, most confident first, are right or wrong as `outcomes` say."""
    n = len(outcomes)
    y = np.zeros(n, int)
    probs = np.full((n, 4), 0.0)
    conf = np.linspace(0.99, 0.5, n)
    for i, right in enumerate(outcomes):
        probs[i, 0 if right else 1] = conf[i]
        probs[i, 2] = 1 - conf[i]
    return risk_coverage(y, probs)


@pytest.mark.parametrize("n,confidence", [(1, 0.95), (24, 0.95), (59, 0.8), (300, 0.99)])
def test_all_right_bound_is_the_closed_form(n, confidence):
    # With no error the Clopper–Pearson bound solves p^n = 1 - confidence.
    assert lower_bound(n, n, confidence) == pytest.approx((1 - confidence) ** (1 / n), rel=1e-9)


@pytest.mark.parametrize("target,confidence,needed", [(0.98, 0.95, 149), (0.9, 0.8, 16), (0.95, 0.95, 59)])
def test_slices_needed_is_the_fewest_all_right_answers_whose_bound_reaches_the_target(target, confidence, needed):
    assert slices_needed(target, confidence) == needed
    assert lower_bound(needed, needed, confidence) >= target > lower_bound(needed - 1, needed - 1, confidence)


def test_calibration_fitted_with_a_confidence_records_it_and_refers_more():
    rng = np.random.default_rng(4)
    y = rng.integers(0, 4, 300)
    raw = np.full((300, 4), 0.1)
    right = rng.random(300) < 0.9
    raw[np.arange(300), np.where(right, y, (y + 1) % 4)] = rng.uniform(0.4, 0.97, 300)
    raw /= raw.sum(1, keepdims=True)
    sources = ["a"] * 300
    plain = fit_calibration({"": (y, raw)}, "test", 0.95, sources)
    bounded = fit_calibration({"": (y, raw)}, "test", 0.95, sources, confidence=0.9)
    assert plain["refer_confidence"] is None and bounded["refer_confidence"] == 0.9
    assert bounded["refer_thresholds"]["glioma"] > plain["refer_thresholds"]["glioma"]


def test_bound_is_below_the_share_seen_and_tightens_with_more_slices():
    assert lower_bound(0, 10, 0.95) == 0.0
    assert lower_bound(58, 59, 0.95) < 58 / 59
    assert lower_bound(58, 59, 0.95) < lower_bound(580, 590, 0.95) < 58 / 59
    assert lower_bound(58, 59, 0.8) > lower_bound(58, 59, 0.95)


def test_a_98_percent_promise_at_95_percent_confidence_needs_149_right_in_a_row():
    short, enough = curve_of([True] * 148 + [False] * 20), curve_of([True] * 149 + [False] * 20)
    assert threshold_for(short, 0.98, 0.95) == REFER_ALL  # nothing answered: the promise cannot be made
    assert threshold_for(short, 0.98) < 1.0  # the share seen alone answers 148 slices
    answered = enough["answered"][enough["threshold"].index(threshold_for(enough, 0.98, 0.95))]
    assert answered == 149


def test_the_bound_rule_is_never_looser_than_the_share_seen():
    rng = np.random.default_rng(5)
    for seed in range(20):
        outcomes = list(rng.random(200) < rng.uniform(0.85, 1.0))
        outcomes.sort(key=lambda right: rng.random() + (0.3 if right else 0))  # the confident ones mostly right
        curve = curve_of(outcomes)
        for target in (0.9, 0.95):
            assert threshold_for(curve, target, 0.9) >= threshold_for(curve, target), seed


def test_every_source_bound_sets_the_bar():
    good, small = curve_of([True] * 400), curve_of([True] * 30 + [False] * 5)
    block = {"curves": {"big": good, "small": small}, "worst_notumor_miss": 0.0}
    assert thresholds_for_target(block, 0.95, 0.95)["glioma"] == REFER_ALL  # 30 of 30 promises only 90.5 %
    assert thresholds_for_target(block, 0.90, 0.95)["glioma"] < 1.0


def test_the_operating_line_shows_each_source_bound_and_the_rule():
    block = {"curves": {"kaggle": curve_of([True] * 400), "other": curve_of([True] * 59 + [False] * 30)},
             "worst_notumor_miss": 0.0}
    plain = thresholds_for_target(block, 0.98)
    line = operating_summary({"operating": block}, False, plain, 0.98)
    assert "other 60 of 89, 98.3 % right (at least 92.3 % with 95 % confidence)" in line, line
    assert "lower bound)" not in line  # the share seen set the bar, and the line says so
    bounded = thresholds_for_target(block, 0.90, 0.8)
    line = operating_summary({"operating": block}, False, bounded, 0.90, 0.8)
    assert "aiming at 90.0 % right (its 80 %-confidence lower bound) on every source" in line, line
    assert "with 80 % confidence" in line


def test_the_server_confidence_makes_the_rule_stricter(smoke_predictor):
    p = smoke_predictor
    plain, bounded = p.with_refer_target(0.9), p.with_refer_target(0.9, 0.95)
    assert bounded.refer_confidence == 0.95 and plain.refer_confidence is None
    assert all(bounded.refer_thresholds[c] >= plain.refer_thresholds[c] for c in plain.refer_thresholds)
    card_target = p.with_refer_target(None, 0.95)  # the card's own target, asked of the bound
    assert card_target.refer_target == p.card.calibration["refer_target_accuracy"]
    block = p.card.calibration["operating_tta" if p.tta else "operating"]
    assert card_target.refer_thresholds == thresholds_for_target(block, card_target.refer_target, 0.95)
    with pytest.raises(ValueError, match="refer confidence"):
        p.with_refer_target(0.9, 0.3)


@pytest.mark.parametrize("body,expected", [
    ("[refer]\ntarget_accuracy = 0.95\nconfidence = 0.9", (0.95, 0.9)),
    ("[refer]\nconfidence = 0.95", (None, 0.95)),
    ("[refer]\ntarget_accuracy = 0.97", (0.97, None)),
])
def test_settings_read_the_refer_target_and_confidence(tmp_path, monkeypatch, body, expected):
    toml = tmp_path / "brainclf.toml"
    toml.write_text(body)
    monkeypatch.setenv("BRAINCLF_SETTINGS", str(toml))
    s = load_settings()
    assert (s.refer_target, s.refer_confidence) == expected
