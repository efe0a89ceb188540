"""Grad-CAM: which regions of the slice drove the score of a class.

As in the keras-io example: the last conv feature map and the class logits, a
GradientTape for d(logit)/d(feature map), channel weights = spatially averaged gradients, heatmap =
ReLU(weighted sum of channels), upsampled to the input size. The class score is the logit (pre-softmax),
as in the Grad-CAM paper, so a saturated softmax does not flatten the gradients.
"""

from __future__ import annotations

import numpy as np

from ..model import backend


class GradCam:
    """Built once per model; the compiled function is reused for every image and thread.

    The model is cut at the Grad-CAM feature map: `features` runs input → feature map(s) outside the
    gradient tape (the fused inference path), and only the small head from the map to the logits is
    taped. One call therefore costs about one forward pass and also yields the probabilities (and any
    `extra_outputs`, such as the OOD guard's descriptors), so predicting and explaining need one pass.

    `layer_name` may list several feature maps (an ensemble's members): the class score is their averaged
    logit, so each member's weighted map is computed and the maps are summed (at the first map's resolution),
    then the ReLU, then upsampling to the input size.
    """

    def __init__(self, model, layer_name: str | list[str] | tuple[str, ...] = "last_conv", extra_outputs=()):
        import keras

        names = [layer_name] if isinstance(layer_name, str) else list(layer_name)
        fmaps = [model.get_layer(n).output for n in names]
        extras = list(extra_outputs)
        self.features = keras.Model(model.inputs, fmaps + extras)
        try:
            self.head = keras.Model(fmaps, model.get_layer("logits").output)
        except ValueError:
            raise ValueError(f"Grad-CAM layers {names} do not cover every path to the logits (an ensemble "
                             "needs the feature map of each member).") from None
        n_maps = len(fmaps)
        h, w = model.input_shape[1:3]
        self.size = (h, w)
        if backend.name() != "tensorflow":  # the same maths with jax.grad (KERAS_BACKEND=jax)
            self._heatmaps = backend.jax_gradcam(self.features, self.head, n_maps, self.size)
            return
        import tensorflow as tf

        spec = tf.TensorSpec((None, *model.input_shape[1:]), tf.float32)

        @tf.function(input_signature=[spec, tf.TensorSpec((None,), tf.int32)])
        def heatmaps(x, class_index):
            outs = self.features(x, training=False)
            outs = list(outs) if isinstance(outs, (list, tuple)) else [outs]
            maps = outs[:n_maps]
            with tf.GradientTape() as tape:
                tape.watch(maps)
                logit = self.head(maps, training=False)
                # A negative index asks for the predicted class, decided inside the same pass.
                chosen = tf.where(class_index < 0, tf.argmax(logit, axis=1, output_type=tf.int32), class_index)
                score = tf.gather(logit, chosen, axis=1, batch_dims=1)
            grads = tape.gradient(score, maps)
            cam = 0.0
            for fmap, grad in zip(maps, grads):
                weights = tf.reduce_mean(grad, axis=(1, 2), keepdims=True)
                weighted = tf.reduce_sum(weights * fmap, axis=-1, keepdims=True)
                cam += tf.image.resize(weighted, tf.shape(maps[0])[1:3], method="bilinear")  # no-op if same
            cam = tf.image.resize(tf.nn.relu(cam), (h, w), method="bilinear")[..., 0]
            peak = tf.reduce_max(cam, axis=(1, 2), keepdims=True)
            cam = tf.math.divide_no_nan(cam, peak)
            return cam, tf.nn.softmax(logit), outs[n_maps:]

        self._heatmaps = heatmaps

    def __call__(self, x: np.ndarray, class_index: int | None = None) -> np.ndarray:
        """x: (H, W, C) → heatmap (H, W) in [0, 1]; class_index None means the predicted class."""
        heat, _ = self.batch(np.asarray(x)[None], None if class_index is None else [class_index])
        return heat[0]

    def batch(self, x: np.ndarray, class_indices=None) -> tuple[np.ndarray, np.ndarray]:
        """x: (N, H, W, C) → heatmaps (N, H, W) and probabilities (N, 4)."""
        heat, probs, _ = self.batch_with_extras(x, class_indices)
        return heat, probs

    def batch_with_extras(self, x: np.ndarray, class_indices=None):
        """Heatmaps, probabilities and the extra outputs (a list of arrays) of one pass."""
        x = np.asarray(x, dtype=np.float32)
        idx = np.full(len(x), -1, np.int32) if class_indices is None else np.asarray(class_indices, np.int32)
        heat, probs, extras = self._heatmaps(x, idx)
        return backend.to_numpy(heat), backend.to_numpy(probs), [backend.to_numpy(e) for e in extras]


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


def penultimate_features(model, x: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """Global-average-pooled features (the layer before the classifier) for a batch of model inputs; an
    ensemble's members' pooled features side by side."""
    import keras

    pooled = [layer.output for layer in model.layers if layer.name == "gap" or layer.name.endswith("_gap")]
    if not pooled:
        raise ValueError(f"{model.name} has no global-average-pooling layer named 'gap'.")
    sub = keras.Model(model.inputs, pooled[0] if len(pooled) == 1 else keras.ops.concatenate(pooled, axis=-1))
    return np.concatenate([np.asarray(sub(x[i:i + batch_size], training=False))
                           for i in range(0, len(x), batch_size)])
