"""brainclf.training.state: RunState reads the state.json of runs saved before it existed, writes the same
JSON back, and saves atomically."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from brainclf.errors import ConfigError, DataError
from brainclf.training import TrainConfig
from brainclf.training.state import RunState, saved_state

SMOKE = TrainConfig(image_size=32, epochs=1, batch_size=8, early_stopping_patience=5)

# A single run's state.json as brainclf/train.py wrote it (the dict it kept in memory, dumped as it was).
OLD_SINGLE = {
    "config": SMOKE.to_dict(), "contract": {"size": 32, "channels": 1, "padding": "centre-black",
                                            "resample": "bilinear"},
    "train_files": ["Training/glioma/a.png"], "val_files": ["Training/glioma/b.png"],
    "test_files": ["Testing/glioma/c.png"], "external_test_files": {},
    "sources": [{"name": "brain-mri", "weight": 1.0, "licence": "", "primary": True}],
    "fingerprint": {"root_name": "brain-mri", "counts": {}, "file_list_sha256": "0" * 64},
    "epoch": 3, "best_epoch": 2, "best_val_loss": 0.41, "patience": 5, "stopped_early": False,
    "history": {"loss": [1.0, 0.8, 0.7], "val_loss": [0.9, 0.41, 0.5]}, "train_seconds": 12.5,
    "started": "2026-01-01T00:00:00+0000", "distribution": {"strategy": "default", "workers": 1, "replicas": 1},
}
# An ensemble's combined state: no patience or best_val_loss, a stopped_reason, members and a null distribution.
OLD_ENSEMBLE = {
    **{k: v for k, v in OLD_SINGLE.items() if k not in ("patience", "best_val_loss", "distribution")},
    "stopped_reason": "", "distribution": None,
    "members": [{"run_dir": "runs/e/member0", "seed": 42, "epochs_run": 3, "best_epoch": 2,
                 "best_val_loss": 0.41, "train_seconds": 12.5, "history": {}}],
}


def test_an_old_single_run_state_round_trips_unchanged():
    state = RunState.from_dict(json.loads(json.dumps(OLD_SINGLE)))
    assert state.epoch == 3 and state.best_val_loss == 0.41 and state.patience == 5 and state.extra == {}
    assert state.to_dict() == OLD_SINGLE


def test_an_old_ensemble_state_round_trips_without_inventing_keys():
    out = RunState.from_dict(OLD_ENSEMBLE).to_dict()
    assert out == {k: v for k, v in OLD_ENSEMBLE.items() if k != "distribution"}  # null and absent read alike
    assert "patience" not in out and "best_val_loss" not in out and out["stopped_reason"] == ""


def test_unknown_keys_are_kept():
    state = RunState.from_dict({**OLD_SINGLE, "added_later": {"x": 1}})
    assert state.extra == {"added_later": {"x": 1}}
    assert state.to_dict()["added_later"] == {"x": 1}


def test_an_incomplete_state_is_a_data_error():
    with pytest.raises(DataError, match="incomplete"):
        RunState.from_dict({k: v for k, v in OLD_SINGLE.items() if k != "train_files"})


def test_save_and_load_round_trip_with_an_infinite_best_loss(tmp_path):
    state = RunState.from_dict({**OLD_SINGLE, "epoch": 0, "best_val_loss": float("inf")})
    state.save(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json"]  # no temporary file left
    loaded = RunState.load(tmp_path)
    assert loaded == state and math.isinf(loaded.best_val_loss)
    assert RunState.load(tmp_path / "nowhere") is None


def test_a_save_that_dies_half_way_keeps_the_previous_state(tmp_path, monkeypatch):
    RunState.from_dict(OLD_SINGLE).save(tmp_path)
    before = (tmp_path / "state.json").read_text()
    newer = RunState.from_dict({**OLD_SINGLE, "epoch": 4})

    def dying_write(self, text, *args, **kwargs):  # a kill or a full disk in the middle of the write
        Path.write_bytes(self, text[:20].encode())
        raise OSError("No space left on device")

    monkeypatch.setattr(Path, "write_text", dying_write)
    with pytest.raises(OSError):
        newer.save(tmp_path)
    monkeypatch.undo()
    assert (tmp_path / "state.json").read_text() == before
    assert RunState.load(tmp_path).epoch == 3


def test_stop_and_finished():
    state = RunState.from_dict(OLD_SINGLE)
    assert not state.finished(epochs=5) and state.finished(epochs=3)
    state.stop("finished on request after 3 of 5 epochs")
    assert state.finished(epochs=5) and state.to_dict()["stopped_reason"].startswith("finished on request")
    state = RunState.from_dict(OLD_SINGLE)
    state.stop()
    assert state.stopped_early and "stopped_reason" not in state.to_dict()


def test_saved_state_refuses_another_config_and_ignores_the_state_without_resume(tmp_path):
    RunState.from_dict(OLD_SINGLE).save(tmp_path)
    assert saved_state(tmp_path, SMOKE, resume=True).epoch == 3
    assert saved_state(tmp_path, SMOKE, resume=False) is None
    with pytest.raises(ConfigError, match="different config"):
        saved_state(tmp_path, TrainConfig(image_size=32, epochs=2, batch_size=8), resume=True)


@pytest.mark.parametrize("edit,field", [({"epoch": "5"}, "epoch"), ({"epoch": -1}, "epoch"), ({"epoch": True}, "epoch"),
                                        ({"history": []}, "history"), ({"history": {"loss": ["x"]}}, "history"),
                                        ({"train_files": "a.png"}, "train_files"), ({"config": []}, "config"),
                                        ({"best_val_loss": "0.4"}, "best_val_loss")])
def test_a_hand_edited_state_is_a_data_error_naming_the_field(edit, field):
    with pytest.raises(DataError, match=rf"run state's {field} is not what a run saves.*--no-resume"):
        RunState.from_dict({**OLD_SINGLE, **edit})


def test_a_state_whose_contract_differs_from_its_settings_is_refused(tmp_path):
    """Finalising builds, evaluates and describes the model with the state's contract: one edited to crop to the
    head would ship a model trained without that crop under a card that says it crops."""
    RunState.from_dict({**OLD_SINGLE, "contract": {**OLD_SINGLE["contract"], "crop": "head"}}).save(tmp_path)
    with pytest.raises(DataError, match="another input contract than its settings give"):
        saved_state(tmp_path, SMOKE, resume=True)


def test_writers_of_one_state_at_once_never_leave_it_broken_or_fail(tmp_path):
    import threading

    from brainclf.files import write_json_atomically

    path, failures = tmp_path / "state.json", []

    def write(k):
        try:
            for i in range(200):
                write_json_atomically(path, {"writer": k, "i": i, "pad": "x" * 5000})
        except OSError as e:  # one shared temporary name: the other writer renamed it away
            failures.append(e)

    writers = [threading.Thread(target=write, args=(k,)) for k in range(2)]
    for t in writers:
        t.start()
    for t in writers:
        t.join()
    assert failures == []
    assert json.loads(path.read_text())["i"] == 199
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]  # no temporary file left behind
