"""Grad-CAM: which regions of the slice drove the score of a class.

As in the keras-io example: a sub-model from the input to [last conv feature map, class logits], a
GradientTape for d(logit)/d(feature map), channel weights = spatially averaged gradients, heatmap =
ReLU(weighted sum of channels), upsampled to the input size. The class score is the logit (pre-softmax),
as in the Grad-CAM paper, so a saturated softmax does not flatten the gradients.
"""

from __future__ import annotations

import numpy as np


class GradCam:
    """Built once per model; the compiled function is reused for every image and thread.

    `layer_name` may list several feature maps (an ensemble's members): the class score is their averaged
    logit, so each member's weighted map is computed, brought to the input size and summed before the ReLU.
    """

    def __init__(self, model, layer_name: str | list[str] | tuple[str, ...] = "last_conv"):
        import keras
        import tensorflow as tf

        names = [layer_name] if isinstance(layer_name, str) else list(layer_name)
        fmaps = [model.get_layer(n).output for n in names]
        logits = model.get_layer("logits").output
        self.grad_model = keras.Model(model.inputs, [fmaps, logits])
        h, w = model.input_shape[1:3]
        self.size = (h, w)
        spec = tf.TensorSpec((None, *model.input_shape[1:]), tf.float32)

        @tf.function(input_signature=[spec, tf.TensorSpec((None,), tf.int32)])
        def heatmaps(x, class_index):
            with tf.GradientTape() as tape:
                maps, logit = self.grad_model(x, training=False)
                score = tf.gather(logit, class_index, axis=1, batch_dims=1)
            grads = tape.gradient(score, maps)
            cam = 0.0
            for fmap, grad in zip(maps, grads):
                weights = tf.reduce_mean(grad, axis=(1, 2), keepdims=True)
                weighted = tf.reduce_sum(weights * fmap, axis=-1, keepdims=True)
                cam += tf.image.resize(weighted, (h, w), method="bilinear")[..., 0]
            cam = tf.nn.relu(cam)
            peak = tf.reduce_max(cam, axis=(1, 2), keepdims=True)
            cam = tf.math.divide_no_nan(cam, peak)
            return cam, tf.nn.softmax(logit)

        self._heatmaps = heatmaps

    def __call__(self, x: np.ndarray, class_index: int | None = None) -> np.ndarray:
        """x: (H, W, C) → heatmap (H, W) in [0, 1]; class_index None means the predicted class."""
        heat, _ = self.batch(np.asarray(x)[None], None if class_index is None else [class_index])
        return heat[0]

    def batch(self, x: np.ndarray, class_indices=None) -> tuple[np.ndarray, np.ndarray]:
        """x: (N, H, W, C) → heatmaps (N, H, W) and probabilities (N, 4)."""
        x = np.asarray(x, dtype=np.float32)
        if class_indices is None:
            _, probs = self._heatmaps(x, np.zeros(len(x), np.int32))
            class_indices = probs.numpy().argmax(1)
        heat, probs = self._heatmaps(x, np.asarray(class_indices, dtype=np.int32))
        return heat.numpy(), probs.numpy()


def gradcam_heatmap(model, x: np.ndarray, class_index: int | None = None,
                    layer_name: str | list[str] = "last_conv"):
    """One-off convenience: builds the Grad-CAM function for `model` and applies it to one image."""
    return GradCam(model, layer_name)(x, class_index)


def jet_colormap(values: np.ndarray) -> np.ndarray:
    """[0, 1] → RGB in [0, 1] with the classic 'jet' ramp (blue → cyan → yellow → red)."""
    v = np.clip(values, 0.0, 1.0)[..., None]
    r = np.clip(1.5 - np.abs(4 * v - 3), 0, 1)
    g = np.clip(1.5 - np.abs(4 * v - 2), 0, 1)
    b = np.clip(1.5 - np.abs(4 * v - 1), 0, 1)
    return np.concatenate([r, g, b], axis=-1)


def overlay_heatmap(image: np.ndarray, heatmap: np.ndarray, opacity: float = 0.4) -> np.ndarray:
    """Blend a heatmap over a model input (H, W, 1|3 in [0, 1]) → RGB uint8 (H, W, 3)."""
    img = np.asarray(image, dtype=np.float32)
    if img.ndim == 2:
        img = img[..., None]
    if img.shape[-1] == 1:
        img = np.repeat(img, 3, axis=-1)
    colour = jet_colormap(heatmap)
    # Weight the colour by the heat itself so cold regions keep the anatomy visible.
    a = opacity * np.clip(heatmap, 0, 1)[..., None] ** 0.5
    out = img * (1 - a) + colour * a
    return (np.clip(out, 0, 1) * 255).round().astype(np.uint8)
