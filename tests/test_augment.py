"""The random intensity curve (train --contrast-augment), in its TensorFlow and NumPy twins: black stays black,
values stay in [0, 1], about CURVE_SHARE of the images change, and a changed image is one curve of its own
intensities."""

import numpy as np
import pytest

from brainclf.training.augment import CURVE_SHARE, contrast_augmentation, np_contrast_augmentation


def _batch(n=400, size=12):
    rng = np.random.default_rng(3)
    x = rng.integers(0, 11, (n, size, size, 1)).astype(np.float32) / 10  # eleven grey levels
    x[:, :2] = 0.0  # a black border: the background
    return x


def _tf_curve(x):
    import tensorflow as tf

    return contrast_augmentation(tf.constant(x)).numpy()


@pytest.mark.parametrize("curve", [_tf_curve, lambda x: np_contrast_augmentation(x, np.random.default_rng(0))],
                         ids=["tensorflow", "numpy"])
def test_random_curve_keeps_black_and_range_and_changes_its_share(curve):
    x = _batch()
    out = curve(x)
    assert out.shape == x.shape
    assert np.all(out[:, :2] == 0.0)
    assert out.min() >= 0.0 and out.max() <= 1.0 + 1e-6
    changed = ~np.isclose(out, x, atol=1e-5).all(axis=(1, 2, 3))
    assert abs(changed.mean() - CURVE_SHARE) < 0.1
    for image, mapped in zip(x[changed][:20], out[changed][:20], strict=True):
        for level in np.unique(image):  # one curve: every pixel of a grey level gets the same new value
            values = mapped[image == level]
            assert np.ptp(values) < 1e-5
    # the curve may re-order brightness (T1 against T2): some changed image turns a brighter level darker
    flips = [np.any(np.diff([m[i == v].mean() for v in np.unique(i)]) < 0) for i, m in zip(x[changed], out[changed],
                                                                                         strict=True)]
    assert any(flips)
