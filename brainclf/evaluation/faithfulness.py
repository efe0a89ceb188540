"""Is Grad-CAM faithful to the model? Two checks from the saliency-evaluation literature.

Deletion test (Petsiuk et al., RISE 2018): blank out (set to black, the MRI background) the most salient
pixels first, in steps up to half the image, and follow the predicted class's probability. A faithful
map makes it fall fast: a lower area under the deletion curve than deleting random regions. The random
baseline deletes random 8x8 blocks, so both remove contiguous regions rather than comparing smooth
Grad-CAM regions against salt-and-pepper noise.

Model-randomisation check (Adebayo et al., Sanity Checks for Saliency Maps, 2018): maps from the same
architecture with re-initialised weights must differ from the trained model's; we report the mean
Spearman rank correlation between the two (near 0 = they differ, as they should).
"""

from __future__ import annotations

import numpy as np

from ..inference.explain import GradCam

FRACTIONS = np.round(np.arange(0.0, 0.51, 0.05), 2)
BLOCK = 8


def _deletion_curves(predictor, x: np.ndarray, order_scores: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """(N, len(FRACTIONS)) probability of `classes` after deleting the top-scored pixels."""
    n, h, w, _ = x.shape
    ranks = np.argsort(-order_scores.reshape(n, -1), axis=1)
    curves = np.zeros((n, len(FRACTIONS)))
    for j, f in enumerate(FRACTIONS):
        xd = x.copy().reshape(n, h * w, -1)
        k = int(round(f * h * w))
        if k:
            np.put_along_axis(xd, ranks[:, :k, None], 0.0, axis=1)
        probs = predictor.raw_probs(xd.reshape(x.shape))
        curves[:, j] = probs[np.arange(n), classes]
    return curves


def _auc(curves: np.ndarray) -> np.ndarray:
    """Area under each deletion curve, normalised by the deleted range (so a flat curve at p gives p)."""
    return np.trapezoid(curves, FRACTIONS, axis=1) / (FRACTIONS[-1] - FRACTIONS[0])


def deletion_test(predictor, x: np.ndarray, seed: int = 0) -> dict:
    """Deletion-curve AUCs of Grad-CAM vs random-block deletion for the predicted class."""
    predictor = predictor.with_tta(False)  # Grad-CAM explains the slice as given: measure that same prediction
    x = np.asarray(x, dtype=np.float32)
    n, h, w, _ = x.shape
    heat, probs = GradCam(predictor.model, predictor.card.gradcam_layer).batch(x)
    classes = probs.argmax(1)
    rng = np.random.default_rng(seed)
    blocks = rng.random((n, -(-h // BLOCK), -(-w // BLOCK)))
    random_scores = np.repeat(np.repeat(blocks, BLOCK, 1), BLOCK, 2)[:, :h, :w]
    random_scores = random_scores + rng.random((n, h, w)) * 1e-6  # break ties inside a block
    cam_curves = _deletion_curves(predictor, x, heat + rng.random((n, h, w)) * 1e-6, classes)
    rnd_curves = _deletion_curves(predictor, x, random_scores, classes)
    cam_auc, rnd_auc = _auc(cam_curves), _auc(rnd_curves)
    return {
        "n": int(n), "fractions": FRACTIONS.tolist(),
        "gradcam_curve": cam_curves.mean(0).round(4).tolist(), "random_curve": rnd_curves.mean(0).round(4).tolist(),
        "gradcam_auc": float(cam_auc.mean()), "random_auc": float(rnd_auc.mean()),
        "share_gradcam_lower": float((cam_auc < rnd_auc).mean()),
    }


def randomisation_check(predictor, x: np.ndarray, seed: int = 1) -> dict:
    """Mean Spearman correlation between Grad-CAMs of the trained and a re-initialised model."""
    import keras
    from scipy.stats import spearmanr

    from ..model.architectures import build_model

    x = np.asarray(x, dtype=np.float32)
    trained_heat, probs = GradCam(predictor.model, predictor.card.gradcam_layer).batch(x)
    keras.utils.set_random_seed(seed)
    random_model = build_model(predictor.card.architecture, predictor.contract)
    random_heat, _ = GradCam(random_model, predictor.card.gradcam_layer).batch(x, probs.argmax(1))
    rhos = []
    for a, b in zip(trained_heat, random_heat):
        if a.std() == 0 or b.std() == 0:
            rhos.append(0.0)  # a constant map carries no ranking at all
        else:
            rhos.append(float(spearmanr(a.ravel(), b.ravel())[0]))
    return {"n": int(len(x)), "mean_spearman": float(np.mean(rhos)), "max_spearman": float(np.max(rhos))}


def measure_faithfulness(predictor, x: np.ndarray, seed: int = 0) -> dict:
    """A card's `faithfulness`: the Grad-CAM deletion test and the model-randomisation check on images `x`
    (a stratified subset of the test split, chosen by the caller)."""
    return {"deletion": deletion_test(predictor, x, seed), "randomisation": randomisation_check(predictor, x, seed)}
