"""Checks that a loaded model is what its card and the app assume, before anything predicts with it: the layers
its card names exist with the sizes its OOD statistics need, and its output is the softmax of its `logits`
layer (Grad-CAM's scores and the calibration's temperature both read `logits`; an upload ending in a sigmoid
would show the page one set of probabilities and the command line another)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ..errors import ModelError

if TYPE_CHECKING:
    from .card import ModelCard

# Softmax outputs in float32 agree with a softmax recomputed from the logits to about 1e-7 (the bundled models);
# a mixed-precision head rounds to bfloat16's 3 digits. A sigmoid or an unnormalised head is off by far more.
SOFTMAX_TOLERANCE = 1e-2


def check_card_layers(model, card: ModelCard, name: str) -> None:
    """The layers a card names (Grad-CAM, OOD guard) exist in the model, and the OOD statistics have as many
    features as those layers give (per channel: mean and standard deviation), so that predicting and
    explaining cannot fail on them later. (A card naming no OOD layers gets its architecture's, from
    brainclf.model.architectures, a layer above this one: Predictor checks those.)"""
    layers = {layer.name: layer for layer in model.layers}
    gradcam = [card.gradcam_layer] if isinstance(card.gradcam_layer, str) else list(card.gradcam_layer)
    ood = card.ood or {}
    ood_layers = list(ood.get("layers") or ([ood["layer"]] if ood.get("layer") else []))
    for what, names in (("gradcam_layer", gradcam), ("ood layers", ood_layers)):
        missing = [n for n in names if n not in layers]
        if missing:
            raise ModelError(f"{name}: {what} names {', '.join(missing)[:200]}, which the model does not have: the "
                             "card does not belong to this model.")
    if ood.get("means") and ood_layers:
        features = sum(2 * int(layers[n].output.shape[-1]) for n in ood_layers)
        if len(ood["means"][0]) != features:
            raise ModelError(f"{name}: the OOD guard's statistics have {len(ood['means'][0])} features but the "
                             f"model's layers {', '.join(ood_layers)} give {features}: the card does not belong to "
                             "this model.")


def check_softmax_output(model, name: str) -> None:
    """The model's output is the softmax of its `logits` layer, on two probe images.

    Raises:
        ModelError: no layer named logits, or an output that is not its softmax (e.g. a sigmoid head).
    """
    import keras

    try:
        logits = model.get_layer("logits")
    except ValueError:
        raise ModelError(f"{name} has no layer named 'logits' (the scores before the softmax), which Grad-CAM and "
                         "the calibration need.") from None
    probe = keras.Model(model.inputs, [logits.output, model.output])
    x = np.random.default_rng(0).random((2, *model.input_shape[1:])).astype(np.float32)
    scores, out = (np.asarray(keras.ops.convert_to_numpy(v), np.float64) for v in probe([x], training=False))
    expected = np.exp(scores - scores.max(1, keepdims=True))
    expected /= expected.sum(1, keepdims=True)
    if out.shape != expected.shape or not np.all(np.abs(out - expected) <= SOFTMAX_TOLERANCE):
        raise ModelError(f"{name}: its output is not the softmax of its 'logits' layer (e.g. a sigmoid or an "
                         "unnormalised head), so its probabilities would not sum to 1: not loaded.")
