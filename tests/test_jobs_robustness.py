"""The app's training and model files when something is off: a run state this version cannot read, an
ensemble's members saved with other settings, a copy that fails half-way, two removals in one second, a name a
running training will take, a cancel during the final evaluation, and a training too large for the machine."""

from __future__ import annotations

import errno
import json
import shutil

import pytest

from brainclf.errors import BrainclfError, ConfigError, ModelError
from brainclf.input.preprocess import InputContract
from brainclf.model.model_files import publish_model, remove_model
from brainclf.serving import JobStatus, TrainingJobs
from brainclf.serving.jobs import set_aside_other_run
from brainclf.training import TrainConfig, TrainProgress
from brainclf.training.prepare import check_training_memory

CONFIG = TrainConfig(architecture="compact_cnn", image_size=32, epochs=1, batch_size=8, early_stopping_patience=5)


@pytest.mark.parametrize("state", ["", "[1, 2]", '{"epoch": 1}', "not json"], ids=["empty", "list", "keys", "text"])
def test_an_unreadable_run_state_is_set_aside_and_never_resumable(tmp_path, state):
    run = tmp_path / "mine"
    run.mkdir()
    (run / "state.json").write_text(state)
    status = JobStatus(name="mine", state="failed", run_dir=run, request={"config": CONFIG})
    assert status.resumable() is False  # asked every second by the page: never raises
    aside = set_aside_other_run(run, CONFIG)
    assert aside is not None and (aside / "state.json").read_text() == state and not run.exists()


def test_a_state_with_a_setting_this_version_does_not_know_is_set_aside(smoke_run, tmp_path):
    run = shutil.copytree(smoke_run[1], tmp_path / "mine")
    data = json.loads((run / "state.json").read_text())
    data["config"]["knob_from_a_newer_version"] = 1
    (run / "state.json").write_text(json.dumps(data))
    assert JobStatus(name="mine", state="failed", run_dir=run, request={"config": CONFIG}).resumable() is False
    assert set_aside_other_run(run, CONFIG) is not None


def test_an_ensembles_members_saved_with_other_settings_are_set_aside(smoke_run, tmp_path):
    run = tmp_path / "ens"
    shutil.copytree(smoke_run[1], run / "member0")  # a member of a single compact_cnn's settings
    ensemble = TrainConfig(architecture="compact_cnn_x2", image_size=32, epochs=1, batch_size=8)
    assert set_aside_other_run(run, ensemble) is not None and not run.exists()
    shutil.copytree(smoke_run[1], run / "member0")
    assert set_aside_other_run(run, CONFIG) is not None  # members, and now a single model
    assert set_aside_other_run(tmp_path / "nothing-here", CONFIG) is None


def test_a_copy_that_fails_leaves_nothing_under_the_name(tmp_path, monkeypatch):
    models = tmp_path / "models"
    models.mkdir()
    model, card = tmp_path / "staged.keras", tmp_path / "staged.json"
    model.write_bytes(b"x" * 1000)
    card.write_text("{}")

    def no_links(*_):
        raise OSError(errno.EXDEV, "no hard links here")

    def disk_full(src, out):
        out.write(src.read(10))
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("os.link", no_links)
    real_copy = shutil.copyfileobj
    calls = []

    def copy_then_fail(src, out):
        calls.append(1)
        return real_copy(src, out) if len(calls) == 1 else disk_full(src, out)  # the card copies, the model fails

    monkeypatch.setattr("shutil.copyfileobj", copy_then_fail)
    with pytest.raises(ModelError, match="could not be saved.*No space left"):
        publish_model(model, card, models / "m.keras")
    assert list(models.iterdir()) == []


def test_removing_a_name_twice_in_one_second_moves_each_aside(tmp_path):
    models = tmp_path / "models"
    models.mkdir()
    for _ in range(2):  # remove, add again, remove: within one second
        (models / "m.keras").write_bytes(b"x")
        (models / "m.json").write_text("{}")
        remove_model(models / "m.keras", models)
    assert len(list((models / ".removed").iterdir())) == 2 and not (models / "m.keras").exists()
    with pytest.raises(ModelError, match="no model named m"):
        remove_model(models / "m.keras", models)


def test_a_running_or_resumable_training_holds_its_name(smoke_run, tmp_path):
    jobs = TrainingJobs()
    assert not jobs.holds_name("mine")
    jobs.status = JobStatus(name="mine", state="running", owner="me")
    assert jobs.holds_name("mine") and not jobs.holds_name("other")
    run = shutil.copytree(smoke_run[1], tmp_path / "mine")
    jobs.status = JobStatus(name="mine", state="cancelled", run_dir=run, request={"config": CONFIG})
    assert jobs.holds_name("mine")
    jobs.status = JobStatus(name="mine", state="done")
    assert not jobs.holds_name("mine")


def test_the_final_evaluation_cannot_be_cancelled_part_way():
    jobs = TrainingJobs()
    jobs.status = JobStatus(name="mine", state="running", owner="me",
                            progress=TrainProgress("evaluating", message="Evaluating the best checkpoint"))
    with pytest.raises(BrainclfError, match="mine is in its final step, which saves its results"):
        jobs.cancel("me")
    jobs.status.progress = TrainProgress("training", epoch=1, epochs=3)
    jobs.cancel("me")  # while training, the owner may


def test_a_cancel_or_resume_for_a_job_that_has_ended_never_reaches_the_next_one():
    jobs = TrainingJobs()
    shown = JobStatus(name="theirs", state="running", owner="me", started=100.0)
    jobs.status = JobStatus(name="next", state="running", owner="me", started=200.0)  # started since the page drew
    with pytest.raises(BrainclfError, match="another has started since this page was drawn; nothing was cancelled"):
        jobs.cancel("me", started=shown.started)
    assert not jobs._cancel.is_set()
    jobs.status.state = "cancelled"
    with pytest.raises(BrainclfError, match="nothing was resumed"):
        jobs.resume("me", started=shown.started)
    jobs.status.state = "running"
    jobs.cancel("me", started=200.0)  # the job shown: cancelled
    assert jobs._cancel.is_set()


def test_a_training_too_large_for_the_machine_is_refused_before_decoding():
    contract = InputContract(size=512, channels=3)
    with pytest.raises(ConfigError, match=r"about 61\.4 GiB.*6989 images at 512 px, 3 channel.*use 8\.0 GiB"):
        check_training_memory(6989, contract, available=16 * 2**30)
    check_training_memory(6989, InputContract(size=160, channels=1), available=16 * 2**30)


def test_a_batch_too_large_for_the_machine_is_refused_before_decoding():
    """The form allows 512 px and batches of 512: compact_cnn_wide's layer outputs at that size would take ~90 GiB
    per step: the refusal, saying what to lower, comes before the job process's memory cap would stop it."""
    from brainclf.model.architectures import activations_per_image, build_model

    small, large = InputContract(size=128, channels=1), InputContract(size=512, channels=1)
    per_image = activations_per_image(build_model("compact_cnn_wide", large))
    assert per_image > 10 * activations_per_image(build_model("compact_cnn_wide", small))  # grows with size^2
    with pytest.raises(ConfigError, match=r"GiB for each batch of 512.*smaller input size or batch"):
        check_training_memory(100, large, available=16 * 2**30, batch_size=512, activations=per_image)
    check_training_memory(100, large, available=16 * 2**30, batch_size=8, activations=per_image)


def test_the_form_s_largest_batch_fails_as_a_job_with_that_message_not_a_crash(tmp_path, synthetic_dataset):
    from brainclf.serving import TrainingJobs
    from brainclf.training import TrainConfig

    jobs = TrainingJobs()
    config = TrainConfig(architecture="compact_cnn_wide", image_size=1024, batch_size=512, epochs=1)
    jobs.start(config, synthetic_dataset, "too_big", models_dir=tmp_path / "models", run_dir=tmp_path / "run")
    status = jobs.wait(300)
    assert status.state == "failed" and "for each batch of 512" in status.error
    assert not (tmp_path / "models" / "too_big.keras").exists()


def test_activations_are_counted_inside_nested_models_and_without_fixed_sizes():
    """An uploaded model may wrap its backbone in a sub-model (whose own output alone is small) or leave its
    input size open: the count goes inside, and an open size counts as one rather than failing."""
    import keras
    import numpy as np

    from brainclf.model.architectures import activations_per_image, build_model

    backbone = build_model("compact_cnn_wide")
    inputs = keras.Input((128, 128, 1))
    wrapped = keras.Model(inputs, backbone(inputs))
    assert activations_per_image(wrapped) >= activations_per_image(backbone)  # not just its 4 outputs
    assert activations_per_image(backbone, largest=True) == max(
        int(np.prod(layer.output.shape[1:])) for layer in backbone.layers)
    open_size = keras.Model(i := keras.Input((None, None, 1)), keras.layers.Conv2D(4, 3)(i))
    assert activations_per_image(open_size) == 1 + 4
