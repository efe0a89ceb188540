"""Training checkpoints (best.keras, last.keras) are written to a temporary file and renamed: a save that dies
half-way leaves the previous checkpoint intact, never a truncated one."""

from __future__ import annotations

import time
import zipfile

import numpy as np
import pytest


def epoch_end_callback(run_dir):
    """The training callback around a tiny compiled model (no dataset, no fit), as train() builds it."""
    import keras

    from brainclf.training.callbacks import Checkpoints, EpochEnd, FitCallback, ProgressReport, SourceBalancedValidation
    from brainclf.training.state import RunState

    model = keras.Sequential([keras.Input((4, 4, 1)), keras.layers.Flatten(), keras.layers.Dense(4, "softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    rng = np.random.default_rng(0)
    x = rng.random((8, 4, 4, 1), np.float32)
    state = RunState(config={}, contract={}, train_files=[], val_files=[], test_files=[], fingerprint={},
                     started="", best_val_loss=float("inf"), patience=5)
    end = EpochEnd(SourceBalancedValidation(x_recal=x, x_va=x, y_va=np.arange(8) % 4, va_source=np.array([""] * 8)),
                   Checkpoints(state, run_dir), ProgressReport(None, epochs=3, batches=1, t0=time.time()))
    cb = FitCallback(end, None)
    cb.set_model(model)
    return cb, model


def test_checkpoints_are_complete_and_no_temporary_file_is_left(tmp_path):
    cb, _ = epoch_end_callback(tmp_path)
    cb.on_epoch_end(0, {"loss": 1.0, "accuracy": 0.5})
    for name in ("best.keras", "last.keras"):
        with zipfile.ZipFile(tmp_path / name) as zf:
            assert "config.json" in zf.namelist() and zf.testzip() is None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.keras", "last.keras", "state.json"]


def test_a_save_that_dies_half_way_keeps_the_previous_checkpoints(tmp_path, monkeypatch):
    cb, model = epoch_end_callback(tmp_path)
    (tmp_path / "best.keras").write_bytes(b"previous best")
    (tmp_path / "last.keras").write_bytes(b"previous last")
    written = []

    def dying_save(self, filepath, *args, **kwargs):  # a kill or a full disk in the middle of the write
        written.append(filepath.name)
        filepath.write_bytes(b"PK\x03\x04 half a zip")
        raise OSError("No space left on device")

    monkeypatch.setattr(type(model), "save", dying_save)
    with pytest.raises(OSError, match="No space left"):
        cb.on_epoch_end(0, {"loss": 1.0, "accuracy": 0.5})
    assert written and all(name not in ("best.keras", "last.keras") for name in written)
    assert (tmp_path / "best.keras").read_bytes() == b"previous best"
    assert (tmp_path / "last.keras").read_bytes() == b"previous last"


def test_the_best_checkpoint_is_chosen_on_the_temperature_scaled_validation_loss(tmp_path):
    cb, _ = epoch_end_callback(tmp_path)
    cb.on_epoch_end(0, {"loss": 1.0, "accuracy": 0.5})
    import json

    state = json.loads((tmp_path / "state.json").read_text())
    h = state["history"]
    assert state["best_val_loss"] == h["val_loss_calibrated"][0]
    assert h["val_loss_calibrated"][0] <= h["val_loss"][0] + 1e-9  # scaling by T = 1 is among the choices
