"""Training settings a run cannot honour are refused before it starts, in words (they failed with a NumPy or Keras
traceback, or cut the run short without saying why)."""

from __future__ import annotations

import pytest

from brainclf.errors import ConfigError
from brainclf.training import TrainConfig, TrainRequest, train
from brainclf.training.config import MAX_SEED


@pytest.mark.parametrize("seed", [-1, MAX_SEED, 2**32])
def test_a_seed_numpy_cannot_take_is_refused(seed):
    with pytest.raises(ConfigError, match=f"The seed must be from 0 to .*got {seed}"):
        TrainConfig(seed=seed).validate()
    with pytest.raises(ConfigError, match="The split seed must be"):
        TrainConfig(split_seed=seed).validate()
    TrainConfig(seed=0, split_seed=MAX_SEED - 1).validate()


@pytest.mark.parametrize("patience", [0, -3])
def test_a_patience_under_one_epoch_is_refused(patience):
    with pytest.raises(ConfigError, match=f"patience must be at least 1 epoch, got {patience}"):
        TrainConfig(early_stopping_patience=patience).validate()


def test_a_run_of_one_step_in_all_trains(synthetic_dataset, tmp_path):
    """Warm-up took the only step and left the cosine decay 0 steps, which Keras refuses."""
    config = TrainConfig(architecture="seed", image_size=32, epochs=1, batch_size=64, max_train_images=20)
    out = train(TrainRequest(config, synthetic_dataset, "one_step", models_dir=tmp_path / "models",
                             run_dir=tmp_path / "run"))
    assert out.is_file()


def test_a_run_refused_before_its_first_epoch_leaves_nothing_to_trip_the_corrected_command(synthetic_dataset, tmp_path):
    models = tmp_path / "models"
    models.mkdir()
    (models / "taken.keras").write_bytes(b"someone else's model")
    run_dir = tmp_path / "run"
    with pytest.raises(ConfigError, match="A model named taken already exists"):
        train(TrainRequest(TrainConfig(architecture="seed", image_size=32, epochs=1, batch_size=8), synthetic_dataset,
                           "taken", models_dir=models, run_dir=run_dir))
    assert not (run_dir / "state.json").exists()
    # The corrected command (other settings, another folder for the model) trains in the same run folder.
    out = train(TrainRequest(TrainConfig(architecture="seed", image_size=32, epochs=1, batch_size=16,
                                         max_train_images=20), synthetic_dataset, "taken",
                             models_dir=tmp_path / "elsewhere", run_dir=run_dir))
    assert out.is_file() and (run_dir / "state.json").is_file()
