"""An epoch's checkpoints are committed by its state: whenever a kill lands, last.keras and best.keras are the
weights the saved state describes (or become so on the next start), never a later epoch's."""

from __future__ import annotations

import pytest

from brainclf.errors import DataError
from brainclf.training import callbacks
from brainclf.training.callbacks import commit_epoch, settle_checkpoints


class Killed(Exception):
    pass


@pytest.fixture
def run(tmp_path, monkeypatch):
    """A run folder at epoch 3 (best at 2); 'models' are strings written as the files' text."""
    monkeypatch.setattr(callbacks, "save_atomically", lambda model, path: path.write_text(model))
    (tmp_path / "last.keras").write_text("epoch 3")
    (tmp_path / "best.keras").write_text("epoch 2")
    return tmp_path


def _files(run):
    return {p.name: p.read_text() for p in run.glob("*.keras")}


def test_a_kill_before_the_state_leaves_the_last_committed_epoch(run):
    def killed():
        raise Killed

    with pytest.raises(Killed):
        commit_epoch("epoch 4", run, 4, improved=True, save_state=killed)
    settle_checkpoints(run, 3)  # the next start: the state still says 3
    assert _files(run) == {"last.keras": "epoch 3", "best.keras": "epoch 2"}


def test_a_kill_after_the_state_is_finished_on_the_next_start(run, monkeypatch):
    states = []
    monkeypatch.setattr(callbacks, "settle_checkpoints", lambda *a: (_ for _ in ()).throw(Killed()))
    with pytest.raises(Killed):
        commit_epoch("epoch 4", run, 4, improved=True, save_state=lambda: states.append(4))
    assert states == [4] and _files(run)["last.keras"] == "epoch 3"  # killed between the state and the moves
    settle_checkpoints(run, 4)  # the next start: the state says 4
    assert _files(run) == {"last.keras": "epoch 4", "best.keras": "epoch 4"}


def test_an_epoch_that_did_not_improve_leaves_best_alone(run):
    commit_epoch("epoch 4", run, 4, improved=False, save_state=lambda: None)
    assert _files(run) == {"last.keras": "epoch 4", "best.keras": "epoch 2"}


def test_a_state_past_epoch_zero_without_its_checkpoint_is_refused(tmp_path):
    from brainclf.training import TrainConfig
    from brainclf.training.loop import load_or_build
    from brainclf.training.state import RunState

    config = TrainConfig(architecture="compact_cnn", image_size=32, epochs=3)
    state = RunState(config=config.to_dict(), contract=config.contract().to_dict(), train_files=[], val_files=[],
                     test_files=[], fingerprint={}, started="", epoch=2)
    with pytest.raises(DataError, match="says 2 epochs were trained, but their checkpoint last.keras is missing"):
        load_or_build(config, config.contract(), tmp_path, state, steps=4)


@pytest.mark.parametrize("logs", [{"loss": float("nan"), "val_loss_calibrated": 0.5},
                                  {"loss": 0.5, "val_loss_calibrated": float("inf")}], ids=["loss", "val_loss"])
def test_a_diverged_epoch_is_refused_by_name_and_nothing_of_it_is_booked(run, logs):
    from brainclf.errors import ConfigError
    from brainclf.training import TrainConfig
    from brainclf.training.callbacks import Checkpoints
    from brainclf.training.state import RunState

    config = TrainConfig(architecture="compact_cnn", image_size=32, epochs=5)
    state = RunState(config=config.to_dict(), contract=config.contract().to_dict(), train_files=[], val_files=[],
                     test_files=[], fingerprint={}, started="", epoch=3, best_epoch=2, best_val_loss=0.4, patience=5)
    with pytest.raises(ConfigError, match="diverged in epoch 4: its loss is no longer a number"):
        Checkpoints(state, run).record("epoch 4", 3, logs, {})
    assert (state.epoch, state.history) == (3, {}) and _files(run) == {"last.keras": "epoch 3", "best.keras": "epoch 2"}
