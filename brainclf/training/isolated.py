"""Run an app job (a training, a site step) in a process of its own, with its memory capped.

Why: a job used to run in a thread of the server's process. Its memory was checked before it started
(prepare.check_training_memory, site.measure.check_step_memory), but an estimate is not a bound: a job that grew
past it could take the whole server, and everyone's sessions, down with it; and its Python work took turns with
every page the server rendered. In a process of its own, capped at the share of memory a job may use plus what
its runtime needs, a job that outgrows it fails alone with a clear message, and the server carries on (where the
machine has room for that cap beside the server and its model process: 12 GiB or more).

The process is a fresh interpreter running training.job_worker (inference.interpreter.start_worker, as the model
process runs model_worker). The job is `target(*args, hook=..., cancel=...)`, a module-level function with
picklable arguments, sent to it over a socket; its progress (TrainProgress), its result (a path) and its error
(class and message) come back as JSON, never as pickles. A cancel set here is passed on; the process ends if the
server's does.

    result = run_isolated(train_job, (request,), hook=print, cancel=threading.Event())
"""

from __future__ import annotations

import dataclasses
import json
import logging
import pickle
import subprocess
import sys
import threading
import time
from multiprocessing.connection import Connection
from pathlib import Path

from .. import errors
from ..errors import BrainclfError
from ..inference.interpreter import start_worker
from ..input import limits
from .config import TrainingCancelled, TrainProgress
from .job_worker import CANCEL
from .prepare import job_memory_budget

log = logging.getLogger(__name__)

# What TensorFlow and the job's own code hold besides the arrays and batches the memory checks count: measured
# here, a site adaptation of ~1,300 site slices with replay peaked at 3.4-4.8 GB resident, of which the arrays
# counted were about 1.5 GB; 0.47 GB after importing Keras alone (limits.MODEL_PROCESS_DATA_BYTES).
RUNTIME_BYTES = 4 * 1024 * limits.MiB
MESSAGE_BYTES = 1 * limits.MiB  # one progress message (its history included) is a few kB
POLL_S = 0.2
# A cancelled job stops after its batch (seconds) or its slices' chunk; one still running this long after is stuck.
CANCEL_GRACE_S = 300.0
ERROR_CLASSES = {cls.__name__: cls for cls in (BrainclfError, errors.ImageError, errors.DataError,
                                                errors.ModelError, errors.ConfigError)}


def train_job(request, hook, cancel):
    """brainclf.training.train as a job's target: `request` (a TrainRequest) with this process's hook and cancel."""
    from .loop import train

    return train(dataclasses.replace(request, progress=hook, cancel=cancel))


def job_memory_cap(available: int | None = None) -> int | None:
    """The job process's RLIMIT_DATA: the job budget its checks refuse above, plus RUNTIME_BYTES; None where the
    OS does not say how much memory the machine has."""
    budget = job_memory_budget(available)
    return int(budget) + RUNTIME_BYTES if budget else None


def run_isolated(target, args: tuple, hook=None, cancel: threading.Event | None = None,
                 memory_bytes: int | None = None, label: str = ""):
    """target(*args, hook=, cancel=) in a process capped at `memory_bytes` (default job_memory_cap()); its
    progress goes to `hook`, a set `cancel` reaches it, and its result (a path) or its error is this call's.
    `label` names the job in the server log.

    Raises:
        TrainingCancelled, BrainclfError (its own class where it is one of brainclf's): the job's; BrainclfError
            too where the process stopped without a word (out of memory, killed), saying so.
    """
    cap = memory_bytes if memory_bytes is not None else job_memory_cap()
    label = label or f"job {getattr(target, '__name__', '')}".strip()
    process, conn = _start(cap or 0)
    try:
        conn.send_bytes(pickle.dumps((target, args, label)))
        outcome = _relay(process, conn, hook, cancel)
    except OSError:  # it ended before reading the job
        outcome = None
    finally:
        conn.close()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return _result(outcome, process.returncode, cap, label)


def _start(cap: int) -> tuple[subprocess.Popen, Connection]:
    """The job's process, in the server's working folder (relative runs and models folders stay where they were),
    able to import what the server imports (the job's target may live in any module on its path)."""
    try:
        return start_worker("brainclf.training.job_worker", [str(cap)], path=tuple(sys.path))
    except (OSError, ValueError) as e:
        raise BrainclfError(f"The job's process could not start ({type(e).__name__}).") from None


def _relay(process, conn: Connection, hook, cancel) -> dict | None:
    """Pass the job's progress to `hook` and a cancel to the job until it sends its outcome or ends; a job still
    running CANCEL_GRACE_S after the cancel (stuck, say on a stalled network read) is killed, and cancelled."""
    cancel_sent, grace_s, stage = None, CANCEL_GRACE_S, ""  # when the cancel was passed on; the last stage heard
    while True:
        if cancel is not None and cancel.is_set() and cancel_sent is None:
            cancel_sent = time.monotonic()
            try:
                conn.send_bytes(CANCEL)
            except OSError:
                pass  # it has ended: its outcome, if it sent one, is still to be read
        # Never once it saves its results (stage "evaluating"): a cancel that crossed that report goes unheeded.
        if cancel_sent is not None and time.monotonic() - cancel_sent > grace_s and stage != "evaluating" and \
                process.poll() is None:
            process.kill()
            process.wait()
            log.warning("job process killed: still running %.0f s after its cancel", grace_s)
            return {"error": "TrainingCancelled", "message": f"Cancelled: the job had not stopped {grace_s:.0f} s "
                    "after the cancel, so its process was stopped. What it saved (a training's epochs) can be "
                    "resumed."}
        try:
            if not conn.poll(POLL_S):
                if process.poll() is not None and not conn.poll(0):
                    return None
                continue
            message = json.loads(conn.recv_bytes(MESSAGE_BYTES))
        except (EOFError, OSError, ValueError):
            return None  # ended (or sent something no job sends): what the exit code says is the outcome
        if "progress" not in message:
            return message
        stage = message["progress"].get("stage", stage)
        if hook is not None:
            hook(TrainProgress(**message["progress"]))


def _result(outcome: dict | None, exitcode: int | None, cap: int | None, label: str):
    if outcome is None:
        within = f" (a job may use {limits.size_text(cap)})" if cap else ""
        how = f"was stopped by signal {-exitcode}" if exitcode is not None and exitcode < 0 else \
            f"ended with code {exitcode}"
        log.warning("%s: its process %s without reporting an outcome", label, how)
        raise BrainclfError(f"The job's process {how} before finishing; it may have run out of memory{within}. "
                            "What it saved (a training's epochs) can be resumed; the server log may say more.")
    if "result" in outcome:
        return Path(outcome["result"])
    if outcome.get("error") == "TrainingCancelled":
        raise TrainingCancelled(outcome["message"])
    raise ERROR_CLASSES.get(outcome.get("error"), BrainclfError)(outcome.get("message", ""))
