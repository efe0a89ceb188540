"""A site step as the app's background job (brainclf.site.steps): it says how far it is in slices, and a cancel
stops validate and calibrate before anything of the step is saved."""

from __future__ import annotations

import threading

import pytest
from test_site import write_site

from brainclf.serving.jobs import TrainingJobs
from brainclf.site import saved_state, step_job
from brainclf.site.steps import phases, run_step
from brainclf.training.config import TrainingCancelled, TrainProgress


@pytest.fixture(scope="module")
def site_folder(tmp_path_factory):
    return write_site(tmp_path_factory.mktemp("site") / "st-steps")


def _job(step, tmp_path, site_folder, smoke_model, data_root=None, isolated=False):
    """The step's body here (run_step: its hook and cancel act at once), or as the app runs it (step_job: in a
    process of its own)."""
    models = tmp_path / "models"
    models.mkdir(exist_ok=True)
    args = (step, tmp_path / "run", site_folder, "st-steps", smoke_model, 0.9, models, data_root)
    if isolated:
        return step_job(*args)
    return lambda hook, cancel: run_step(*args, hook=hook, cancel=cancel)


def _cancel_on(words: str, cancel: threading.Event, seen: list[TrainProgress]):
    """A progress hook that records what it hears and sets `cancel` once a message starts with `words`."""

    def hook(p: TrainProgress) -> None:
        seen.append(p)
        if p.message.startswith(words):
            cancel.set()

    return hook


def test_validate_reports_its_slices_and_reaches_the_whole_part(tmp_path, site_folder, smoke_model):
    seen: list[TrainProgress] = []
    _job("validate", tmp_path, site_folder, smoke_model)(seen.append, threading.Event())
    validating = [p for p in seen if p.message.startswith("Validating smoke on")]
    assert validating and validating[-1].fraction == 1.0 and validating[-1].stage == "preparing"
    assert validating[-1].text().endswith("(100 %)")
    assert (seen[-1].message, seen[-1].stage) == ("Saving the figures", "evaluating")  # a cancel is refused now
    assert saved_state(tmp_path / "run")["steps"]["validate"]["n"] > 0


def test_the_apps_step_runs_in_a_process_of_its_own_and_reports_there(tmp_path, site_folder, smoke_model):
    seen: list[TrainProgress] = []
    assert _job("validate", tmp_path, site_folder, smoke_model, isolated=True)(seen.append, threading.Event()) == \
        tmp_path / "run"
    assert (seen[-1].message, seen[-1].stage) == ("Saving the figures", "evaluating")
    assert saved_state(tmp_path / "run")["steps"]["validate"]["n"] > 0


def test_a_cancelled_validation_saves_no_figures(tmp_path, site_folder, smoke_model):
    cancel, seen = threading.Event(), []
    # A small part reports once, at its end: the cancel then stops the step as it would save.
    with pytest.raises(TrainingCancelled, match="Cancelled while (validating smoke on|saving the figures).* nothing "
                                                "of this step was saved"):
        _job("validate", tmp_path, site_folder, smoke_model)(_cancel_on("Validating", cancel, seen), cancel)
    assert "validate" not in saved_state(tmp_path / "run")["steps"]  # the split is kept, no figures


def test_the_split_of_a_big_folder_reports_its_slices_and_a_cancel_stops_it_leaving_nothing(tmp_path, site_folder,
                                                                                             smoke_model):
    cancel, seen = threading.Event(), []

    def hook(p: TrainProgress) -> None:
        seen.append(p)
        if p.message.startswith("Splitting") and p.fraction > 0:  # some slices read: the user cancels
            cancel.set()

    with pytest.raises(TrainingCancelled, match="Cancelled while splitting the site's slices by case"):
        _job("validate", tmp_path, site_folder, smoke_model)(hook, cancel)
    assert any(0 < p.fraction < 1 for p in seen if p.message.startswith("Splitting"))
    assert not (tmp_path / "run").exists()  # no split saved, and no folder left behind


def test_a_cancelled_calibration_publishes_no_model(tmp_path, site_folder, smoke_model, synthetic_dataset):
    _job("validate", tmp_path, site_folder, smoke_model)(lambda p: None, threading.Event())
    cancel, seen = threading.Event(), []
    with pytest.raises(TrainingCancelled, match="Cancelled while fitting the site's OOD guard"):
        _job("calibrate", tmp_path, site_folder, smoke_model, synthetic_dataset)(
            _cancel_on("Fitting the site's OOD guard", cancel, seen), cancel)
    fitting = [p for p in seen if p.message.startswith("Fitting the site's temperature")]
    assert fitting[-1].fraction == 1.0 and any(0 < p.fraction < 1 for p in fitting)  # both passes counted as one
    assert not list((tmp_path / "models").iterdir())
    assert "calibrate" not in saved_state(tmp_path / "run")["steps"]


def test_a_calibration_not_cancelled_publishes_its_profile(tmp_path, site_folder, smoke_model, synthetic_dataset):
    _job("validate", tmp_path, site_folder, smoke_model)(lambda p: None, threading.Event())
    seen: list[TrainProgress] = []
    out = _job("calibrate", tmp_path, site_folder, smoke_model, synthetic_dataset)(seen.append, threading.Event())
    assert out.is_file() and out.parent == tmp_path / "models"
    parts = [p.message.split(" on ")[0] for p in seen if p.fraction == 1.0]
    assert parts == ["Fitting the site's temperature and refer rule", "Fitting the site's OOD guard",
                     "Validating the site profile",
                     "Reading the model's own test set (12 images) with the site profile",
                     "Saving the site profile st-steps-smoke"]
    assert seen[-1].stage == "evaluating" and seen[-1].fraction_done() == 1.0  # the bar stays full while it saves
    assert all(p.stage == "preparing" for p in seen[:-1])


def test_the_app_job_of_a_cancelled_validation_ends_cancelled_not_failed(tmp_path, site_folder, smoke_model):
    jobs = TrainingJobs()
    inner = _job("validate", tmp_path, site_folder, smoke_model)

    def work(hook, cancel):
        cancel.set()  # as if the Cancel button was pressed while the split was read
        return inner(hook, cancel)

    jobs.start_task("st-steps: validate", work, owner="u1", run_dir=tmp_path / "run")
    status = jobs.wait(timeout=120)
    assert status.state == "cancelled" and "nothing of this step was saved" in status.error


def test_a_phase_without_slices_reports_no_share():
    heard: list[TrainProgress] = []
    phases(heard.append, None)("Splitting")(0, 0)
    assert heard[0].fraction == 0.0 and heard[0].text() == "Splitting"


@pytest.mark.parametrize("step", ["validate", "adapt"])
def test_a_model_whose_batches_would_not_fit_is_refused_before_the_step_works(tmp_path, site_folder, smoke_model,
                                                                                synthetic_dataset, monkeypatch, step):
    """An uploaded model at a large input size is refused with a message before the step works, rather than
    fail at the job process's memory cap (here the server is made to look small instead)."""
    from brainclf.errors import ConfigError
    from brainclf.training import prepare

    if step == "adapt":
        _job("validate", tmp_path, site_folder, smoke_model)(lambda p: None, threading.Event())
    monkeypatch.setattr(prepare, "physical_memory", lambda: 2**20)  # 1 MiB
    with pytest.raises(ConfigError, match=r"for a batch of (64|32) slices at its input size.*smaller input"):
        _job(step, tmp_path, site_folder, smoke_model, synthetic_dataset)(lambda p: None, threading.Event())
    assert not list((tmp_path / "models").iterdir())
    assert step not in (saved_state(tmp_path / "run") or {}).get("steps", {})
    monkeypatch.undo()
    _job("validate", tmp_path, site_folder, smoke_model)(lambda p: None, threading.Event())  # fits: it runs
    assert "validate" in saved_state(tmp_path / "run")["steps"]
