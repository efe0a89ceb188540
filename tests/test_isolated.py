"""An app job in a process of its own (brainclf.training.isolated): its progress, result, errors and cancel cross
over, a job that outgrows its memory or dies fails alone with a clear message, and it ends with the server."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from brainclf.errors import BrainclfError, ConfigError
from brainclf.training.config import TrainingCancelled, TrainProgress
from brainclf.training.isolated import job_memory_cap, run_isolated

MiB = 1024 * 1024


# The jobs below run in the child, which imports this module by name (the tests folder is on its path).
def counting_job(folder, *, hook, cancel):
    for epoch in range(3):
        hook(TrainProgress("training", epoch=epoch, epochs=3, history={"loss": [np.float32(0.5)] * epoch}))
    return Path(folder) / f"done-{os.getpid()}"


def refusing_job(*, hook, cancel):
    raise ConfigError("Choose a smaller batch.")


def failing_job(*, hook, cancel):
    return 1 / 0


def waiting_job(*, hook, cancel):
    hook(TrainProgress("training", message="started"))
    for _ in range(600):
        if cancel.is_set():
            raise TrainingCancelled("Cancelled after its last epoch.")
        time.sleep(0.05)
    return "never cancelled"


def greedy_job(*, hook, cancel):
    return len(bytearray(2048 * MiB))


def killed_job(*, hook, cancel):
    os.kill(os.getpid(), signal.SIGKILL)


def sleeping_job(pid_file, *, hook, cancel):
    Path(pid_file).write_text(str(os.getpid()))
    time.sleep(120)


def test_progress_and_result_come_back_and_the_job_ran_elsewhere(tmp_path):
    heard: list[TrainProgress] = []
    result = run_isolated(counting_job, (str(tmp_path),), hook=heard.append, cancel=threading.Event())
    assert result.parent == tmp_path and result.name != f"done-{os.getpid()}"  # another process's pid
    assert [p.epoch for p in heard] == [0, 1, 2] and all(isinstance(p, TrainProgress) for p in heard)
    assert heard[-1].history == {"loss": [0.5, 0.5]}  # NumPy numbers as plain ones


def test_brainclfs_own_errors_keep_their_class_and_words():
    with pytest.raises(ConfigError, match="^Choose a smaller batch.$"):
        run_isolated(refusing_job, ())


def test_an_unexpected_error_is_one_line_naming_its_type():
    with pytest.raises(BrainclfError, match=r"did not finish: an unexpected error \(ZeroDivisionError\)"):
        run_isolated(failing_job, ())


def test_a_cancel_set_here_stops_the_job():
    cancel = threading.Event()

    def hook(p: TrainProgress) -> None:
        if p.message == "started":
            cancel.set()

    with pytest.raises(TrainingCancelled, match="Cancelled after its last epoch"):
        run_isolated(waiting_job, (), hook=hook, cancel=cancel)


def stuck_job(pid_file, *, hook, cancel):
    Path(pid_file).write_text(str(os.getpid()))
    hook(TrainProgress("training", message="started"))
    time.sleep(120)  # deaf to the cancel: a stalled read, say


def test_a_job_deaf_to_its_cancel_is_stopped_after_the_grace_and_reads_as_cancelled(tmp_path, monkeypatch):
    from brainclf.training import isolated

    monkeypatch.setattr(isolated, "CANCEL_GRACE_S", 1.0)
    cancel = threading.Event()

    def hook(p: TrainProgress) -> None:
        if p.message == "started":
            cancel.set()

    with pytest.raises(TrainingCancelled, match="had not stopped 1 s after the cancel, so its process was stopped"):
        run_isolated(stuck_job, (str(tmp_path / "pid"),), hook=hook, cancel=cancel)
    with pytest.raises(ProcessLookupError):
        os.kill(int((tmp_path / "pid").read_text()), 0)  # its process is gone


def saving_job(folder, *, hook, cancel):
    hook(TrainProgress("evaluating", message="saving"))
    time.sleep(3)  # past the grace: saving its results, which no cancel may cut
    return Path(folder) / "saved"


def test_a_job_saving_its_results_is_never_killed_by_a_cancel_that_crossed_its_report(tmp_path, monkeypatch):
    from brainclf.training import isolated

    monkeypatch.setattr(isolated, "CANCEL_GRACE_S", 1.0)
    cancel = threading.Event()
    result = run_isolated(saving_job, (str(tmp_path),), hook=lambda p: cancel.set(), cancel=cancel)
    assert result == tmp_path / "saved" and cancel.is_set()


def test_a_job_that_outgrows_its_memory_fails_alone():
    with pytest.raises(BrainclfError, match="needed more memory than a job may use"):
        run_isolated(greedy_job, (), memory_bytes=1536 * MiB)
    assert run_isolated(counting_job, ("/tmp",)).name.startswith("done-")  # still works


def test_a_job_whose_process_dies_is_reported_with_what_can_be_done():
    with pytest.raises(BrainclfError, match=r"stopped by signal 9 before finishing; it may have run out of memory "
                                            r"\(a job may use .*\)\. What it saved .* can be resumed"):
        run_isolated(killed_job, (), memory_bytes=3 * 1024 * MiB)


def test_the_cap_is_the_job_budget_plus_the_runtime():
    assert job_memory_cap(8 * 1024 * MiB) == 4 * 1024 * MiB + 4 * 1024 * MiB
    assert job_memory_cap(0) is None


@pytest.mark.skipif(sys.platform != "linux", reason="the parent-death signal is Linux's")
def test_the_job_ends_when_the_server_process_does(tmp_path):
    pid_file = tmp_path / "job.pid"
    server = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from brainclf.training.isolated import run_isolated
        from test_isolated import sleeping_job
        run_isolated(sleeping_job, ({str(pid_file)!r},))
    """)])
    try:
        deadline = time.monotonic() + 120
        while not pid_file.exists() or not pid_file.read_text():
            assert time.monotonic() < deadline and server.poll() is None, "the job never started"
            time.sleep(0.2)
        job = int(pid_file.read_text())
        server.kill()
        server.wait()
        deadline = time.monotonic() + 30
        while _alive(job):
            assert time.monotonic() < deadline, "the job outlived the server"
            time.sleep(0.2)
    finally:
        server.kill()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie waits for its (gone) parent's reaping: it no longer runs
    status = Path(f"/proc/{pid}/stat").read_text().split(") ")[-1][:1] if Path(f"/proc/{pid}").exists() else "X"
    return status not in ("Z", "X")
