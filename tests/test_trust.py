"""brainclf.scoring.trust: temperature scaling, the refer rule, coverage and bootstrap intervals."""

from __future__ import annotations

import numpy as np
import pytest

from brainclf.scoring import (
    apply_temperature,
    bootstrap_ci,
    choose_refer_threshold,
    choose_refer_thresholds,
    coverage_accuracy,
    coverage_curve,
    fit_calibration,
    fit_temperature,
    nll,
)


def softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(1, keepdims=True)


def random_probs(n: int = 200, seed: int = 0, scale: float = 2.0) -> np.ndarray:
    return softmax(np.random.default_rng(seed).normal(0, scale, (n, 4)))


def calibrated_set(n: int, seed: int = 0, sharpen: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Labels drawn from softmax(logits); the returned probabilities are softmax(sharpen * logits), so the
    temperature that undoes the sharpening is `sharpen`."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 2.0, (n, 4))
    true_p = softmax(logits)
    y = np.array([rng.choice(4, p=p) for p in true_p])
    return y, softmax(sharpen * logits)


# --- apply_temperature ---------------------------------------------------------------------------------

def test_temperature_one_is_identity():
    p = random_probs()
    np.testing.assert_array_equal(apply_temperature(p, 1.0), p)


@pytest.mark.parametrize("t", [0.5, 1.5, 3.0, 10.0])
def test_temperature_keeps_rows_normalised_and_argmax(t):
    p = random_probs()
    q = apply_temperature(p, t)
    assert q.shape == p.shape
    np.testing.assert_allclose(q.sum(1), 1.0, atol=1e-9)
    np.testing.assert_array_equal(q.argmax(1), p.argmax(1))
    assert np.all(q >= 0) and np.all(q <= 1)


def test_temperature_above_one_flattens_below_one_sharpens():
    p = random_probs()
    flat, sharp = apply_temperature(p, 3.0), apply_temperature(p, 0.5)
    assert np.all(flat.max(1) <= p.max(1) + 1e-12)
    assert np.all(sharp.max(1) >= p.max(1) - 1e-12)

    def entropy(q):
        return -(q * np.log(np.clip(q, 1e-12, 1))).sum(1)

    assert entropy(flat).mean() > entropy(p).mean() > entropy(sharp).mean()
    # A very high temperature approaches the uniform distribution.
    np.testing.assert_allclose(apply_temperature(p, 1e6), 0.25, atol=1e-4)


def test_temperature_equals_scaling_the_logits():
    logits = np.random.default_rng(1).normal(0, 3, (50, 4))
    np.testing.assert_allclose(apply_temperature(softmax(logits), 2.5), softmax(logits / 2.5), atol=1e-9)


def test_temperature_handles_exact_zeros_and_ones():
    p = np.array([[1.0, 0.0, 0.0, 0.0], [0.0, 0.5, 0.5, 0.0]])
    q = apply_temperature(p, 2.0)
    assert np.all(np.isfinite(q))
    np.testing.assert_allclose(q.sum(1), 1.0)
    assert q[0].argmax() == 0


# --- fit_temperature -----------------------------------------------------------------------------------

def test_fit_temperature_recovers_known_temperature():
    y, overconfident = calibrated_set(6000, seed=0, sharpen=3.0)
    t = fit_temperature(y, overconfident)
    assert 2.5 < t < 3.6
    assert nll(y, apply_temperature(overconfident, t)) < nll(y, overconfident)


def test_fit_temperature_near_one_for_calibrated_and_below_one_for_underconfident():
    y, calibrated = calibrated_set(6000, seed=1, sharpen=1.0)
    assert 0.85 < fit_temperature(y, calibrated) < 1.15
    y, underconfident = calibrated_set(6000, seed=2, sharpen=0.5)
    t = fit_temperature(y, underconfident)
    assert 0.4 < t < 0.6
    assert nll(y, apply_temperature(underconfident, t)) < nll(y, underconfident)


def test_fit_temperature_stays_in_search_range():
    # Every prediction confidently wrong: the best temperature is as flat as allowed.
    p = np.tile([[0.97, 0.01, 0.01, 0.01]], (40, 1))
    y = np.full(40, 1)
    t = fit_temperature(y, p)
    assert 0.05 <= t <= 20.0
    assert t > 10


# --- choose_refer_threshold / coverage_accuracy --------------------------------------------------------

@pytest.mark.parametrize("target", [0.8, 0.9, 0.95, 0.99])
def test_refer_threshold_meets_target_on_same_set(target):
    y, p = calibrated_set(3000, seed=3, sharpen=1.0)
    t = choose_refer_threshold(y, p, target)
    cov = coverage_accuracy(y, p, t)
    assert cov["accepted"] > 0
    assert cov["accepted_accuracy"] >= target
    # It is the lowest such threshold among the observed confidences: one step lower breaks the target.
    conf = np.sort(np.unique(p.max(1)))
    lower = conf[conf < t]
    if len(lower):
        assert coverage_accuracy(y, p, lower[-1])["accepted_accuracy"] < target


def test_an_unreachable_target_refers_everything_saturated_answers_too():
    from brainclf.scoring.operating_point import REFER_ALL

    p = random_probs(100, seed=4)
    y = (p.argmax(1) + 1) % 4  # every prediction wrong
    assert choose_refer_threshold(y, p, 0.999) == REFER_ALL > 1.0
    # 50 saturated answers (confidence exactly 1.0 in float32, 45 right) and 10 at 0.99, all right: no cut reaches
    # 98 %, so nothing may be answered; a bar of 1.0 would answer the 50 at 90 %.
    sure = np.zeros((60, 4), np.float32)
    sure[:50, 0] = 1.0
    sure[50:, 1], sure[50:, 0] = 0.99, 0.01
    truth = np.r_[np.zeros(45, int), np.ones(5, int), np.ones(10, int)]
    bars = choose_refer_thresholds(truth, sure, 0.98)
    assert coverage_accuracy(truth, sure, bars)["accepted"] == 0
    # A cut at 1.0 that does pass keeps its saturated answers.
    assert choose_refer_threshold(np.zeros(50, int), sure[:50], 0.98) == 1.0


def test_refer_threshold_all_correct_accepts_everything():
    p = random_probs(100, seed=5)
    y = p.argmax(1)
    t = choose_refer_threshold(y, p, 0.999)
    assert t == pytest.approx(p.max(1).min())
    assert coverage_accuracy(y, p, t)["coverage"] == 1.0


def test_refer_threshold_with_tied_confidences_meets_target():
    y = np.array([0, 0, 1])
    p = np.array([[0.9, 0.1, 0, 0], [0.8, 0.2, 0, 0], [0.8, 0.2, 0, 0]])  # last one tied and wrong
    t = choose_refer_threshold(y, p, 0.999)
    assert coverage_accuracy(y, p, t)["accepted_accuracy"] >= 0.999


def test_coverage_accuracy_hand_made():
    y = np.array([0, 1, 2, 3, 0])
    p = np.array([
        [0.9, 0.05, 0.03, 0.02],  # conf 0.9, correct
        [0.1, 0.6, 0.2, 0.1],     # conf 0.6, correct
        [0.5, 0.1, 0.3, 0.1],     # conf 0.5, wrong (predicts 0)
        [0.1, 0.1, 0.1, 0.7],     # conf 0.7, correct
        [0.2, 0.4, 0.3, 0.1],     # conf 0.4, wrong (predicts 1)
    ])
    c = coverage_accuracy(y, p, 0.55)
    assert c == {"threshold": 0.55, "coverage": 0.6, "accepted": 3, "referred": 2, "accepted_accuracy": 1.0}
    c = coverage_accuracy(y, p, 0.0)
    assert c["coverage"] == 1.0 and c["accepted"] == 5 and c["referred"] == 0
    assert c["accepted_accuracy"] == pytest.approx(0.6)
    c = coverage_accuracy(y, p, 0.5)  # the threshold itself is accepted
    assert c["accepted"] == 4 and c["accepted_accuracy"] == pytest.approx(0.75)
    c = coverage_accuracy(y, p, 0.95)
    assert c["accepted"] == 0 and c["referred"] == 5 and c["accepted_accuracy"] is None
    assert choose_refer_threshold(y, p, 1.0) == pytest.approx(0.6)


def test_coverage_accuracy_empty():
    c = coverage_accuracy(np.zeros(0, int), np.zeros((0, 4)), 0.5)
    assert c["coverage"] == 0.0 and c["accepted"] == 0 and c["accepted_accuracy"] is None


def test_coverage_curve_coverage_falls_as_threshold_rises():
    y, p = calibrated_set(500, seed=6)
    curve = coverage_curve(y, p, points=20)
    assert 1 < len(curve) <= 20
    thresholds = [c["threshold"] for c in curve]
    coverages = [c["coverage"] for c in curve]
    assert thresholds == sorted(thresholds)
    assert coverages == sorted(coverages, reverse=True)
    assert curve[0]["coverage"] == 1.0
    assert coverage_curve(np.zeros(0, int), np.zeros((0, 4))) == []


# --- bootstrap_ci --------------------------------------------------------------------------------------

def test_bootstrap_interval_contains_point_estimate():
    y, p = calibrated_set(400, seed=7)
    ci = bootstrap_ci(y, p, n_boot=500)
    acc = float((p.argmax(1) == y).mean())
    lo, hi = ci["accuracy"]
    assert 0 <= lo <= acc <= hi <= 1
    assert set(ci["recall"]) == {"glioma", "meningioma", "notumor", "pituitary"}
    for i, (lo_c, hi_c) in enumerate(ci["recall"].values()):
        rec = float((p.argmax(1)[y == i] == i).mean())
        assert 0 <= lo_c <= rec <= hi_c <= 1


def test_bootstrap_narrower_with_more_data():
    y_small, p_small = calibrated_set(100, seed=8)
    y_big, p_big = calibrated_set(3000, seed=8)
    small, big = bootstrap_ci(y_small, p_small, n_boot=500), bootstrap_ci(y_big, p_big, n_boot=500)
    width = {k: v["accuracy"][1] - v["accuracy"][0] for k, v in (("small", small), ("big", big))}
    assert width["big"] < width["small"] / 2  # ~ 1 / sqrt(n): sqrt(30) ≈ 5.5x narrower


def test_bootstrap_interval_is_a_95_percent_one():
    """On a large set the percentile bootstrap of an accuracy is close to the normal interval acc ± 1.96 SE: a
    90 % interval (± 1.645 SE) would be 16 % narrower."""
    n, k = 4000, 3200  # 80 % right
    y = np.zeros(n, int)
    probs = np.eye(4)[np.where(np.arange(n) < k, 0, 1)]
    lo, hi = bootstrap_ci(y, probs)["accuracy"]
    acc = k / n
    assert hi - lo == pytest.approx(2 * 1.96 * np.sqrt(acc * (1 - acc) / n), rel=0.08)
    assert lo < acc < hi and (acc - lo) == pytest.approx(hi - acc, rel=0.15)  # about symmetric at 80 % of 4,000


def test_bootstrap_is_seeded_and_absent_class_gives_none():
    y = np.array([0, 0, 1, 1, 3, 3])  # no notumor
    p = np.eye(4)[[0, 1, 1, 1, 3, 0]]
    a, b = bootstrap_ci(y, p, n_boot=200, seed=3), bootstrap_ci(y, p, n_boot=200, seed=3)
    assert a == b
    assert a["recall"]["notumor"] is None
    # Both meningiomas right in every resample: not [100 %, 100 %] but the exact interval of 2 in 2.
    assert a["recall"]["meningioma"][1] == 1.0 and 0.15 < a["recall"]["meningioma"][0] < 0.16
    everything_right = bootstrap_ci(np.arange(4).repeat(10), np.eye(4)[np.arange(4).repeat(10)], n_boot=100)
    assert 0.91 < everything_right["accuracy"][0] < 0.92 and everything_right["accuracy"][1] == 1.0  # 40 of 40


# --- fit_calibration (a card's `calibration`, fitted on validation by brainclf.training.finalize) -------------
def test_fit_calibration_fits_each_mode_and_picks_tta_by_the_calibrated_loss():
    y, sharp = calibrated_set(400, seed=1, sharpen=3.0)  # over-confident: the fitted temperature undoes it
    _, good = calibrated_set(400, seed=1)  # the same labels, calibrated probabilities
    cal = fit_calibration({"": (y, sharp), "_tta": (y, good)}, fitted_on="validation split (400 images)")
    assert cal["fitted_on"] == "validation split (400 images)" and cal["refer_target_accuracy"] == 0.999
    assert cal["temperature"] == pytest.approx(3.0, rel=0.25) and cal["temperature_tta"] == pytest.approx(1.0, rel=0.25)
    assert cal["val_ece_after"] < cal["val_ece_before"]
    assert cal["val_nll"] == pytest.approx(nll(y, apply_temperature(sharp, cal["temperature"])))
    assert cal["tta_default"] is (cal["val_nll_tta"] < cal["val_nll"])
    flipped = fit_calibration({"": (y, good), "_tta": (y, random_probs(400, seed=2))}, fitted_on="v")
    assert flipped["tta_default"] is False  # probabilities unrelated to the labels never win
    assert set(flipped["refer_thresholds"]) == set(flipped["refer_thresholds_tta"])
    assert len(flipped["refer_thresholds"]) == 4


def test_a_calibration_set_without_errors_keeps_the_models_own_confidences():
    """With every answer right the NLL falls as T shrinks without end: a T at the search's edge would make every
    later answer look certain, so the fit keeps T = 1."""
    from brainclf.scoring.trust import apply_temperature, fit_temperature

    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, 60)
    logits = rng.normal(0, 0.3, (60, 4))
    logits[np.arange(60), y] += 1.5  # right, but not confidently
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    assert (probs.argmax(1) == y).all()
    assert fit_temperature(y, probs.astype(np.float32)) == 1.0
    wrong = y.copy()
    wrong[:15] = (y[:15] + 1) % 4  # a quarter wrong: a real fit, away from both edges
    t = fit_temperature(wrong, probs)
    assert 0.06 < t < 19 and t != 1.0
    assert np.allclose(apply_temperature(probs, 1.0), probs, atol=1e-6)


@pytest.mark.parametrize("top", [0.75, 0.9, 0.99])
def test_an_error_free_set_keeps_t_1_even_where_the_search_stops_above_the_edge(top):
    """Every answer right at `top` confidence: the NLL is exactly 0 in floating point for every T below about
    margin/37, so the search stopped anywhere in that flat region (0.087 for 0.9), above the edge guard."""
    y = np.arange(100) % 4
    p = np.full((100, 4), (1 - top) / 3)
    p[np.arange(100), y] = top
    assert fit_temperature(y, p) == 1.0
    assert fit_temperature(y[:1], p[:1]) == 1.0


def test_a_row_that_is_not_finite_is_left_out_of_the_temperature_fit():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, 200)
    logits = rng.normal(0, 1, (200, 4))
    logits[np.arange(200), y] += 1.5
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    clean = fit_temperature(y, probs)
    probs[0] = np.nan
    assert fit_temperature(y, probs) == pytest.approx(fit_temperature(y[1:], probs[1:]))
    assert abs(fit_temperature(y, probs) - clean) < 0.2  # one NaN row ran the search to the upper bound, 20


def test_the_bootstrap_holds_a_bounded_share_of_memory_however_many_rows():
    """It resampled all draws at once: (1000 x n) indices, ~15 GB for a card of 800,000 rows."""
    import tracemalloc

    from brainclf.scoring.trust import BOOT_CHUNK_CELLS, bootstrap_ci

    n = 400_000
    rng = np.random.default_rng(0)
    y, probs = rng.integers(0, 4, n), rng.dirichlet(np.ones(4), n)
    tracemalloc.start()
    out = bootstrap_ci(y, probs, n_boot=40)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 4 * 8 * BOOT_CHUNK_CELLS  # all 40 draws at once: 16 * 8 * n bytes of indices alone
    assert 0.2 < out["accuracy"][0] < out["accuracy"][1] < 0.3  # a random guess among four
