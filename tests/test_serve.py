"""brainclf.serving.serve: the one 'start Streamlit and poll its health' helper (browser tests, load test, bench)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from brainclf.serving import free_port, peak_rss_bytes, wait_healthy


def test_wait_healthy_reports_a_dead_server_and_a_timeout():
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait(30)
    with pytest.raises(RuntimeError, match="exited with code 0"):
        wait_healthy(f"http://127.0.0.1:{free_port()}", timeout=30, proc=dead)
    with pytest.raises(TimeoutError, match="not healthy within 1 s"):
        wait_healthy(f"http://127.0.0.1:{free_port()}", timeout=1)


def test_peak_rss_of_this_process():
    import os

    assert peak_rss_bytes(os.getpid()) > 10 * 2**20
    assert peak_rss_bytes(2**22 + 12345) is None  # no such process


def test_bench_app_starts_the_app_through_the_shared_helper():
    from brainclf.serving import bench_app

    out = bench_app(None, timeout=120)
    assert out.get("health_s", 0) > 0, out
