"""brainclf.inference.ood: colourfulness, the Mahalanobis feature guard and the bank of non-MRI images."""

from __future__ import annotations

import math

import numpy as np
import pytest
from PIL import Image

from brainclf.inference import (
    COLOUR_THRESHOLD,
    QUANTILE,
    check,
    colourfulness,
    fit_feature_model,
    held_out_scores,
    mahalanobis_scores,
    non_mri_images,
)

DIMS = 8


def clusters(n_per_class: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Features of 4 classes around well separated means; returns (features, labels, means)."""
    rng = np.random.default_rng(seed)
    means = np.eye(4, DIMS) * 10.0
    labels = np.repeat(np.arange(4), n_per_class)
    feats = means[labels] + rng.normal(0, 1.0, (len(labels), DIMS))
    return feats, labels, means


@pytest.fixture(scope="module")
def stats():
    f_tr, _, _ = clusters(200, seed=0)
    f_va, _, _ = clusters(50, seed=1)
    return fit_feature_model(f_tr, f_va, layers=["s0b", "s1b"])


def colourful_image(size: int = 64) -> Image.Image:
    arr = np.zeros((size, size, 3), np.uint8)
    arr[: size // 2, :, 0] = 255  # red top
    arr[size // 2:, :, 2] = 255  # blue bottom
    arr[:, : size // 4, 1] = 200  # a green stripe
    return Image.fromarray(arr, mode="RGB")


# --- colourfulness --------------------------------------------------------------------------------------

def test_colourfulness_zero_for_grayscale(make_image):
    img = make_image("glioma", seed=0)
    assert img.mode == "L"
    assert colourfulness(img) == 0.0
    assert colourfulness(img.convert("RGB")) == pytest.approx(0.0, abs=1e-9)  # R = G = B
    assert colourfulness(img.convert("I;16")) == 0.0
    assert colourfulness(img.convert("LA")) == 0.0


def test_colourfulness_large_for_colour():
    c = colourfulness(colourful_image())
    assert c > 4 * COLOUR_THRESHOLD
    assert colourfulness(colourful_image().convert("RGBA")) == pytest.approx(c)
    # A faint tint stays below the threshold.
    arr = np.full((32, 32, 3), 120, np.uint8)
    arr[..., 0] += 3
    assert colourfulness(Image.fromarray(arr)) < COLOUR_THRESHOLD


# --- fit_feature_model + mahalanobis_scores -------------------------------------------------------------

def test_fit_feature_model_structure(stats):
    assert np.asarray(stats["means"]).shape == (1, DIMS)  # one Gaussian over all training descriptors
    assert stats["layers"] == ["s0b", "s1b"]
    assert stats["threshold_from"].startswith(f"{800 + 200} held-out scores")
    assert np.asarray(stats["precision"]).shape == (DIMS, DIMS)
    assert stats["quantile"] == QUANTILE
    assert stats["colour_threshold"] == COLOUR_THRESHOLD
    assert stats["threshold"] > 0
    precision = np.asarray(stats["precision"])
    np.testing.assert_allclose(precision, precision.T, atol=1e-6)
    assert np.all(np.linalg.eigvalsh(precision) > 0)


def test_threshold_is_quantile_of_held_out_scores():
    f_tr, _, _ = clusters(200, seed=0)
    f_va, _, _ = clusters(50, seed=1)
    model = fit_feature_model(f_tr, f_va)
    held = held_out_scores(f_tr, f_va)
    assert held.shape == (len(f_tr) + len(f_va),)
    assert model["threshold"] == pytest.approx(np.quantile(held, QUANTILE), rel=1e-4)
    assert (held <= model["threshold"] + 1e-6).mean() >= QUANTILE
    # The validation part is scored by the full fit.
    np.testing.assert_allclose(held[len(f_tr):], mahalanobis_scores(f_va, model), rtol=1e-4)


def test_out_of_fold_scores_are_not_optimistic():
    # Scored by a Gaussian fitted on themselves, training points look closer than new points do; the
    # out-of-fold scores must not (that is why the threshold uses them).
    rng = np.random.default_rng(5)
    f_tr, f_va = rng.normal(size=(120, 20)), rng.normal(size=(4000, 20))
    model = fit_feature_model(f_tr, f_va[:10])
    in_sample = mahalanobis_scores(f_tr, model).mean()
    oof = held_out_scores(f_tr, f_va[:0]).mean()
    fresh = mahalanobis_scores(f_va, model).mean()
    assert in_sample < fresh
    assert oof > in_sample
    assert abs(oof - fresh) < abs(in_sample - fresh)


def test_few_training_points_fall_back_to_validation_scores():
    rng = np.random.default_rng(6)
    f_tr, f_va = rng.normal(size=(6, 3)), rng.normal(size=(20, 3))
    held = held_out_scores(f_tr, f_va)
    assert held.shape == (20,)
    assert fit_feature_model(f_tr, f_va)["threshold"] > 0


def test_near_points_score_lower_than_far_points(stats):
    means = np.asarray(stats["means"])
    rng = np.random.default_rng(2)
    near = means + rng.normal(0, 0.3, (4, DIMS))
    far = means * 5 + 40.0 + rng.normal(0, 0.3, (4, DIMS))
    s_near, s_far = mahalanobis_scores(near, stats), mahalanobis_scores(far, stats)
    assert s_near.shape == (4,) and s_far.shape == (4,)
    assert s_near.max() < s_far.min()
    assert np.all(s_near < stats["threshold"]) and np.all(s_far > stats["threshold"])
    # At a class mean the score is (almost) zero, and it grows with the distance.
    at_mean = mahalanobis_scores(np.asarray(stats["means"]), stats)
    np.testing.assert_allclose(at_mean, 0, atol=1e-3)
    d = [mahalanobis_scores(np.asarray(stats["means"])[:1] + k, stats)[0] for k in (0.5, 1, 2, 4)]
    assert d == sorted(d)


def test_score_is_distance_to_the_nearest_mean_when_several():
    two = {"means": [[0.0, 0.0], [10.0, 0.0]], "precision": np.eye(2).tolist()}
    np.testing.assert_allclose(mahalanobis_scores(np.array([[1.0, 0.0], [9.0, 0.0], [5.0, 0.0]]), two),
                               [1.0, 1.0, 5.0], rtol=1e-6)


# --- check ----------------------------------------------------------------------------------------------

def test_check_flags_colourful_image(stats):
    near = np.asarray(stats["means"])[0]
    flagged, reason, score = check(colourful_image(), near, stats)
    assert flagged and "colour" in reason and math.isnan(score)
    # The colour check works even without feature statistics.
    flagged, reason, _ = check(colourful_image(), near, None)
    assert flagged and "colour" in reason


def test_check_flags_far_features_and_passes_near(stats, make_image):
    means = np.asarray(stats["means"])
    gray = make_image("meningioma", seed=1)
    flagged, reason, score = check(gray, means[0] * 5 + 40.0, stats)
    assert flagged and "unlike the training" in reason and score > stats["threshold"]
    flagged, reason, score = check(gray, means[0] + 0.1, stats)
    assert not flagged and reason == "" and 0 <= score < stats["threshold"]
    flagged, _, score = check(None, means[0] + 0.1, stats)
    assert not flagged and np.isfinite(score)


def test_check_without_stats_passes_grayscale(make_image):
    flagged, reason, score = check(make_image(), np.zeros(DIMS), None)
    assert not flagged and reason == "" and math.isnan(score)
    assert check(None, np.zeros(DIMS), {})[0] is False


def test_check_honours_colour_threshold_from_stats(stats):
    img = colourful_image()
    lenient = {**stats, "colour_threshold": colourfulness(img) + 1}
    flagged, reason, _ = check(img, np.asarray(stats["means"])[0], lenient)
    assert not flagged


# --- non_mri_images -------------------------------------------------------------------------------------

def test_non_mri_images_bank():
    images = non_mri_images(seed=0)
    assert len(images) >= 50
    names = [n for n, _ in images]
    assert len(set(names)) == len(names)
    prefixes = ("photo_", "text_", "blank_", "noise_", "gradient_", "checker_", "shapes_")
    for prefix in prefixes:
        assert any(n.startswith(prefix) for n in names), prefix
    assert all(n.startswith(prefixes) for n in names)
    for name, img in images:
        assert isinstance(img, Image.Image), name
        assert min(img.size) > 0, name
    kinds = {n: img for n, img in images}
    assert colourfulness(kinds["photo_flower"]) > COLOUR_THRESHOLD
    assert colourfulness(kinds["photo_flower_gray"]) == 0.0
    assert np.asarray(kinds["blank_0"]).max() == 0


def test_non_mri_images_seeded():
    a, b = non_mri_images(seed=3), non_mri_images(seed=3)
    assert [n for n, _ in a] == [n for n, _ in b]
    for (_, x), (_, y) in zip(a, b):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_fit_guard_fits_on_training_features_and_measures_test_and_non_mri(smoke_predictor, make_image):
    """brainclf.inference.ood.fit_guard, as brainclf.training.finalize calls it for a card's `ood`."""
    from brainclf.inference import fit_guard, non_mri_images

    classes = ("glioma", "meningioma", "notumor", "pituitary")
    x = np.stack([smoke_predictor.preprocess(make_image(c, seed=200 + i)) for i in range(10) for c in classes])
    guard = fit_guard(smoke_predictor, x[:24], x[24:32], x[32:], seed=0)
    assert guard["fitted_on"].startswith("24 training images (features)")
    assert guard["layers"] == list(smoke_predictor.ood_layers)
    measured = guard["measured"]
    assert measured["test_n"] == 8 and 0 <= measured["test_flagged"] <= 8
    assert measured["non_mri_n"] == len(non_mri_images(0))
    assert measured["non_mri_flagged"] + len(measured["non_mri_missed"]) == measured["non_mri_n"]
    assert "test_n" not in fit_guard(smoke_predictor, x[:24], x[24:32], None, seed=0)["measured"]


def test_colour_hidden_under_transparency_does_not_count():
    """A grey head on a fully transparent background that stores red there: the model sees grey on black."""
    from brainclf.inference.ood import colourfulness

    rgba = np.zeros((64, 64, 4), np.uint8)
    rgba[..., 0] = 255  # red, but transparent
    rgba[16:48, 16:48] = (120, 120, 120, 255)  # the opaque grey head
    assert colourfulness(Image.fromarray(rgba, mode="RGBA")) < 1
    rgba[16:48, 16:48] = (200, 40, 40, 255)  # an opaque red one still counts
    assert colourfulness(Image.fromarray(rgba, mode="RGBA")) > 20
