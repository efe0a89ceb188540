"""One step at a time on a site run: a step started while another process (the CLI, another app process) runs one
on the same run folder is refused before it writes anything, and so is deleting that run; a lock dies with its
process."""

from __future__ import annotations

import subprocess
import sys

import pytest
from test_site_kept import _run

from brainclf.site.kept import delete_site_run
from brainclf.site.step_lock import StepRunning, one_step_at_a_time
from brainclf.training.folder_lock import LOCK_FILE

HOLD = ("import sys, time; from filelock import FileLock; lock = FileLock(sys.argv[1], timeout=0); lock.acquire(); "
        "print('held', flush=True); time.sleep(120)")


@pytest.fixture
def held_elsewhere():
    """hold(run_dir): the run folder's step lock held by another process until the test ends."""
    holders = []

    def hold(run_dir):
        run_dir.mkdir(parents=True, exist_ok=True)
        holder = subprocess.Popen([sys.executable, "-c", HOLD, str(run_dir / LOCK_FILE)], stdout=subprocess.PIPE,
                                  text=True)
        holders.append(holder)
        assert holder.stdout.readline().strip() == "held"
        return holder

    yield hold
    for holder in holders:
        holder.kill()
        holder.wait()


def test_a_step_beside_another_process_step_is_refused_and_goes_once_that_one_ends(tmp_path, held_elsewhere):
    holder = held_elsewhere(tmp_path / "run")
    ran = []
    with pytest.raises(StepRunning, match=r"A step of this site run \(run\) is running .* nothing was done"):
        with one_step_at_a_time(tmp_path / "run"):
            ran.append("body")
    assert ran == []
    holder.kill()  # killed, not released: the OS lock goes with the process
    holder.wait()
    with one_step_at_a_time(tmp_path / "run"):
        ran.append("body")
    assert ran == ["body"]


def test_the_cli_refuses_a_step_on_a_run_busy_elsewhere_before_splitting(tmp_path, smoke_model, held_elsewhere,
                                                                         capsys):
    from test_site import write_site

    from brainclf.cli import main

    held_elsewhere(tmp_path / "run")
    rc = main(["site", "validate", "--model", str(smoke_model), "--site-data", str(write_site(tmp_path / "site")),
               "--site", "clinic", "--run-dir", str(tmp_path / "run")])
    assert rc != 0
    assert "A step of this site run (run) is running" in capsys.readouterr().err
    assert not (tmp_path / "run" / "site.json").exists()


def test_the_app_job_step_is_refused_too(tmp_path, smoke_model, held_elsewhere):
    from test_site import write_site

    from brainclf.site.steps import run_step

    held_elsewhere(tmp_path / "run")
    with pytest.raises(StepRunning):
        run_step("validate", tmp_path / "run", write_site(tmp_path / "site"), "clinic", smoke_model, 0.98,
                 tmp_path / "models", None, hook=lambda p: None, cancel=None)
    assert not (tmp_path / "run" / "site.json").exists()


def test_a_run_with_a_step_running_elsewhere_is_not_deleted(tmp_path, held_elsewhere):
    run = _run(tmp_path / "clinic" / "smoke")
    holder = held_elsewhere(run)
    with pytest.raises(StepRunning, match="then delete it; nothing was done"):
        delete_site_run(tmp_path, "clinic/smoke")
    assert (run / "site.json").is_file()
    holder.kill()
    holder.wait()
    delete_site_run(tmp_path, "clinic/smoke")
    assert not run.exists()


def test_a_step_refused_before_its_split_leaves_no_run_folder(tmp_path, smoke_model, capsys):
    from brainclf.cli import main

    (tmp_path / "tiny" / "glioma").mkdir(parents=True)  # far too small to split
    rc = main(["site", "validate", "--model", str(smoke_model), "--site-data", str(tmp_path / "tiny"),
               "--site", "clinic", "--run-dir", str(tmp_path / "run")])
    assert rc == 2 and "error:" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
