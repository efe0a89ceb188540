"""brainclf.evaluation.faithfulness on the smoke model: shapes and ranges only (directions are checked on real data)."""

from __future__ import annotations

import numpy as np
import pytest

from brainclf.evaluation.faithfulness import FRACTIONS, _auc, deletion_test, randomisation_check


@pytest.fixture
def inputs(smoke_predictor, make_image):
    """8 synthetic model inputs, two per class."""
    classes = ("glioma", "meningioma", "notumor", "pituitary")
    return np.stack([smoke_predictor.preprocess(make_image(c, seed=100 + i)) for i in range(2) for c in classes])


def test_fractions():
    assert FRACTIONS[0] == 0.0 and FRACTIONS[-1] == pytest.approx(0.5)
    assert np.all(np.diff(FRACTIONS) > 0)


def test_auc_of_flat_curve_is_its_value():
    curves = np.array([np.full(len(FRACTIONS), 0.7), np.linspace(1, 0, len(FRACTIONS))])
    np.testing.assert_allclose(_auc(curves), [0.7, 0.5])


def test_deletion_test_shapes_and_ranges(smoke_predictor, inputs):
    before = inputs.copy()
    out = deletion_test(smoke_predictor, inputs, seed=0)
    assert out["n"] == len(inputs)
    assert out["fractions"] == FRACTIONS.tolist()
    for key in ("gradcam_curve", "random_curve"):
        curve = out[key]
        assert len(curve) == len(FRACTIONS)
        assert all(0.0 <= v <= 1.0 for v in curve)
    # Nothing deleted yet: both curves start at the model's probability of its predicted class (without TTA,
    # whatever the card's default: Grad-CAM explains the slice as given).
    undeleted = smoke_predictor.raw_probs(inputs, tta=False).max(1).mean()
    assert out["gradcam_curve"][0] == pytest.approx(undeleted, abs=1e-3)
    assert out["random_curve"][0] == pytest.approx(undeleted, abs=1e-3)
    for key in ("gradcam_auc", "random_auc", "share_gradcam_lower"):
        assert 0.0 <= out[key] <= 1.0
    # The input is not modified (deletion works on copies).
    np.testing.assert_array_equal(inputs, before)


def test_deletion_test_is_seeded(smoke_predictor, inputs):
    a = deletion_test(smoke_predictor, inputs[:3], seed=5)
    b = deletion_test(smoke_predictor, inputs[:3], seed=5)
    assert a["random_curve"] == pytest.approx(b["random_curve"], abs=1e-6)
    assert a["gradcam_auc"] == pytest.approx(b["gradcam_auc"], abs=1e-6)


def test_randomisation_check_range(smoke_predictor, inputs):
    probs_before = smoke_predictor.raw_probs(inputs)
    weights_before = [w.copy() for w in smoke_predictor.model.get_weights()]
    out = randomisation_check(smoke_predictor, inputs, seed=1)
    assert out["n"] == len(inputs)
    assert -1.0 <= out["mean_spearman"] <= 1.0
    assert -1.0 <= out["max_spearman"] <= 1.0
    assert out["max_spearman"] >= out["mean_spearman"] - 1e-12
    # The trained predictor is left untouched: same weights, same probabilities as before the check.
    for w, w0 in zip(smoke_predictor.model.get_weights(), weights_before):
        np.testing.assert_array_equal(w, w0)
    np.testing.assert_allclose(smoke_predictor.raw_probs(inputs), probs_before, atol=1e-6)


def test_measure_faithfulness_is_both_checks_on_the_given_images(smoke_predictor, inputs):
    from brainclf.evaluation import measure_faithfulness

    out = measure_faithfulness(smoke_predictor, inputs[:4], seed=3)
    assert out == {"deletion": deletion_test(smoke_predictor, inputs[:4], 3),
                   "randomisation": randomisation_check(smoke_predictor, inputs[:4], 3)}
