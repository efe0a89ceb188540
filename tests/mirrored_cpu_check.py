"""Run by tests/test_mirrored.py in a fresh process (not a test module itself):

    python tests/mirrored_cpu_check.py compare      # single device vs MirroredStrategy, tiny Keras model
    python tests/mirrored_cpu_check.py train DATA   # brainclf's train(strategy="mirrored"), one epoch

Splits the one CPU into two logical devices, which has to happen before TensorFlow initialises its devices.
`compare` trains one epoch of a tiny Keras model twice from the same initial weights, on the same data in the
same order with the same global batch: once on the default single device, once under MirroredStrategy over
the two logical CPUs (each replica gets half of every batch, gradients are summed across replicas), with
SGD and with AdamW (train()'s optimizer). `train` runs one epoch of the seed architecture through brainclf's
train() on a Kaggle-layout folder. Each prints one JSON object on the last line of stdout. They are separate
processes: training a different model under a second MirroredStrategy in the same process failed with a
collective-op shape mismatch (TF 2.21).

Why `compare` does not use train(): every brainclf architecture has BatchNormalization (batch statistics per
replica) and Dropout (masks per replica), and its training dataset reshuffles each iteration, which Keras
iterates once more under a strategy, so its weights legitimately differ from a single-device epoch.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_DETERMINISTIC_OPS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # brainclf, run from anywhere

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

import keras  # noqa: E402

GLOBAL_BATCH, N, SIZE, SEED = 8, 32, 12, 0  # N a multiple of the global batch: every replica gets 4 images


OPTIMIZERS = {"sgd": lambda: keras.optimizers.SGD(0.5),
              "adamw": lambda: keras.optimizers.AdamW(3e-3, weight_decay=1e-4)}


def build(optimizer: str):
    """A tiny convnet without BatchNormalization or Dropout (both would differ per replica)."""
    inputs = keras.Input((SIZE, SIZE, 1))
    x = keras.layers.Conv2D(4, 3, activation="relu")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dense(8, activation="relu")(x)
    outputs = keras.layers.Dense(4, activation="softmax")(x)
    model = keras.Model(inputs, outputs)
    model.compile(optimizer=OPTIMIZERS[optimizer](), loss="sparse_categorical_crossentropy")
    return model


def dataset():
    rng = np.random.default_rng(SEED)
    x = rng.uniform(0, 1, (N, SIZE, SIZE, 1)).astype(np.float32)
    y = rng.integers(0, 4, N).astype(np.int64)
    return tf.data.Dataset.from_tensor_slices((x, y)).batch(GLOBAL_BATCH)


def one_epoch(model) -> list[np.ndarray]:
    model.fit(dataset(), epochs=1, shuffle=False, verbose=0)
    return [np.asarray(w) for w in model.get_weights()]


def compare(optimizer: str) -> dict:
    """Single device vs MirroredStrategy over the logical CPUs, one epoch from the same weights."""
    keras.utils.set_random_seed(SEED)
    initial = build(optimizer).get_weights()

    single = build(optimizer)
    single.set_weights(initial)
    w_single = one_epoch(single)

    devices = [d.name for d in tf.config.list_logical_devices("CPU")]
    strategy = tf.distribute.MirroredStrategy(devices)
    with strategy.scope():
        mirrored = build(optimizer)
        mirrored.set_weights(initial)
    w_mirrored = one_epoch(mirrored)
    return {"replicas": strategy.num_replicas_in_sync,
            "max_update": max(float(np.max(np.abs(a - b))) for a, b in zip(w_single, initial)),
            "max_diff": max(float(np.max(np.abs(a - b))) for a, b in zip(w_single, w_mirrored))}


def train_mirrored(data: str) -> dict:
    """One epoch of brainclf's train(strategy="mirrored") with the seed architecture on `data`."""
    import tempfile

    from brainclf.training import TrainConfig, TrainRequest, train

    with tempfile.TemporaryDirectory() as tmp:
        config = TrainConfig(architecture="seed", image_size=32, epochs=1, batch_size=8, augment=False, seed=SEED)
        run_dir = train(TrainRequest(config, data, "mirrored", models_dir=Path(tmp) / "models",
                                     run_dir=Path(tmp) / "run", strategy="mirrored", finalize=False))
        state = json.loads((Path(run_dir) / "state.json").read_text())
        return {"epoch": state["epoch"], "loss": state["history"]["loss"][-1],
                "saved": (Path(run_dir) / "last.keras").exists()}


def main() -> int:
    from brainclf.training import distribution_strategy

    if sys.argv[1:2] == ["train"]:
        result = train_mirrored(sys.argv[2])
    else:
        result = {opt: compare(opt) for opt in OPTIMIZERS}
    result["logical_cpus"] = [d.name for d in tf.config.list_logical_devices("CPU")]
    result["brainclf_mirrored_replicas"] = distribution_strategy("mirrored").num_replicas_in_sync
    print(json.dumps(result))
    return 0

if __name__ == "__main__":
    sys.exit(main())
