"""A training while it prepares: a cancel reaches it (hashing for near-duplicates, decoding images), not only once
its epochs run: it stops at the next image, before any epoch; images it cannot read are left out and said, and a
part with none readable is refused."""

from __future__ import annotations

import threading

import pytest

from brainclf.training import TrainConfig, TrainingCancelled, TrainRequest, train


def test_a_cancel_during_preparation_stops_before_any_epoch(synthetic_dataset, tmp_path):
    cancel, said = threading.Event(), []

    def progress(p):
        said.append(p.stage)
        if p.stage == "preparing":
            cancel.set()  # the user clicks Cancel as soon as the preparation shows

    request = TrainRequest(TrainConfig(architecture="compact_cnn", image_size=32, epochs=2, batch_size=8),
                           data=synthetic_dataset, name="prep", models_dir=tmp_path / "models",
                           run_dir=tmp_path / "run", progress=progress, cancel=cancel)
    with pytest.raises(TrainingCancelled, match="while preparing its images, before any epoch"):
        train(request)
    assert "training" not in said and not (tmp_path / "models" / "prep.keras").exists()


def test_unreadable_images_are_said_and_a_validation_part_with_none_readable_is_refused(synthetic_dataset, tmp_path):
    from brainclf.data import Sample
    from brainclf.errors import DataError
    from brainclf.input.preprocess import InputContract
    from brainclf.training.prepare import Preparation, load_training_arrays

    good = [Sample(p, 0) for p in sorted((synthetic_dataset / "Training" / "glioma").glob("*.png"))[:4]]
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a picture")
    said = []
    prep = Preparation(lambda stage, message, fraction: said.append(message))
    arrays = load_training_arrays(good[:2] + [Sample(broken, 0)], good[2:], InputContract(size=32), [], prep, 0.0)
    assert len(arrays.x_tr) == 2 and any(m.startswith("1 of 5 images could not be read and are left out")
                                         for m in said)
    with pytest.raises(DataError, match="None of the 1 validation images could be read"):
        load_training_arrays(good, [Sample(broken, 0)], InputContract(size=32), [], prep, 0.0)


def test_a_run_whose_images_would_not_fit_saves_no_state_to_resume(synthetic_dataset, tmp_path, monkeypatch):
    from brainclf.errors import ConfigError
    from brainclf.training import prepare

    monkeypatch.setattr(prepare, "physical_memory", lambda: 2**20)  # a 1 MiB machine
    request = TrainRequest(TrainConfig(architecture="compact_cnn", image_size=32, epochs=2, batch_size=8),
                           data=synthetic_dataset, name="big", models_dir=tmp_path / "models", run_dir=tmp_path / "run")
    with pytest.raises(ConfigError, match="would hold about"):
        train(request)
    assert not (tmp_path / "run").exists()  # no state: nothing offers a Resume that always fails
