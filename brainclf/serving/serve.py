"""Start `streamlit run app.py` on 127.0.0.1 and wait for its health endpoint: the one helper that the browser
tests, scripts/loadtest.py and `brainclf bench` share.

    proc = start_streamlit(port)              # or free_port() for a fresh one
    wait_healthy(f"http://127.0.0.1:{port}", timeout=90, proc=proc)
    ...
    stop(proc)
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterable
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
APP = REPO / "app.py"
LOOPBACK = "127.0.0.1"


def free_port() -> int:
    """A free TCP port on the loopback interface."""
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


def start_streamlit(port: int, env: dict | None = None, extra_args: Iterable[str] = (), app: Path = APP,
                    cwd: Path = REPO, output=subprocess.DEVNULL) -> subprocess.Popen:
    """`streamlit run APP` bound to 127.0.0.1:PORT, headless, no usage statistics; `env` is added to this
    process's environment and `extra_args` (e.g. ['--secrets.files', PATH]) go after the defaults, so they
    win. `output`: where its stdout and stderr go (DEVNULL, PIPE or a file)."""
    cmd = [sys.executable, "-m", "streamlit", "run", str(app), "--server.address", LOOPBACK,
           "--server.port", str(port), "--server.headless", "true", "--browser.gatherUsageStats", "false",
           *extra_args]
    return subprocess.Popen(cmd, cwd=cwd, env={**os.environ, **(env or {})}, stdout=output,
                            stderr=subprocess.STDOUT if output is not subprocess.DEVNULL else subprocess.DEVNULL)


def wait_healthy(url: str, timeout: float = 90, proc: subprocess.Popen | None = None) -> float:
    """Poll URL/_stcore/health until it answers 'ok'; return the seconds it took.

    Raises:
        RuntimeError: `proc` exited first.
        TimeoutError: not healthy within `timeout` seconds.
    """
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < timeout:
        try:
            with urllib.request.urlopen(f"{url.rstrip('/')}/_stcore/health", timeout=2) as r:
                if r.read().strip() == b"ok":
                    return time.perf_counter() - t0
        except OSError:
            pass
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"streamlit exited with code {proc.returncode} before it was healthy")
        time.sleep(0.2)
    raise TimeoutError(f"streamlit at {url} was not healthy within {timeout:.0f} s")


def stop(proc: subprocess.Popen, timeout: float = 10) -> None:
    """Terminate a server started here (kill it if it does not stop in `timeout` seconds)."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)


def child_pids(pid: int) -> list[int]:
    """The direct children of a process (Linux /proc; [] elsewhere), e.g. the app's model process."""
    out: list[int] = []
    try:
        for children in Path(f"/proc/{pid}/task").glob("*/children"):
            out += [int(c) for c in children.read_text().split()]
    except (OSError, ValueError):
        return out
    return out


def peak_rss_bytes(pid: int) -> int | None:
    """Peak resident memory of a process (VmHWM in /proc, Linux), or None where it cannot be read."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None
