"""An app job's own process: `python -m brainclf.training.job_worker FD MEMORY_BYTES` (the server's side, and why
there is a process: training.isolated).

It caps its memory, reads the job (a pickled target and its arguments: the server's own, never a user's) from the
socket FD, runs `target(*args, hook=, cancel=)` and sends its progress and outcome back as JSON. A "cancel" from the
server sets the job's cancel event; the server's end closing (the server gone) ends this process.
"""

from __future__ import annotations

import ctypes
import dataclasses
import json
import logging
import os
import pickle
import signal
import sys
import threading
from multiprocessing.connection import Connection

from ..errors import BrainclfError
from ..escaping import json_default
from ..inference.model_worker import OUT_OF_MEMORY, cap_memory, memory_exhausted
from .config import TrainingCancelled, TrainProgress

log = logging.getLogger(__name__)
CANCEL = b"cancel"


def run_job(conn: Connection) -> None:
    """Read the job, run it, send its progress and its outcome: {"result": path} or {"error": class, "message"}."""
    target, args, label = pickle.loads(conn.recv_bytes())
    cancel = threading.Event()
    threading.Thread(target=_listen, args=(conn, cancel), name="job-cancel", daemon=True).start()

    def send(message: dict) -> None:
        conn.send_bytes(json.dumps(message, default=json_default).encode())

    def hook(progress: TrainProgress) -> None:
        send({"progress": dataclasses.asdict(progress)})

    try:
        send({"result": str(target(*args, hook=hook, cancel=cancel))})
    except TrainingCancelled as e:
        send({"error": "TrainingCancelled", "message": str(e)})
    except BrainclfError as e:
        send({"error": type(e).__name__, "message": str(e)})
    except BaseException as e:  # noqa: BLE001 - its traceback to the server log, one line to the user
        log.exception("%s failed", label)
        reason = ("it needed more memory than a job may use" if type(e).__name__ in OUT_OF_MEMORY
                  or memory_exhausted(e) else
                  f"an unexpected error ({type(e).__name__}) stopped it; the details are in the server log")
        send({"error": "BrainclfError", "message": f"The job did not finish: {reason}."})


def _listen(conn: Connection, cancel: threading.Event) -> None:
    """The server's messages while the job runs: a cancel sets the event; its end closing (the server gone, which
    would leave this job writing a run that a restarted server offers to resume) ends the process."""
    while True:
        try:
            if conn.recv_bytes() == CANCEL:
                cancel.set()
        except (EOFError, OSError):
            os._exit(1)


def _end_with_parent() -> None:
    """Linux stops this process when the server's process ends (prctl PR_SET_PDEATHSIG), as a second line to the
    socket closing; elsewhere the socket alone says so."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1: PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


if __name__ == "__main__":
    _end_with_parent()
    if int(sys.argv[2]):
        cap_memory(int(sys.argv[2]))
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C in the server's terminal: the server ends the job
    connection = Connection(int(sys.argv[1]))
    try:
        run_job(connection)
    except (EOFError, OSError):  # the server went away
        sys.exit(1)
