"""Which Keras backend runs brainclf, and the little that differs between backends.

Keras 3 runs the same models on TensorFlow (the app's backend, the default) and on JAX (`KERAS_BACKEND=jax`:
training on a machine with JAX and no TensorFlow, a lent GPU say; the .keras file it writes loads in the
TensorFlow app). Everything else is plain Keras; what is not lives here:

  forward_function  the Predictor's compiled pass (tf.function, or jax.jit of the model's stateless call)
  training_forward  a training-mode pass for BatchNorm's statistics (tf.function; eager elsewhere)
  jax_gradcam       Grad-CAM's gradient with jax.grad (brainclf.inference.explain keeps its GradientTape for TensorFlow)
  to_numpy          a backend's output as a NumPy array
  check_supported   the backends and distribution strategies that train (tf.distribute needs TensorFlow)
  OneDevice         the stand-in for tf.distribute's default strategy on another backend
  describe          the backend (and device) a card's training record names

The training batches without tf.data are brainclf.training.batches. Nothing here imports TensorFlow unless
it is the backend: with KERAS_BACKEND=jax, `python -m brainclf train` never imports it.
"""

from __future__ import annotations

from contextlib import nullcontext

import numpy as np

from .. import TRAINING_BACKENDS
from ..errors import ConfigError


def name() -> str:
    """The Keras backend of this process: "tensorflow", "jax" or "torch" (KERAS_BACKEND, Keras' config)."""
    import keras

    return keras.backend.backend()


def check_supported(strategy: str = "default") -> None:
    """Refuse a backend brainclf does not train on, and a tf.distribute strategy on a backend without it."""
    backend = name()
    if backend not in TRAINING_BACKENDS:
        raise ConfigError(f"KERAS_BACKEND={backend} is not supported: brainclf trains with "
                          f"{' or '.join(TRAINING_BACKENDS)}.")
    if backend != "tensorflow" and strategy != "default":
        raise ConfigError(f"--strategy {strategy} uses tf.distribute, which needs KERAS_BACKEND=tensorflow; with "
                          f"{backend} brainclf trains on one device (the first GPU when there is one).")


class OneDevice:
    """tf.distribute's default strategy as the training loop uses it (a scope, one replica), for other backends."""

    num_replicas_in_sync = 1

    def scope(self):
        return nullcontext()


def describe() -> dict:
    """{"backend": name} and, on JAX, the device it trains on ("gpu: NVIDIA H100 80GB HBM3", "cpu")."""
    backend = name()
    out = {"backend": backend}
    if backend == "jax":
        import jax

        device = jax.devices()[0]
        kind = getattr(device, "device_kind", "")
        out["device"] = f"{device.platform}: {kind}" if kind and kind != device.platform else device.platform
    return out


def to_numpy(a) -> np.ndarray:
    """A TensorFlow tensor, a JAX array or a NumPy array as a NumPy array."""
    return np.asarray(a.numpy() if hasattr(a, "numpy") else a)


def _variable_values(model) -> tuple[list, list]:
    return [v.value for v in model.trainable_variables], [v.value for v in model.non_trainable_variables]


def forward_function(net, input_shape: tuple[int, ...]):
    """net(x, training=False), compiled once: a tf.function with a fixed signature on TensorFlow (no retracing
    per call), jax.jit of the stateless call on JAX (the current weights are passed in on every call)."""
    backend = name()
    if backend == "tensorflow":
        import tensorflow as tf

        spec = tf.TensorSpec((None, *input_shape), tf.float32)
        return tf.function(lambda x: net(x, training=False), input_signature=[spec])
    if backend != "jax":
        return lambda x: net(x, training=False)
    import jax

    @jax.jit
    def run(trainable, non_trainable, x):
        return net.stateless_call(trainable, non_trainable, x, training=False)[0]

    def call(x):
        n = len(x)
        outs = run(*_variable_values(net), _padded(np.asarray(x, np.float32)))
        return [out[:n] for out in outs] if isinstance(outs, (list, tuple)) else outs[:n]

    return call


def training_forward(net, input_shape: tuple[int, ...]):
    """net(x, training=True) for its side effects (BatchNormalization's moving statistics): a tf.function with a
    fixed signature on TensorFlow, compiled once per call of this; on other backends the eager call, which
    updates the layers' state as Keras' own fit does."""
    if name() != "tensorflow":
        return lambda x: net(x, training=True)
    import tensorflow as tf

    spec = tf.TensorSpec((None, *input_shape), tf.float32)
    return tf.function(lambda x: net(x, training=True), input_signature=[spec])


def _padded(x: np.ndarray, *more: np.ndarray):
    """x (and `more`, row for row) padded with zero rows to a power of two: jax.jit compiles once per batch
    shape, so a run's batches of every size between 1 and 64 cost at most 7 compilations, not one per size.
    Inference only: a padded row changes no other row's result."""
    n = len(x)
    size = 1 << max(n - 1, 0).bit_length()
    pad = [np.concatenate([a, np.zeros((size - n, *a.shape[1:]), a.dtype)]) if size > n else a for a in (x, *more)]
    return pad[0] if not more else pad


def jax_gradcam(features, head, n_maps: int, size: tuple[int, int]):
    """brainclf.inference.explain.GradCam's pass on JAX, the same maths as its TensorFlow one: `features` runs input →
    feature map(s) (+ extra outputs), `head` the map(s) → logits; d(class logit)/d(map) by jax.grad. Returns
    f(x, class_index) → (heatmaps (N, H, W), softmax (N, 4), [extra outputs])."""
    import jax
    import jax.numpy as jnp

    h, w = size

    @jax.jit
    def heatmaps(f_vars, h_vars, x, class_index):
        outs = features.stateless_call(*f_vars, x, training=False)[0]
        outs = list(outs) if isinstance(outs, (list, tuple)) else [outs]
        maps = outs[:n_maps]

        def score(maps):
            logit = head.stateless_call(*h_vars, maps, training=False)[0]
            # A negative index asks for the predicted class, decided inside the same pass.
            chosen = jnp.where(class_index < 0, jnp.argmax(logit, axis=1).astype(class_index.dtype), class_index)
            return jnp.take_along_axis(logit, chosen[:, None], axis=1).sum(), logit

        grads, logit = jax.grad(score, has_aux=True)(maps)
        cam = 0.0
        for fmap, grad in zip(maps, grads):
            weighted = jnp.sum(jnp.mean(grad, axis=(1, 2), keepdims=True) * fmap, axis=-1, keepdims=True)
            if weighted.shape[1:3] != maps[0].shape[1:3]:
                weighted = _resize(weighted, maps[0].shape[1:3])
            cam = cam + weighted
        cam = _resize(jax.nn.relu(cam), (h, w))[..., 0]
        peak = jnp.max(cam, axis=(1, 2), keepdims=True)
        cam = jnp.where(peak > 0, cam / jnp.where(peak > 0, peak, 1.0), 0.0)  # tf.math.divide_no_nan
        return cam, jax.nn.softmax(logit), outs[n_maps:]

    def call(x, class_index):
        n = len(x)
        cam, probs, extras = heatmaps(_variable_values(features), _variable_values(head), *_padded(x, class_index))
        return cam[:n], probs[:n], [e[:n] for e in extras]

    return call


def _resize(batch, size):
    """tf.image.resize(method="bilinear") for upsampling: half-pixel centres, edges clamped."""
    import jax

    n, _, _, c = batch.shape
    return jax.image.resize(batch, (n, *size, c), method="bilinear", antialias=False)
