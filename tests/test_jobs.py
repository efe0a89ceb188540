"""brainclf.serving.jobs: background training for the app, one job at a time, cancellable."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import pytest

from brainclf.errors import BrainclfError, ConfigError
from brainclf.serving import JobStatus, TrainingJobs
from brainclf.training import TrainConfig


@pytest.fixture(autouse=True)
def isolated_runs(tmp_path, monkeypatch):
    """train() puts its run folder under $BRAINCLF_RUNS: keep it out of the repo."""
    monkeypatch.setenv("BRAINCLF_RUNS", str(tmp_path / "runs"))
    return tmp_path / "runs"


def tiny(**kw) -> TrainConfig:
    return TrainConfig(**{"image_size": 32, "epochs": 1, "batch_size": 8, **kw})


def test_job_runs_to_done(synthetic_dataset, tmp_path, isolated_runs):
    jobs = TrainingJobs()
    assert not jobs.busy() and jobs.wait() is None
    seen = []
    status = jobs.start(tiny(), synthetic_dataset, "jobtest", models_dir=tmp_path / "models")
    assert isinstance(status, JobStatus) and status.name == "jobtest"
    assert jobs.status is status
    while status.active:  # watch it from the "script thread" as the app does
        seen.append(status.state)
        time.sleep(0.05)
        if time.time() - status.started > 300:
            break
    final = jobs.wait(timeout=300)
    assert final is status
    assert status.state == "done", status.error
    assert not jobs.busy() and status.error == ""
    assert status.result == tmp_path / "models" / "jobtest.keras"
    assert status.result.is_file() and status.result.with_suffix(".json").is_file()
    assert (isolated_runs / "jobtest" / "state.json").is_file()
    assert "running" in seen
    assert status.progress is not None and status.progress.stage == "done"


def test_second_start_refused_and_only_the_owner_cancels(synthetic_dataset, tmp_path):
    jobs = TrainingJobs()
    status = jobs.start(tiny(epochs=50), synthetic_dataset, "long", models_dir=tmp_path / "models",
                        owner="sub:alice", owner_label="Alice")
    assert jobs.busy() and status.owner == "sub:alice" and status.owner_label == "Alice"
    with pytest.raises(BrainclfError, match="already running"):
        jobs.start(tiny(), synthetic_dataset, "other", models_dir=tmp_path / "models")
    assert jobs.status is status  # the refused start did not replace the running job
    for intruder in ("sub:bob", "", "Alice"):
        with pytest.raises(BrainclfError, match="Only the person who started"):
            jobs.cancel(intruder)
    time.sleep(0.5)
    assert status.active, "a refused cancel must not stop the training"
    jobs.cancel("sub:alice")
    final = jobs.wait(timeout=300)
    assert final.state == "cancelled", final.error
    assert "cancelled" in final.error.lower()
    assert not jobs.busy()
    assert not (tmp_path / "models" / "long.keras").exists()
    assert not (tmp_path / "models" / "other.keras").exists()


def test_bad_config_raises_in_caller(synthetic_dataset, tmp_path):
    jobs = TrainingJobs()
    with pytest.raises(ConfigError):
        jobs.start(tiny(architecture="nope"), synthetic_dataset, "bad", models_dir=tmp_path / "models")
    with pytest.raises(ConfigError):
        jobs.start(tiny(epochs=0), synthetic_dataset, "bad", models_dir=tmp_path / "models")
    assert jobs.status is None and not jobs.busy()


def test_owner_or_admin_may_cancel():
    status = JobStatus(name="x", owner="sub:alice")
    assert status.may_cancel("sub:alice") and status.may_cancel("sub:bob", admin=True)
    assert not status.may_cancel("sub:bob") and not status.may_cancel("")
    assert not JobStatus(name="y").may_cancel("")  # a job without an owner: admins only


def test_admin_cancels_anyones_training(synthetic_dataset, tmp_path):
    jobs = TrainingJobs()
    jobs.start(tiny(epochs=50), synthetic_dataset, "long2", models_dir=tmp_path / "models", owner="sub:alice")
    jobs.cancel("sub:root", admin=True)
    assert jobs.wait(timeout=300).state == "cancelled"


def test_a_crash_keeps_one_line_for_users_and_the_traceback_for_the_log(tmp_path, monkeypatch, caplog):
    import brainclf.serving.jobs

    def crash(*args, **kwargs):
        raise RuntimeError("boom in /srv/hospital/secret/run")

    monkeypatch.setattr(brainclf.serving.jobs, "train", crash)
    jobs = TrainingJobs()
    with caplog.at_level("ERROR", logger="brainclf.serving.jobs"):
        status = jobs.start(tiny(), tmp_path, "crashy", models_dir=tmp_path / "models", owner="sub:alice")
        jobs.wait(timeout=60)
    assert status.state == "failed"
    assert "\n" not in status.error and "Traceback" not in status.error and "/srv" not in status.error
    assert "RuntimeError" in status.error and "server log" in status.error
    logged = "\n".join(r.getMessage() + (r.exc_text or "") for r in caplog.records)
    assert "crashy" in logged and any(r.exc_info for r in caplog.records)  # the traceback went to the log


def test_a_job_that_exits_the_thread_frees_the_slot(tmp_path):
    """A SystemExit (or any BaseException) in the work left the job "starting", the app's one slot busy for good."""
    def exits(hook, cancel):
        raise SystemExit(3)

    jobs = TrainingJobs()
    status = jobs.start_task("exits", exits)
    jobs.wait(timeout=30)
    assert status.state == "failed" and "SystemExit" in status.error and not jobs.busy()
    jobs.start_task("next", lambda hook, cancel: tmp_path)  # the slot is free
    jobs.wait(timeout=30)


def test_failure_in_thread_is_reported(tmp_path):
    jobs = TrainingJobs()
    status = jobs.start(tiny(), tmp_path / "no-such-dataset", "missing", models_dir=tmp_path / "models")
    jobs.wait(timeout=120)
    assert status.state == "failed"
    assert status.error
    assert not jobs.busy()


def test_a_cancelled_training_resumes_from_its_last_epoch_and_finishes(synthetic_dataset, tmp_path, isolated_runs,
                                                                       monkeypatch):
    import json

    import brainclf.serving.jobs

    real_train = brainclf.serving.jobs.train
    events = []
    jobs = TrainingJobs()

    def recording_train(request):  # the job's own hook, plus a record of every report
        def hook(p):
            events.append(p)
            request.progress(p)
            if p.epoch_end and p.epoch == 1 and not resumed:
                jobs.cancel("sub:alice")  # right after epoch 1: the next batch stops it
        return real_train(replace(request, progress=hook))

    monkeypatch.setattr(brainclf.serving.jobs, "train", recording_train)
    resumed = False
    status = jobs.start(tiny(epochs=3, augment=False), synthetic_dataset, "resumable",
                        models_dir=tmp_path / "models", owner="sub:alice")
    jobs.wait(timeout=300)
    assert status.state == "cancelled", status.error
    assert status.run_dir == isolated_runs / "resumable" and status.resumable()
    assert json.loads((status.run_dir / "state.json").read_text())["epoch"] == 1
    with pytest.raises(BrainclfError, match="Only the person who started"):
        jobs.resume("sub:bob")
    assert jobs.status is status  # a refused resume starts nothing

    resumed, first_session = True, len(events)
    again = jobs.resume("sub:alice")
    assert again is not status and again.owner == "sub:alice" and again.name == "resumable"
    jobs.wait(timeout=300)
    assert again.state == "done", again.error
    later = [p for p in events[first_session:] if p.stage == "training"]
    assert later and {p.first_epoch for p in later} == {1}  # went on from epoch 1, not from 0
    assert [p.epoch for p in later if p.epoch_end] == [2, 3]
    assert later[0].current_epoch() == 2
    card = json.loads(again.result.with_suffix(".json").read_text())
    assert card["training"]["epochs_run"] == 3 and len(card["training"]["history"]["loss"]) == 3
    assert not again.resumable()  # done: nothing left to resume
    with pytest.raises(BrainclfError, match="no cancelled or interrupted training"):
        jobs.resume("sub:alice")


def test_a_failure_before_any_state_is_not_resumable(tmp_path):
    jobs = TrainingJobs()
    status = jobs.start(tiny(), tmp_path / "no-such-dataset", "missing", models_dir=tmp_path / "models",
                        owner="sub:alice")
    jobs.wait(timeout=120)
    assert status.state == "failed" and not status.resumable()
    with pytest.raises(BrainclfError, match="no cancelled or interrupted training"):
        jobs.resume("sub:alice")


def test_each_user_trains_in_a_run_folder_of_their_own(tmp_path, monkeypatch):
    """The same model name and settings from another user start afresh: they never resume (and so take over)
    someone else's cancelled run."""
    import brainclf.serving.jobs
    from brainclf.serving import owner_run_dir

    used = []
    monkeypatch.setattr(brainclf.serving.jobs, "train", lambda request: used.append(Path(request.run_dir)))
    jobs = TrainingJobs()
    for owner in ("sub:alice", "sub:bob", "sub:alice"):
        jobs.start(tiny(), tmp_path, "shared_name", models_dir=tmp_path / "models", owner=owner,
                   run_dir=owner_run_dir(tmp_path / "runs", owner, "shared_name"))
        jobs.wait(timeout=60)
    alice, bob, alice_again = used
    assert alice != bob and alice == alice_again  # her own run again: resumable by her
    assert all(p.parent.parent == tmp_path / "runs" and p.name == "shared_name" for p in used)
    assert "alice" not in str(alice) and "/" not in alice.parent.name  # a hash, not the user id


def test_resume_learns_from_the_same_other_sources(tmp_path, monkeypatch):
    import brainclf.serving.jobs
    from brainclf.data import source_at
    from brainclf.training import TrainingCancelled

    asked = []

    def cancelled_train(request):  # stands in for a run cancelled after its first epoch
        asked.append(request)
        raise TrainingCancelled("cancelled")

    monkeypatch.setattr(brainclf.serving.jobs, "train", cancelled_train)
    monkeypatch.setattr(JobStatus, "resumable", lambda self: True)
    (tmp_path / "ext-src").mkdir()
    extra = (source_at(tmp_path / "ext-src", 2.0),)
    jobs = TrainingJobs()
    jobs.start(tiny(extra_sources=[{"name": "ext-src", "weight": 2.0}]), tmp_path, "two", owner="sub:alice",
               models_dir=tmp_path / "models", extra_data=extra)
    jobs.wait(timeout=60)
    jobs.resume("sub:alice")
    jobs.wait(timeout=60)
    assert [r.extra_data for r in asked] == [extra, extra]
    assert asked[1].config.extra_sources == [{"name": "ext-src", "weight": 2.0}]


def test_the_dataset_itself_is_refused_as_an_extra_source_before_a_thread_starts(synthetic_dataset, tmp_path):
    from brainclf.data import source_at

    same = source_at(synthetic_dataset, 2.0)
    jobs = TrainingJobs()
    with pytest.raises(ConfigError, match="is the dataset itself"):
        jobs.start(tiny(extra_sources=[{"name": same.name, "weight": 2.0}]), synthetic_dataset, "twice",
                   models_dir=tmp_path / "models", extra_data=(same,))
    assert jobs.status is None  # nothing started


def test_a_new_start_with_other_settings_sets_the_old_run_aside(smoke_run, synthetic_dataset, tmp_path, monkeypatch):
    import shutil

    _, run_dir, _ = smoke_run
    old = tmp_path / "runs" / "mine"
    shutil.copytree(run_dir, old)
    started = []
    monkeypatch.setattr("brainclf.serving.jobs.train", lambda request: started.append(request.name))
    # The job's own work, run here: the old run is set aside only once start_task has refused a second job.
    monkeypatch.setattr(TrainingJobs, "start_task", lambda self, name, work, *a, **kw: work(None, None))
    same = TrainConfig(architecture="compact_cnn", image_size=32, epochs=1, batch_size=8, early_stopping_patience=5)
    TrainingJobs().start(same, synthetic_dataset, "mine", models_dir=tmp_path / "models", run_dir=old)
    assert (old / "state.json").exists()  # the same settings: it resumes the run where it is
    TrainingJobs().start(replace(same, epochs=3), synthetic_dataset, "mine", models_dir=tmp_path / "models",
                         run_dir=old)
    (aside,) = [p for p in old.parent.iterdir() if p.name.startswith("mine.set-aside-")]
    assert not old.exists() and (aside / "state.json").exists() and started == ["mine", "mine"]


def test_a_running_training_is_never_set_aside(smoke_run, tmp_path, synthetic_dataset):
    import shutil

    jobs = TrainingJobs()
    jobs.status = JobStatus(name="mine", state="running", owner="me")
    run = tmp_path / "runs" / "mine"
    shutil.copytree(smoke_run[1], run)  # its state was saved with other settings than the start below asks
    with pytest.raises(BrainclfError, match="already running"):
        jobs.start(TrainConfig(epochs=3), synthetic_dataset, "mine", models_dir=tmp_path / "models", run_dir=run)
    assert (run / "state.json").exists()


def test_a_bug_reading_a_run_state_offers_no_resume_and_is_logged(tmp_path, monkeypatch, caplog):
    """An unreadable state is no resume (said nowhere: it is expected); a bug while reading one is no resume either,
    but the server log keeps its traceback."""
    from brainclf.serving import jobs as jobs_module

    (tmp_path / "state.json").write_text("{}")
    status = JobStatus(name="broken", state="failed", run_dir=tmp_path, request={"config": tiny()})
    monkeypatch.setattr(jobs_module, "saved_state", lambda *a, **k: (_ for _ in ()).throw(ConfigError("other")))
    with caplog.at_level("ERROR", logger=jobs_module.__name__):
        assert status.resumable() is False
        assert not caplog.records
        monkeypatch.setattr(jobs_module, "saved_state", lambda *a, **k: (_ for _ in ()).throw(TypeError("bug")))
        (tmp_path / "state.json").write_text('{"x": 1}')  # another file: asked again
        assert status.resumable() is False
    assert any(r.exc_info for r in caplog.records) and "bug" in caplog.text
