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
