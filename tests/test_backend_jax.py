"""KERAS_BACKEND=jax (issue #23, item 3): `python -m brainclf train` runs on a machine with JAX and no TensorFlow,
and the model it writes loads in the TensorFlow app and predicts the same.

One subprocess trains one tiny epoch with JAX while TensorFlow cannot be imported (as on the lent GPU machine,
which has none), finalises the model (calibration, OOD guard, Grad-CAM faithfulness, test metrics) and writes
its probabilities, OOD features and Grad-CAM heatmaps for fixed inputs; this (TensorFlow) process loads the
.keras file and compares."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from brainclf import CLASS_NAMES
from brainclf.input import InputContract, to_model_input
from brainclf.model import read_card
from brainclf.model.card_schema import CardSchemaError, validate_card
from brainclf.training import TrainConfig
from brainclf.training.batches import ArrayBatches

REPO = Path(__file__).resolve().parents[1]

# Run with KERAS_BACKEND=jax: TensorFlow cannot be imported (an import finder refuses it, as a machine without it
# would: nothing is put in sys.modules, so Keras' own "is TensorFlow loaded?" checks see what they would there).
JAX_PROCESS = r"""
import json, sys

class NoTensorFlow:
    def find_spec(self, name, path=None, target=None):
        if name == "tensorflow" or name.startswith("tensorflow."):
            raise ModuleNotFoundError(f"No module named {name!r} (this test's machine has no TensorFlow)", name=name)

sys.meta_path.insert(0, NoTensorFlow())
import keras
import numpy as np

from brainclf.cli import main
from brainclf.errors import ConfigError
from brainclf.inference import Predictor
from brainclf.training import TrainConfig, TrainRequest, train

args, inputs, out = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3]
assert main(args) == 0
model = args[args.index("--models-dir") + 1] + "/" + args[args.index("--name") + 1] + ".keras"
predictor = Predictor.load(model, tta=False)
x = np.load(inputs)
raw, feats = predictor.raw_probs_and_features(x)
_, heat = predictor.explain_arrays(x)
np.savez(out, raw=raw, feats=feats, heat=heat)
try:
    train(TrainRequest(TrainConfig(image_size=32, epochs=1), args[args.index("--data") + 1], "refused",
                       strategy="mirrored"))
    refusal = ""
except ConfigError as e:
    refusal = str(e)
print(json.dumps({"backend": keras.backend.backend(), "refusal": refusal,
                  "tensorflow_modules": sorted(m for m in sys.modules if m.split(".")[0] == "tensorflow")}))
"""


@pytest.fixture(scope="module")
def jax_run(tmp_path_factory, synthetic_dataset):
    """(model path, the JAX process's outputs for `inputs`, its report, inputs) of one tiny epoch trained with JAX."""
    base = tmp_path_factory.mktemp("jax")
    contract = InputContract(size=32, channels=1)
    files = sorted((synthetic_dataset / "Testing").rglob("*.png"))
    x = np.stack([to_model_input(Image.open(f), contract) for f in files] + [np.zeros(contract.shape, np.float32)])
    np.save(base / "inputs.npy", x)
    args = ["train", "--data", str(synthetic_dataset), "--name", "jaxsmoke", "--models-dir", str(base / "models"),
            "--size", "32", "--epochs", "1", "--batch-size", "16", "--max-images", "32"]  # 2 equal batches
    env = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu", "BRAINCLF_RUNS": str(base / "runs"),
           "PYTHONPATH": str(REPO)}
    r = subprocess.run([sys.executable, "-c", JAX_PROCESS, json.dumps(args), str(base / "inputs.npy"),
                        str(base / "out.npz")], cwd=base, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-4000:]
    report = json.loads(r.stdout.strip().splitlines()[-1])
    return base / "models" / "jaxsmoke.keras", dict(np.load(base / "out.npz")), report, x


def test_jax_training_imports_no_tensorflow_and_refuses_tf_distribute(jax_run):
    _, _, report, _ = jax_run
    assert report["backend"] == "jax"
    assert report["tensorflow_modules"] == []
    assert "--strategy mirrored uses tf.distribute" in report["refusal"] and "KERAS_BACKEND=tensorflow" in report[
        "refusal"]


def test_the_card_is_valid_and_names_the_backend(jax_run):
    model, _, _, _ = jax_run
    card = read_card(model)  # validated against the schema
    assert card.training["backend"] == "jax"
    assert card.training["distribution"]["backend"] == "jax" and card.training["distribution"]["device"]
    assert "jax" in card.libraries and "tensorflow" not in card.libraries
    assert card.training["epochs_run"] == 1 and card.training["config"]["image_size"] == 32
    assert card.metrics["test"]["n"] > 0 and card.ood and card.faithfulness["deletion"]["n"] > 0
    assert card.calibration["temperature"] > 0


def test_tensorflow_loads_the_jax_model_and_predicts_the_same(jax_run):
    import keras

    from brainclf.inference import Predictor

    assert keras.backend.backend() == "tensorflow"
    model, jax_out, _, x = jax_run
    predictor = Predictor.load(model, tta=False)
    raw, feats = predictor.raw_probs_and_features(x)
    np.testing.assert_allclose(raw, jax_out["raw"], atol=1e-5)
    np.testing.assert_allclose(feats, jax_out["feats"], rtol=1e-4, atol=1e-5)
    assert (raw.argmax(1) == jax_out["raw"].argmax(1)).all()
    _, heat = predictor.explain_arrays(x)  # Grad-CAM: GradientTape here, jax.grad there
    np.testing.assert_allclose(heat, jax_out["heat"], atol=1e-3)


def test_old_cards_read_as_tensorflow_and_an_unknown_backend_is_refused(jax_run):
    model, _, _, _ = jax_run
    card = json.loads(model.with_suffix(".json").read_text())
    del card["training"]["backend"]
    validate_card(card)  # a card from before the field: no backend, still valid (TensorFlow trained it)
    card["training"]["backend"] = "theano"
    with pytest.raises(CardSchemaError, match="backend"):
        validate_card(card)


def test_array_batches_cover_every_image_once_per_epoch_and_reshuffle():
    x = np.linspace(0, 1, 10 * 4 * 4, dtype=np.float32).reshape(10, 4, 4, 1)
    y, w = np.arange(10) % len(CLASS_NAMES), np.arange(10, dtype=np.float32)
    batches = ArrayBatches(x, y, TrainConfig(batch_size=4, seed=3), weights=w)
    assert len(batches) == 3

    def epoch():
        parts = [batches[i] for i in range(len(batches))]
        assert [len(p[0]) for p in parts] == [4, 4, 2]
        seen = np.concatenate([p[2] for p in parts]).astype(int)  # the weight is the image's index here
        for xb, yb, wb in parts:
            np.testing.assert_array_equal(xb, x[wb.astype(int)])
            np.testing.assert_array_equal(yb, y[wb.astype(int)])
        return seen

    first = epoch()
    batches.on_epoch_end()
    second = epoch()
    assert sorted(first) == sorted(second) == list(range(10)) and list(first) != list(second)


def test_array_batches_augment_within_range():
    from brainclf.training.augment import augmentation_pipeline

    x = np.random.default_rng(0).random((8, 32, 32, 1), dtype=np.float32)
    config = TrainConfig(batch_size=8, augment_intensity=True)
    batches = ArrayBatches(x, np.zeros(8, int), config, augment=augmentation_pipeline(config.seed))
    xb, yb = batches[0]
    assert xb.shape == x.shape and xb.dtype == np.float32 and yb.shape == (8,)
    assert 0.0 <= xb.min() and xb.max() <= 1.0
    assert not np.allclose(xb, x[batches.order])  # augmented, not the images as they are
