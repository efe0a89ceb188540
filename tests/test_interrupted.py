"""After a server restart the app's job list is empty, but a user's run folders still hold their finished epochs:
the Model page lists that user's interrupted trainings (nobody else's) and resumes one with the settings, data
folder and other sources its state records."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace

import pytest
from test_access_pages import app_as, cancelled_job, foreign_job, run_page, server_settings, signed_in  # noqa: F401, E501 - fixtures
from test_training_form import two_sources  # noqa: F401 - the fixture

from brainclf.errors import BrainclfError
from brainclf.serving import interrupted_runs, owner_run_dir, resume_interrupted
from brainclf.serving.jobs import JobStatus, TrainingJobs


def interrupt(smoke_run, runs_root, owner: str, name: str, epochs: int = 3):
    """A copy of the smoke run as `owner`'s run `name`, one of `epochs` epochs finished."""
    run = owner_run_dir(runs_root, owner, name)
    shutil.copytree(smoke_run[1], run)
    state = json.loads((run / "state.json").read_text())
    state["config"]["epochs"] = epochs
    (run / "state.json").write_text(json.dumps(state))
    return run


def test_only_unfinished_readable_runs_of_the_user_are_listed(smoke_run, tmp_path, synthetic_dataset):
    interrupt(smoke_run, tmp_path, "sub:alice", "half_done")
    interrupt(smoke_run, tmp_path, "sub:alice", "finished", epochs=1)
    interrupt(smoke_run, tmp_path, "sub:bob", "bobs")
    broken = interrupt(smoke_run, tmp_path, "sub:alice", "broken")
    (broken / "state.json").write_text("{")
    interrupt(smoke_run, tmp_path, "sub:alice", "old.set-aside-20261206-101010-abc123")
    (run,) = interrupted_runs(tmp_path, "sub:alice")
    assert (run.name, run.epoch, run.config.epochs, run.extra) == ("half_done", 1, 3, [])
    assert run.data == synthetic_dataset.name  # the data folder's name, as its state records it
    assert [r.name for r in interrupted_runs(tmp_path, "sub:bob")] == ["bobs"]
    assert interrupted_runs(tmp_path, "sub:nobody") == []
    current = JobStatus(name="half_done", state="cancelled", run_dir=run.run_dir)
    assert interrupted_runs(tmp_path, "sub:alice", current=current) == []  # shown beside its own status instead


def test_resuming_starts_the_recorded_settings_on_the_recorded_folders(smoke_run, tmp_path, synthetic_dataset,
                                                                       monkeypatch):
    interrupt(smoke_run, tmp_path, "sub:alice", "half_done")
    (run,) = interrupted_runs(tmp_path, "sub:alice")
    started = []
    monkeypatch.setattr(TrainingJobs, "start_task", lambda self, name, work, *a, **kw: started.append(kw["request"]))
    resume_interrupted(TrainingJobs(), run, [synthetic_dataset], tmp_path / "models", "sub:alice")
    assert started[0]["config"] == run.config and started[0]["data"] == synthetic_dataset
    with pytest.raises(BrainclfError, match="no longer offers"):
        resume_interrupted(TrainingJobs(), replace(run, extra=[("gone-hospital", 2.0)]), [synthetic_dataset],
                           tmp_path / "models", "sub:alice")


def test_the_model_page_offers_the_users_interrupted_training_and_resumes_it(two_sources, smoke_run,  # noqa: F811
                                                                           tmp_path):
    _, _, started = two_sources
    interrupt(smoke_run, tmp_path / "runs", "sub:sub-researcher", "half_done")
    at = run_page(app_as(signed_in("researcher")), "model")
    assert any("half_done: 1 of 3 epochs" in t.value for t in at.text)
    at.button(key="resume_interrupted_half_done").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert [job["name"] for job in started] == ["half_done"]


def test_a_state_of_an_architecture_this_version_does_not_know_is_skipped(smoke_run, tmp_path):
    run = interrupt(smoke_run, tmp_path, "sub:alice", "from_the_future")
    state = json.loads((run / "state.json").read_text())
    state["config"]["architecture"] = "vit_from_a_newer_version"
    (run / "state.json").write_text(json.dumps(state))
    interrupt(smoke_run, tmp_path, "sub:alice", "half_done")
    assert [r.name for r in interrupted_runs(tmp_path, "sub:alice")] == ["half_done"]


def test_nobody_else_takes_the_name_of_a_users_unfinished_training(smoke_run, tmp_path):
    """A review: once another job had run, alice's resumable run no longer held its name, so bob could upload or
    train a model of that name and alice's Resume was refused for good ('already exists')."""
    from brainclf.serving import name_in_use

    interrupt(smoke_run, tmp_path, "sub:alice", "tumour_v2")
    interrupt(smoke_run, tmp_path, "sub:alice", "done_v1", epochs=1)  # finished: its name is the model's own
    jobs = TrainingJobs()
    assert "unfinished training named tumour_v2 can still be resumed" in name_in_use(jobs, tmp_path, "tumour_v2")
    assert name_in_use(jobs, tmp_path, "tumour_v2", owner="sub:bob")  # bob's training, another user's name
    assert name_in_use(jobs, tmp_path, "tumour_v2", owner="sub:alice") is None  # alice may start it afresh
    assert name_in_use(jobs, tmp_path, "done_v1") is None and name_in_use(jobs, tmp_path, "new") is None
    assert name_in_use(jobs, tmp_path, "../x") is None and name_in_use(jobs, tmp_path / "none", "tumour_v2") is None


def test_a_discarded_run_is_set_aside_whole_and_frees_its_name(smoke_run, tmp_path):
    from brainclf.serving import discard_interrupted, name_in_use

    run_dir = interrupt(smoke_run, tmp_path, "sub:alice", "tumour_v2")
    interrupt(smoke_run, tmp_path, "sub:bob", "bobs")
    assert sorted(r.name for r in interrupted_runs(tmp_path, None)) == ["bobs", "tumour_v2"]  # an admin's list
    (run,) = interrupted_runs(tmp_path, "sub:alice")
    jobs = TrainingJobs()
    jobs.status = JobStatus(name="tumour_v2", state="running", run_dir=run_dir)
    with pytest.raises(BrainclfError, match="is running: cancel it first; nothing was discarded"):
        discard_interrupted(run.name, run.run_dir, jobs)
    jobs.status.state = "cancelled"
    aside = discard_interrupted(run.name, run.run_dir, jobs, by="sub:admin")
    assert not run_dir.exists() and (aside / "state.json").is_file() and aside.name.endswith("-discarded")
    assert interrupted_runs(tmp_path, "sub:alice") == [] and name_in_use(jobs, tmp_path, "tumour_v2") is None
    assert [r.name for r in interrupted_runs(tmp_path, None)] == ["bobs"]


def test_the_model_page_discards_the_users_unfinished_training(two_sources, smoke_run, tmp_path):  # noqa: F811
    run_dir = interrupt(smoke_run, tmp_path / "runs", "sub:sub-researcher", "half_done")
    at = run_page(app_as(signed_in("researcher")), "model")
    at.button(key="discard_interrupted_half_done").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert not run_dir.exists() and not any("half_done: 1 of 3 epochs" in t.value for t in at.text)


def test_an_admin_sees_other_users_unfinished_trainings_and_may_set_one_aside(server_settings, smoke_run, tmp_path,  # noqa: F811
                                                                               monkeypatch):
    runs = tmp_path / "runs"
    monkeypatch.setenv("BRAINCLF_RUNS", str(runs))
    run_dir = interrupt(smoke_run, runs, "sub:alice", "held_name")
    at = run_page(app_as(signed_in("admin")), "model")
    (listed,) = [e for e in at.expander if e.label.startswith("Other users' unfinished trainings (1)")]
    at.button(key=f"discard_other_{run_dir.parent.name}_held_name").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert not run_dir.exists() and not any(e.label.startswith("Other users'") for e in at.expander)
    at = run_page(app_as(signed_in("researcher")), "model")
    assert not any(e.label.startswith("Other users'") for e in at.expander)  # admins only


def test_discarding_a_run_already_gone_says_so(smoke_run, tmp_path):
    import shutil as sh

    from brainclf.serving import discard_interrupted

    run_dir = interrupt(smoke_run, tmp_path, "sub:alice", "twice")
    (run,) = interrupted_runs(tmp_path, "sub:alice")
    sh.rmtree(run_dir)  # another tab discarded it first
    with pytest.raises(BrainclfError, match="no longer there"):
        discard_interrupted(run.name, run.run_dir, TrainingJobs())
    assert not run_dir.exists() and [p.name for p in run_dir.parent.iterdir()] == []  # nothing made, nothing moved


def test_a_run_trained_to_the_end_whose_model_was_never_saved_is_offered_to_save_and_holds_its_name(
        smoke_run, synthetic_dataset, tmp_path):
    from brainclf.serving import name_in_use
    from brainclf.training import TrainRequest, train

    saved = json.loads((smoke_run[1] / "state.json").read_text())
    assert saved["published"]  # the smoke run saved its model, and says when
    run_dir = interrupt(smoke_run, tmp_path / "runs", "sub:alice", "unsaved", epochs=1)
    state = json.loads((run_dir / "state.json").read_text())
    (run_dir / "state.json").write_text(json.dumps({**state, "published": ""}))  # the final evaluation failed
    (run,) = interrupted_runs(tmp_path / "runs", "sub:alice")
    assert (run.name, run.to_save) == ("unsaved", True)
    assert name_in_use(TrainingJobs(), tmp_path / "runs", "unsaved")  # its model will take the name
    out = train(TrainRequest(run.config, data=synthetic_dataset, name="unsaved", models_dir=tmp_path / "models",
                             run_dir=run_dir))
    assert out.is_file() and interrupted_runs(tmp_path / "runs", "sub:alice") == []  # saved: nothing to offer
    del state["published"]  # a state from before saves were recorded: finished counts as saved
    (run_dir / "state.json").write_text(json.dumps(state))
    assert interrupted_runs(tmp_path / "runs", "sub:alice") == []


def test_a_command_line_run_in_the_runs_folder_is_on_the_admins_list(smoke_run, tmp_path):
    shutil.copytree(smoke_run[1], tmp_path / "cli_run")  # RUNS/NAME: where `train` keeps it
    state = json.loads((tmp_path / "cli_run" / "state.json").read_text())
    (tmp_path / "cli_run" / "state.json").write_text(json.dumps({**state, "config": {**state["config"], "epochs": 3}}))
    interrupt(smoke_run, tmp_path, "sub:alice", "apps")
    assert sorted(r.name for r in interrupted_runs(tmp_path, None)) == ["apps", "cli_run"]


def test_the_cancelled_training_beside_its_status_can_be_discarded(server_settings, cancelled_job):  # noqa: F811
    jobs, _ = cancelled_job
    run_dir = jobs.status.run_dir
    at = run_page(app_as(signed_in("researcher")), "model")
    at.button(key=f"discard_train_{jobs.status.started}").click().run()
    assert not at.exception and not run_dir.exists()
    assert not jobs.holds_name("mine")  # its name is free at once
