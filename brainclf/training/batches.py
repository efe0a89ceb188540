"""Training batches without tf.data, for a Keras backend other than TensorFlow (KERAS_BACKEND=jax): the same
recipe as brainclf.training.loop.tf_dataset (reshuffled every epoch, batches of (x, y) or (x, y, sample weight),
the same Keras augmentation layers, the same intensity augmentation, clipped to [0, 1]) as a
keras.utils.PyDataset over the in-memory arrays. The random streams differ from tf.data's: the same seed
gives a repeatable run on one backend, not the same batches on both."""

from __future__ import annotations

from collections.abc import Callable

import keras
import numpy as np

from .. import CLASS_NAMES
from .augment import np_contrast_augmentation, np_intensity_augmentation, np_mixup
from .config import TrainConfig


class ArrayBatches(keras.utils.PyDataset):
    """One epoch of shuffled training batches; `augment` is augment.augmentation_pipeline(seed) or None. Read in
    Model.fit's own thread (one worker, no multiprocessing), so a seeded run repeats on its backend."""

    def __init__(self, x: np.ndarray, y: np.ndarray, config: TrainConfig, weights: np.ndarray | None = None,
                 augment: Callable | None = None, first_epoch: int = 0):
        super().__init__()
        self.x, self.y, self.weights = x, y, weights
        self.batch_size = config.batch_size
        self.augment, self.intensity = augment, config.augment and config.augment_intensity
        self.contrast = config.augment and config.augment_contrast
        self.mixup, self.one_hot = config.mixup, config.one_hot_labels()
        self.rng = np.random.default_rng([config.seed, first_epoch])  # a resumed run: its own stream
        self.order = self.rng.permutation(len(x))

    def __len__(self) -> int:
        return -(-len(self.x) // self.batch_size)

    def __getitem__(self, index: int):
        pick = self.order[index * self.batch_size:(index + 1) * self.batch_size]
        x = self.x[pick]
        if self.augment is not None:
            x = np.asarray(self.augment(x, training=True))
            if self.contrast:
                x = np_contrast_augmentation(x, self.rng)
            if self.intensity:
                x = np_intensity_augmentation(x, self.rng)
            x = np.clip(x, 0.0, 1.0).astype(np.float32)
        weights = None if self.weights is None else self.weights[pick]
        if self.mixup:
            return np_mixup(x, self.y[pick], weights, self.mixup, len(CLASS_NAMES), self.rng)
        y = np.eye(len(CLASS_NAMES), dtype=np.float32)[self.y[pick]] if self.one_hot else self.y[pick]
        return (x, y) if weights is None else (x, y, weights)

    def on_epoch_end(self) -> None:
        self.order = self.rng.permutation(len(self.x))
