"""Mixup (train --mixup ALPHA) in its TensorFlow and NumPy twins: every output image is a blend of two images of
its batch in the same share as its one-hot label and its loss weight; a training run with it finishes and its
card records the setting."""

import numpy as np
import pytest

from brainclf.training.augment import mixup, np_mixup

CLASSES = 4


def _batch(n=64, size=8):
    rng = np.random.default_rng(5)
    x = rng.uniform(0, 1, (n, size, size, 1)).astype(np.float32)
    y = rng.integers(0, CLASSES, n)
    w = rng.choice([1.0, 2.0], n).astype(np.float32)
    return x, y, w


def _tf(x, y, w):
    import tensorflow as tf

    return [t.numpy() for t in mixup(tf.constant(x), tf.constant(y), tf.constant(w), 0.4, CLASSES)]


def _np(x, y, w):
    return np_mixup(x, y, w, 0.4, CLASSES, np.random.default_rng(0))


@pytest.mark.parametrize("blend", [_tf, _np], ids=["tensorflow", "numpy"])
def test_images_labels_and_weights_blend_in_one_share(blend):
    x, y, w = _batch()
    xm, ym, wm = blend(x, y, w)
    assert xm.shape == x.shape and ym.shape == (len(x), CLASSES) and wm.shape == w.shape
    np.testing.assert_allclose(ym.sum(axis=1), 1.0, atol=1e-5)
    flat = x.reshape(len(x), -1)
    mixed = 0
    for i in range(len(x)):
        best = None  # the partner j and share s with xm[i] = s x[i] + (1 - s) x[j], by least squares
        for j in range(len(x)):
            d = flat[i] - flat[j]
            s = 1.0 if j == i else float(np.dot(xm[i].ravel() - flat[j], d) / np.dot(d, d))
            error = np.abs(s * flat[i] + (1 - s) * flat[j] - xm[i].ravel()).max()
            if best is None or error < best[0]:
                best = (error, j, s)
        error, j, share = best
        assert error < 1e-4 and -1e-4 <= share <= 1 + 1e-4, f"output {i} is not a blend within the batch"
        onehot = np.eye(CLASSES)[[y[i], y[j]]]
        np.testing.assert_allclose(ym[i], share * onehot[0] + (1 - share) * onehot[1], atol=1e-4)
        np.testing.assert_allclose(wm[i], share * w[i] + (1 - share) * w[j], atol=1e-4)
        mixed += j != i and 0.05 < share < 0.95
    assert mixed > len(x) // 4  # Beta(0.4, 0.4) leaves many shares near 0 or 1, but not all


def test_mixup_outside_zero_to_one_is_refused():
    from brainclf.errors import ConfigError
    from brainclf.training import TrainConfig

    with pytest.raises(ConfigError, match="mixup"):
        TrainConfig(mixup=1.5).validate()
