"""A fresh Python interpreter running one of this package's worker modules, joined to the caller by a socket: the
model process (inference_process → model_worker) and an app job's process (training.isolated → job_worker).

Not a fork (the server has threads, and a forked copy of a threaded process can deadlock), not multiprocessing's
spawn (it re-runs the caller's main script: the app). The package's folder comes first on its path, and never the
working folder (PYTHONSAFEPATH), so nothing there shadows a module the server imports from elsewhere.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from multiprocessing.connection import Connection
from pathlib import Path

ROOT = str(Path(__file__).resolve().parents[2])  # the folder holding the brainclf package


def start_worker(module: str, args: list[str], cwd: str | None = None,
                 path: tuple[str, ...] = ()) -> tuple[subprocess.Popen, Connection]:
    """`python -m MODULE FD *ARGS` (FD: its end of the socket) in `cwd` (default the caller's), with ROOT and then
    `path` on its import path; (the process, this end of the socket).

    Raises:
        OSError, ValueError: it could not start (the caller says what failed).
    """
    ours, theirs = socket.socketpair()
    entries = [ROOT, *(p for p in path if isinstance(p, str)), os.environ.get("PYTHONPATH")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(dict.fromkeys(filter(None, entries))), "PYTHONSAFEPATH": "1"}
    try:
        with theirs:
            process = subprocess.Popen([sys.executable, "-m", module, str(theirs.fileno()), *args],
                                       pass_fds=(theirs.fileno(),), cwd=cwd, env=env, stdin=subprocess.DEVNULL)
    except (OSError, ValueError):
        ours.close()
        raise
    return process, Connection(ours.detach())
