"""Label smoothing (train --label-smoothing S): batches carry one-hot labels, the loss spreads S over the classes,
the card records it, and where it cannot train (multi-worker) or makes no sense it is refused."""

from types import SimpleNamespace

import numpy as np
import pytest

from brainclf import CLASS_NAMES
from brainclf.errors import ConfigError
from brainclf.training import TrainConfig


def test_batches_carry_one_hot_labels_when_smoothing():
    from brainclf.training.batches import ArrayBatches
    from brainclf.training.loop import tf_dataset

    x = np.random.default_rng(0).random((6, 32, 32, 1), dtype=np.float32)
    y = np.array([0, 1, 2, 3, 1, 2])
    config = TrainConfig(architecture="seed", image_size=32, batch_size=6, label_smoothing=0.1, augment=False)
    _, y_tf = next(iter(tf_dataset(x, y, config, training=True)))
    _, y_np = ArrayBatches(x, y, config)[0]
    for labels in (np.asarray(y_tf), y_np):
        assert labels.shape == (6, len(CLASS_NAMES)) and set(np.unique(labels)) == {0.0, 1.0}
        assert sorted(labels.argmax(1)) == sorted(y)
    plain = TrainConfig(architecture="seed", image_size=32, batch_size=6, augment=False)
    assert ArrayBatches(x, y, plain)[0][1].ndim == 1


def test_the_compiled_loss_smooths_towards_the_uniform_target(tmp_path):
    from brainclf.training.loop import load_or_build

    config = TrainConfig(architecture="seed", image_size=32, label_smoothing=0.2)
    model = load_or_build(config, config.contract(), tmp_path, SimpleNamespace(epoch=0), steps=1)  # a new run
    uniform = np.full((1, len(CLASS_NAMES)), 0.25, np.float32)
    sure = np.array([[0.97, 0.01, 0.01, 0.01]], np.float32)
    target = np.eye(len(CLASS_NAMES), dtype=np.float32)[[0]]
    # The target is 0.8 of the class plus 0.05 of each class: a near-certain answer pays for the other three.
    expected = -(0.8 + 0.2 / 4) * np.log(0.97) - 3 * (0.2 / 4) * np.log(0.01)
    assert float(model.loss(target, sure)) == pytest.approx(expected, rel=1e-4)
    assert float(model.loss(target, uniform)) == pytest.approx(np.log(4), rel=1e-4)


@pytest.mark.parametrize("setting", [{"label_smoothing": 0.1}, {"mixup": 0.4}, {"label_smoothing": 0.1, "mixup": 0.4}])
def test_training_with_one_hot_labels_finishes_and_records_its_setting(tmp_path, synthetic_dataset, setting):
    """Label smoothing and mixup (test_mixup.py), alone and together: both train on one-hot labels."""
    from brainclf.model import read_card
    from brainclf.training import TrainRequest, train

    config = TrainConfig(architecture="seed", image_size=32, epochs=1, batch_size=8, **setting)
    out = train(TrainRequest(config, data=synthetic_dataset, name="onehot", models_dir=tmp_path / "models",
                             run_dir=tmp_path / "run"))
    card = read_card(out)
    assert {k: card.training["config"][k] for k in setting} == setting
    assert np.isfinite(card.training["history"]["loss"]).all()


@pytest.mark.parametrize("value", [-0.1, 0.5, 1.0])
def test_label_smoothing_outside_its_range_is_refused(value):
    with pytest.raises(ConfigError, match="label smoothing"):
        TrainConfig(label_smoothing=value).validate()


@pytest.mark.parametrize("config", [TrainConfig(label_smoothing=0.1), TrainConfig(mixup=0.2)])
def test_multiworker_refuses_one_hot_labels_before_any_work(tmp_path, config):
    from brainclf.training import TrainRequest, train

    with pytest.raises(ConfigError, match="multiworker trains on class indices"):
        train(TrainRequest(config, data=tmp_path / "nowhere", name="x", strategy="multiworker",
                           run_dir=tmp_path / "run"))
    assert not (tmp_path / "run").exists()
