"""brainclf.model.architectures.recalibrate_batchnorm: BatchNorm's moving statistics become the plain average of
batch statistics, now from a compiled pass: the same numbers as the eager cumulative average it replaced."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from keras import layers

from brainclf.model.architectures import recalibrate_batchnorm


def _net(seed: int = 0) -> keras.Model:
    keras.utils.set_random_seed(seed)
    inp = keras.Input((24, 24, 1))
    h = layers.Conv2D(4, 3, name="c1")(inp)
    h = layers.BatchNormalization(name="bn1")(h)
    h = layers.Conv2D(6, 3, strides=2, name="c2")(layers.ReLU()(h))
    h = layers.BatchNormalization(name="bn2")(h)
    out = layers.Dense(4, activation="softmax")(layers.GlobalAveragePooling2D()(h))
    return keras.Model(inp, out)


def _eager_reference(model, x, batch_size, max_batches, seed) -> int:
    """The previous implementation: eager training-mode calls, momentum (n - 1) / n at the n-th batch."""
    bns = [layer for layer in model.layers if isinstance(layer, layers.BatchNormalization)]
    old = [bn.momentum for bn in bns]
    order = np.random.default_rng(seed).permutation(len(x))
    n = 0
    for n, start in enumerate(range(0, min(len(x), batch_size * max_batches), batch_size), 1):
        for bn in bns:
            bn.momentum = (n - 1) / n
        model(x[order[start:start + batch_size]], training=True)
    for bn, m in zip(bns, old):
        bn.momentum = m
    return n


def _stats(model) -> list[np.ndarray]:
    return [np.asarray(v) for layer in model.layers if isinstance(layer, layers.BatchNormalization)
            for v in (layer.moving_mean, layer.moving_variance)]


@pytest.mark.parametrize("n_images, batch_size, max_batches", [(200, 64, 80), (130, 32, 3), (10, 64, 5)])
def test_the_compiled_average_equals_the_eager_cumulative_one(n_images, batch_size, max_batches):
    x = np.random.default_rng(1).random((n_images, 24, 24, 1)).astype(np.float32) * 3 + 0.5
    compiled, eager = _net(), _net()
    used = recalibrate_batchnorm(compiled, x, batch_size=batch_size, max_batches=max_batches, seed=4)
    assert used == _eager_reference(eager, x, batch_size, max_batches, seed=4)
    for got, want in zip(_stats(compiled), _stats(eager)):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    assert not np.allclose(_stats(compiled)[0], 0)  # moved from their initial zeros: the pass really ran
    assert [bn.momentum for bn in compiled.layers if isinstance(bn, layers.BatchNormalization)] == [0.99, 0.99]


def test_a_frozen_batchnorm_keeps_its_statistics_and_weights_are_untouched():
    x = np.random.default_rng(2).random((96, 24, 24, 1)).astype(np.float32)
    model = _net()
    model.get_layer("bn1").trainable = False
    before_bn1, weights = _stats(model)[:2], [np.asarray(w) for w in model.trainable_weights]
    recalibrate_batchnorm(model, x, batch_size=32)
    for got, want in zip(_stats(model)[:2], before_bn1):
        np.testing.assert_array_equal(got, want)
    assert not np.allclose(_stats(model)[2], 0)  # bn2 re-estimated
    for got, want in zip(model.trainable_weights, weights):
        np.testing.assert_array_equal(np.asarray(got), want)


def test_no_images_or_no_batchnorm_changes_nothing():
    model = _net()
    assert recalibrate_batchnorm(model, np.zeros((0, 24, 24, 1), np.float32)) == 0
    plain = keras.Sequential([keras.Input((4,)), layers.Dense(2)])
    assert recalibrate_batchnorm(plain, np.ones((8, 4), np.float32)) == 0
