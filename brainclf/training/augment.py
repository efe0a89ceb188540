"""The training augmentation: Keras layers for geometry, and the intensity steps twice, in TensorFlow for
tf.data (brainclf.training.loop) and in NumPy for other Keras backends (brainclf.training.batches)."""

from __future__ import annotations

import numpy as np


def augmentation_pipeline(seed: int):
    """Mild geometric and intensity augmentation: slices vary in position, size, angle and windowing.
    Horizontal flips only: left/right is symmetric for these tumours, up/down is not how slices come."""
    import keras
    from keras import layers

    return keras.Sequential(
        [
            layers.RandomFlip("horizontal", seed=seed),
            layers.RandomRotation(0.04, fill_mode="constant", seed=seed + 1),
            layers.RandomZoom(0.1, fill_mode="constant", seed=seed + 2),
            layers.RandomTranslation(0.06, 0.06, fill_mode="constant", seed=seed + 3),
            layers.RandomContrast(0.2, seed=seed + 4),
        ],
        name="augment",
    )


def intensity_augmentation(batch):
    """Per image: gamma in [0.6, 1.6], brightness ±0.08, Gaussian noise with sigma up to 0.03: the
    windowing, scanner and export differences between sources, not the anatomy."""
    import tensorflow as tf

    n = tf.shape(batch)[0]
    gamma = tf.exp(tf.random.uniform([n, 1, 1, 1], np.log(0.6), np.log(1.6)))
    out = tf.pow(tf.clip_by_value(batch, 1e-6, 1.0), gamma)
    out = out + tf.random.uniform([n, 1, 1, 1], -0.08, 0.08) * tf.cast(batch > 0.02, batch.dtype)
    sigma = tf.random.uniform([n, 1, 1, 1], 0.0, 0.03)
    return out + sigma * tf.random.normal(tf.shape(batch))


CURVE_SEGMENTS = 5  # a random intensity curve: this many linear pieces between 0 and 1
CURVE_SHARE = 0.25  # of the training slices; the rest keep their own contrast


def contrast_augmentation(batch):
    """Per image, with probability CURVE_SHARE: map intensities through a random piecewise-linear curve that
    keeps black at black (the background) and may re-order the rest, as T1 and T2 do with the same tissue."""
    import tensorflow as tf

    n = tf.shape(batch)[0]
    knots = tf.concat([tf.zeros([n, 1]), tf.random.uniform([n, CURVE_SEGMENTS])], axis=1)
    pos = tf.clip_by_value(batch, 0.0, 1.0) * CURVE_SEGMENTS
    index = tf.minimum(tf.cast(tf.floor(pos), tf.int32), CURVE_SEGMENTS - 1)
    frac = pos - tf.cast(index, batch.dtype)
    curved = (tf.gather(knots, index, batch_dims=1) * (1 - frac)
              + tf.gather(knots, index + 1, batch_dims=1) * frac)
    return tf.where(tf.random.uniform([n, 1, 1, 1]) < CURVE_SHARE, curved, batch)


def np_intensity_augmentation(batch: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """intensity_augmentation in NumPy: per image gamma in [0.6, 1.6], brightness ±0.08 on the head,
    Gaussian noise with sigma up to 0.03."""
    n = len(batch)
    gamma = np.exp(rng.uniform(np.log(0.6), np.log(1.6), (n, 1, 1, 1)))
    out = np.power(np.clip(batch, 1e-6, 1.0), gamma)
    out = out + rng.uniform(-0.08, 0.08, (n, 1, 1, 1)) * (batch > 0.02)
    sigma = rng.uniform(0.0, 0.03, (n, 1, 1, 1))
    return out + sigma * rng.standard_normal(batch.shape)


def np_contrast_augmentation(batch: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """contrast_augmentation in NumPy: a random piecewise-linear intensity curve (black kept black) for a
    CURVE_SHARE of the images."""
    n = len(batch)
    knots = np.concatenate([np.zeros((n, 1)), rng.uniform(0.0, 1.0, (n, CURVE_SEGMENTS))], axis=1)
    pos = np.clip(batch, 0.0, 1.0) * CURVE_SEGMENTS
    index = np.minimum(np.floor(pos).astype(int), CURVE_SEGMENTS - 1)
    frac = pos - index
    rows = np.arange(n).reshape(-1, *([1] * (batch.ndim - 1)))
    curved = knots[rows, index] * (1 - frac) + knots[rows, index + 1] * frac
    return np.where(rng.uniform(size=(n,) + (1,) * (batch.ndim - 1)) < CURVE_SHARE, curved, batch)


def mixup(batch, labels, weights, alpha: float, classes: int):
    """Mixup in TensorFlow: each image blended with another of its batch by a Beta(alpha, alpha) share, its
    one-hot label and loss weight alike (a site's slices keep their extra weight in proportion)."""
    import tensorflow as tf

    n = tf.shape(batch)[0]
    a, b = tf.random.gamma([n], alpha), tf.random.gamma([n], alpha)
    share = a / (a + b)  # Beta(alpha, alpha) from two Gamma draws
    other = tf.random.shuffle(tf.range(n))
    s_img = tf.cast(tf.reshape(share, [-1, 1, 1, 1]), batch.dtype)
    onehot = tf.one_hot(tf.cast(labels, tf.int32), classes)
    s_lab = tf.reshape(share, [-1, 1])
    mixed = (s_img * batch + (1 - s_img) * tf.gather(batch, other),
             s_lab * onehot + (1 - s_lab) * tf.gather(onehot, other))
    if weights is None:
        return mixed
    w = tf.cast(weights, tf.float32)
    return (*mixed, share * w + (1 - share) * tf.gather(w, other))


def np_mixup(batch: np.ndarray, labels: np.ndarray, weights: np.ndarray | None, alpha: float, classes: int,
             rng: np.random.Generator):
    """mixup in NumPy: images, one-hot labels and loss weights blended with a shuffled copy of the batch."""
    n = len(batch)
    share = rng.beta(alpha, alpha, n).astype(np.float32)
    other = rng.permutation(n)
    onehot = np.eye(classes, dtype=np.float32)[labels]
    s_img = share.reshape(-1, *([1] * (batch.ndim - 1)))
    mixed = (s_img * batch + (1 - s_img) * batch[other],
             share[:, None] * onehot + (1 - share[:, None]) * onehot[other])
    if weights is None:
        return mixed
    return (*mixed, share * weights + (1 - share) * weights[other])
