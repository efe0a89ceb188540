"""A training holds its run folder alone: a second one there (another shell, another app process) is refused
before it writes anything, and goes once the first process has ended, however it ended."""

from __future__ import annotations

import pytest
from test_site_step_lock import held_elsewhere  # noqa: F401  (a fixture)

from brainclf.training import TrainConfig, TrainRequest, train
from brainclf.training.folder_lock import FolderBusy

SMOKE = TrainConfig(architecture="compact_cnn", image_size=32, epochs=1, batch_size=8, early_stopping_patience=5)


def test_a_second_training_in_a_held_run_folder_is_refused_before_writing(synthetic_dataset, tmp_path,
                                                                          held_elsewhere):  # noqa: F811
    run_dir = tmp_path / "runs" / "mine"
    holder = held_elsewhere(run_dir)
    request = TrainRequest(SMOKE, data=synthetic_dataset, name="mine", models_dir=tmp_path / "models",
                           run_dir=run_dir)
    with pytest.raises(FolderBusy, match="A training is running in .*mine .*nothing was done"):
        train(request)
    assert not (run_dir / "state.json").exists()
    holder.kill()
    holder.wait()
    assert train(request) == tmp_path / "models" / "mine.keras"
    assert (run_dir / "state.json").exists()


def test_a_new_start_in_the_app_never_sets_aside_a_run_another_process_trains(smoke_run, synthetic_dataset, tmp_path,
                                                                               held_elsewhere):  # noqa: F811
    import shutil
    from dataclasses import replace

    from brainclf.serving.jobs import set_aside_other_run

    run = tmp_path / "runs" / "mine"
    shutil.copytree(smoke_run[1], run)
    held_elsewhere(run)
    with pytest.raises(FolderBusy, match="A training is running in mine .*nothing was started"):
        set_aside_other_run(run, replace(SMOKE, epochs=3))  # other settings: it would be set aside
    assert (run / "state.json").is_file() and [p.name for p in run.parent.iterdir()] == ["mine"]


def test_a_request_refused_inside_a_folder_it_made_leaves_no_folder(tmp_path):
    from brainclf.training.folder_lock import held_alone

    with pytest.raises(ValueError):
        with held_alone(tmp_path / "new", "busy"):
            raise ValueError("refused")
    assert not (tmp_path / "new").exists()
    (tmp_path / "kept").mkdir()
    with pytest.raises(ValueError):
        with held_alone(tmp_path / "kept", "busy"):
            raise ValueError("refused")
    assert (tmp_path / "kept").is_dir()  # not one it made
