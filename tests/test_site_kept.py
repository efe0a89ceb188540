"""A user's kept site runs: listed with their steps and size, deleted by their folder's name only (never through
a link, never a folder outside, never the run a step is running on), the models they saved left alone."""

from __future__ import annotations

import json
import os

import pytest

from brainclf.errors import BrainclfError
from brainclf.site.kept import delete_site_run, kept_site_runs


def _run(folder, site="clinic", model="smoke", steps=("validate",), payload=1000, when=None):
    folder.mkdir(parents=True)
    state = {"site": site, "model": {"name": model}, "steps": {s: {} for s in steps}}
    (folder / "site.json").write_text(json.dumps(state))
    (folder / "adapt").mkdir()
    (folder / "adapt" / "last.keras").write_bytes(b"x" * payload)
    if when is not None:
        os.utime(folder / "site.json", (when, when))
    return folder


def test_runs_are_listed_newest_first_with_their_steps_and_size(tmp_path):
    _run(tmp_path / "clinic" / "smoke", steps=("validate", "adapt"), payload=5000, when=1_000_000)
    _run(tmp_path / "other-default", site="other", model="default", steps=(), when=2_000_000)  # an older flat run
    (tmp_path / "stray").mkdir()  # no record: not a site run
    runs = kept_site_runs(tmp_path)
    assert [r.folder for r in runs] == ["other-default", "clinic/smoke"]
    assert runs[1].steps == ("validate", "adapt") and runs[1].site == "clinic" and runs[1].model == "smoke"
    assert runs[1].size_bytes >= 5000 and runs[0].steps == ()
    assert kept_site_runs(tmp_path / "nobody") == []


def test_a_real_site_run_is_listed_where_the_app_keeps_it(tmp_path, smoke_model):
    from test_site import write_site

    from brainclf.site import SiteRun, site_run_dir

    base = tmp_path / "runs"
    SiteRun.open(site_run_dir(base, "St.Marys", smoke_model), write_site(tmp_path / "site"), "St.Marys", smoke_model)
    (run,) = kept_site_runs(base)
    assert (run.folder, run.site, run.model, run.steps) == ("St.Marys/smoke", "St.Marys", "smoke", ())


def test_deleting_a_run_takes_its_folder_and_only_it(tmp_path):
    kept = _run(tmp_path / "clinic" / "default")
    _run(tmp_path / "clinic" / "smoke")
    models = tmp_path / "models"
    models.mkdir()
    (models / "clinic-smoke.keras").write_text("a model the run saved")
    assert delete_site_run(tmp_path, "clinic/smoke").model == "smoke"
    assert not (tmp_path / "clinic" / "smoke").exists() and kept.is_dir()
    assert (models / "clinic-smoke.keras").is_file()
    delete_site_run(tmp_path, "clinic/default")
    assert not (tmp_path / "clinic").exists() and tmp_path.is_dir()  # the emptied site folder goes, the base stays
    with pytest.raises(BrainclfError, match="no longer there"):
        delete_site_run(tmp_path, "clinic/default")


@pytest.mark.parametrize("folder", ["..", "../outside", "/tmp", "clinic", "", "linked/smoke", "clinic/../outside"])
def test_only_a_listed_run_can_be_deleted(tmp_path, folder):
    base = tmp_path / "base"
    _run(base / "clinic" / "smoke")
    outside = _run(tmp_path / "outside")
    (base / "linked").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    _run(tmp_path / "elsewhere" / "smoke")
    with pytest.raises(BrainclfError, match="no longer there"):
        delete_site_run(base, folder)
    assert (base / "clinic" / "smoke" / "site.json").is_file() and outside.is_dir()
    assert (tmp_path / "elsewhere" / "smoke" / "site.json").is_file()
    assert [r.folder for r in kept_site_runs(base)] == ["clinic/smoke"]  # the linked run is never listed


def test_the_run_a_step_is_running_on_is_not_deleted(tmp_path):
    run = _run(tmp_path / "clinic" / "smoke")
    with pytest.raises(BrainclfError, match="running"):
        delete_site_run(tmp_path, "clinic/smoke", running=run)
    assert (run / "site.json").is_file()


def test_a_run_whose_record_was_cut_short_is_listed_and_can_be_deleted(tmp_path):
    run = _run(tmp_path / "clinic" / "smoke")
    (run / "site.json").write_text('{"site": "cli')
    (listed,) = kept_site_runs(tmp_path)
    assert (listed.site, listed.model, listed.steps) == ("clinic", "smoke", ())
    delete_site_run(tmp_path, listed.folder)
    assert not run.exists()


def test_a_run_nested_in_an_older_flat_runs_folder_is_listed_and_guards_it(tmp_path):
    """site_run_dir may put site clinic-smoke's run from model default inside site clinic's older flat run of
    model smoke (clinic-smoke/): both are listed, each with its own size, and the outer one is not deleted with
    the inner one in it, nor while a step runs on the inner one."""
    outer = _run(tmp_path / "clinic-smoke", payload=1000)
    inner = _run(outer / "default", site="clinic-smoke", model="default", payload=50_000)
    runs = {r.folder: r for r in kept_site_runs(tmp_path)}
    assert set(runs) == {"clinic-smoke", "clinic-smoke/default"}
    assert runs["clinic-smoke"].size_bytes < 50_000 <= runs["clinic-smoke/default"].size_bytes
    with pytest.raises(BrainclfError, match="running"):
        delete_site_run(tmp_path, "clinic-smoke", running=inner)
    with pytest.raises(BrainclfError, match="also holds the site run clinic-smoke/default"):
        delete_site_run(tmp_path, "clinic-smoke")
    assert (inner / "site.json").is_file()
    delete_site_run(tmp_path, "clinic-smoke/default")
    assert (outer / "site.json").is_file()  # its folder is a run of its own: not removed as an emptied site folder
    delete_site_run(tmp_path, "clinic-smoke")
    assert kept_site_runs(tmp_path) == []


def test_no_job_starts_while_a_deletion_checks_and_acts(tmp_path):
    import threading

    from brainclf.serving.jobs import TrainingJobs

    jobs, release = TrainingJobs(), threading.Event()
    jobs.start_task("clinic: validate", lambda hook, cancel: release.wait(30), run_dir=tmp_path / "run")
    assert jobs.while_no_job_starts(lambda running: running) == tmp_path / "run"
    release.set()
    jobs.wait(30)
    started = []
    other = threading.Thread(target=lambda: started.append(jobs.start_task("next", lambda h, c: None)))

    def action(running):
        other.start()
        other.join(0.5)
        return running, other.is_alive(), list(started)

    assert jobs.while_no_job_starts(action) == (None, True, [])  # the other tab's start waited for the lock
    other.join(30)
    assert len(started) == 1 and started[0].name == "next"
