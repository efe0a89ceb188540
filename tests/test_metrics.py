"""brainclf.scoring.metrics: accuracy, confusion matrix orientation, per-class scores, AUC and calibration."""

from __future__ import annotations

import numpy as np
import pytest

from brainclf import CLASS_NAMES
from brainclf.scoring import classification_metrics, expected_calibration_error, reliability_curve, roc_curves


def probs_for(preds, conf=0.7):
    p = np.full((len(preds), 4), (1 - conf) / 3)
    p[np.arange(len(preds)), preds] = conf
    return p


Y_TRUE = np.array([0, 0, 1, 1, 2, 2, 3, 3])
Y_PRED = np.array([0, 1, 1, 1, 2, 0, 3, 3])


def ovr_auc(y: np.ndarray, probs: np.ndarray, k: int) -> float:
    """Class k's one-vs-rest AUC by brute force: the share of (class k, other) image pairs in which the class k
    image has the higher probability of k, ties counting one half."""
    pos, neg = probs[y == k, k][:, None], probs[y != k, k][None, :]
    return float(((pos > neg) + 0.5 * (pos == neg)).mean())


def test_hand_made_example():
    m = classification_metrics(Y_TRUE, probs_for(Y_PRED))
    assert m["n"] == 8
    assert m["accuracy"] == pytest.approx(6 / 8)
    # rows = true class, columns = predicted class
    assert m["confusion_matrix"] == [[1, 1, 0, 0], [0, 2, 0, 0], [1, 0, 1, 0], [0, 0, 0, 2]]
    pc = m["per_class"]
    assert list(pc) == list(CLASS_NAMES)
    assert pc["glioma"]["precision"] == pytest.approx(1 / 2) and pc["glioma"]["recall"] == pytest.approx(1 / 2)
    assert pc["meningioma"]["precision"] == pytest.approx(2 / 3) and pc["meningioma"]["recall"] == 1.0
    assert pc["notumor"]["precision"] == 1.0 and pc["notumor"]["recall"] == pytest.approx(1 / 2)
    assert pc["pituitary"]["f1"] == 1.0
    assert all(pc[c]["support"] == 2 for c in CLASS_NAMES)
    assert pc["meningioma"]["f1"] == pytest.approx(2 * (2 / 3) / (2 / 3 + 1))
    assert m["loss"] == pytest.approx(-np.mean(np.log(np.where(Y_TRUE == Y_PRED, 0.7, 0.1))))
    # The AUCs from a high and a low score per class (5/8 and 1/8: exact in binary, so the tied scores stay tied;
    # see test_tied_scores_keep_their_auc_when_rows_are_renormalised). 2 positives x 6 negatives = 12 pairs a class.
    # glioma: its positives score high and low, one negative (the notumor called glioma) high: 5.5 + 2.5 = 8 won.
    # meningioma: both positives high, one negative (the glioma called meningioma) high: 2 x 5.5 = 11.
    # notumor: positives high and low (called glioma), every negative low: 6 + 3 = 9. pituitary: all 12.
    exact = probs_for(Y_PRED, conf=0.625)
    assert [ovr_auc(Y_TRUE, exact, k) for k in range(4)] == pytest.approx([8 / 12, 11 / 12, 9 / 12, 1])
    m = classification_metrics(Y_TRUE, exact)
    assert m["macro_auc"] == pytest.approx((8 + 11 + 9 + 12) / 48)
    assert [m["per_class"][c]["auc"] for c in CLASS_NAMES] == pytest.approx([8 / 12, 11 / 12, 9 / 12, 1])


def test_tied_scores_keep_their_auc_when_rows_are_renormalised():
    """Renormalised rows whose float sums differ in the last bit turned tied scores (0.1 vs 0.1) into an order: the
    AUC depended on round-off (macro AUC 0.885 instead of 0.833 here). Ranks are taken from the scores as given."""
    m = classification_metrics(Y_TRUE, probs_for(Y_PRED))  # 0.7 and 0.1: not exact in binary
    assert m["macro_auc"] == pytest.approx((8 + 11 + 9 + 12) / 48)


def test_confusion_matrix_is_not_transposed():
    m = classification_metrics(np.array([0, 0, 0, 1, 2, 3]), probs_for([3, 3, 0, 1, 2, 3]))
    assert m["confusion_matrix"][0] == [1, 0, 0, 2]  # two true gliomas predicted as pituitary
    assert [row[3] for row in m["confusion_matrix"]] == [2, 0, 0, 1]


def test_unnormalised_probabilities_are_renormalised():
    a = classification_metrics(Y_TRUE, probs_for(Y_PRED))
    b = classification_metrics(Y_TRUE, probs_for(Y_PRED) * 3.0)
    assert a["loss"] == pytest.approx(b["loss"]) and a["ece"] == pytest.approx(b["ece"])


def test_perfect_separation_has_auc_one():
    y = np.repeat(np.arange(4), 5)
    m = classification_metrics(y, probs_for(y, conf=0.9))
    assert m["macro_auc"] == pytest.approx(1.0)
    assert m["accuracy"] == 1.0
    assert all(m["per_class"][c]["auc"] == pytest.approx(1.0) for c in CLASS_NAMES)


def test_missing_class_gives_mean_auc_over_present_classes():
    y = np.array([0, 0, 0, 1, 1, 1, 2, 2, 2])
    probs = np.random.default_rng(6).dirichlet(np.ones(4), len(y))
    probs[y, y] += 0.3  # better than chance, not perfect
    probs /= probs.sum(1, keepdims=True)
    m = classification_metrics(y, probs)
    present = [ovr_auc(y, probs, k) for k in range(3)]
    assert len(set(present)) == 3 and min(present) < 1  # the classes' AUCs differ: their mean is not any one
    assert [m["per_class"][c]["auc"] for c in CLASS_NAMES[:3]] == pytest.approx(present)
    assert m["macro_auc"] == pytest.approx(np.mean(present))
    assert "auc" not in m["per_class"]["pituitary"]
    assert m["per_class"]["pituitary"]["support"] == 0


def test_empty_input():
    assert classification_metrics(np.array([], int), np.zeros((0, 4))) == {"n": 0}


def test_ece_zero_when_perfectly_calibrated():
    # 10 predictions at confidence 0.8, of which exactly 8 are right.
    y_true = np.array([0] * 8 + [1] * 2)
    probs = probs_for(np.zeros(10, int), conf=0.8)
    assert expected_calibration_error(y_true, probs) == pytest.approx(0.0, abs=1e-12)


def test_ece_positive_when_overconfident():
    y_true = np.array([0] * 5 + [1] * 5)
    probs = probs_for(np.zeros(10, int), conf=0.99)  # 99 % sure, right half of the time
    assert expected_calibration_error(y_true, probs) == pytest.approx(0.49)
    curve = reliability_curve(y_true, probs)
    assert curve["bins"] == [{"lo": pytest.approx(14 / 15), "hi": 1.0, "n": 10,
                              "confidence": pytest.approx(0.99), "accuracy": 0.5}]


def test_roc_curves_skip_classes_without_both_outcomes():
    y = np.array([0, 0, 1, 1])
    curves = roc_curves(y, probs_for(y))
    assert set(curves) == {"glioma", "meningioma"}
    c = curves["glioma"]
    assert c["fpr"][0] == 0 and c["tpr"][-1] == 1 and c["auc"] == pytest.approx(1.0)


def test_ece_leaves_a_non_finite_row_out_of_the_weights_as_well_as_the_bins():
    y_true = np.array([0, 1, 0])
    probs = np.array([[0.9, 0.1, 0, 0], [0.2, 0.8, 0, 0], [np.nan, 0.5, 0.5, 0]])
    # Over the two finite rows: both right, confidences 0.9 and 0.8 -> |1 - 0.9| / 2 + |1 - 0.8| / 2 = 0.15.
    assert expected_calibration_error(y_true, probs) == pytest.approx(0.15)
    assert np.isnan(expected_calibration_error(y_true[:1], probs[2:]))  # nothing measurable is not a perfect 0


@pytest.mark.parametrize("right", [True, False])
def test_ece_counts_a_confidence_of_exactly_one_in_the_top_bin(right):
    """Saturated answers (confidence 1.0, common in float32) fall in the last bin (14/15, 1]: all right is perfectly
    calibrated (ECE 0), all wrong is as far off as can be (ECE 1)."""
    y = np.repeat(np.arange(4), 3)
    probs = np.eye(4)[y if right else (y + 1) % 4]
    assert expected_calibration_error(y, probs) == (0.0 if right else 1.0)
    assert reliability_curve(y, probs)["bins"] == [{"lo": pytest.approx(14 / 15), "hi": 1.0, "n": 12,
                                                    "confidence": 1.0, "accuracy": 1.0 if right else 0.0}]
