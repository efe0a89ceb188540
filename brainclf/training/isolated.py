"""Run an app job (a training, a site step) in a process of its own, with its memory capped.

Why: a job used to run in a thread of the server's process. Its memory was checked before it started
(prepare.check_training_memory, site.measure.check_step_memory), but an estimate is not a bound: a job that grew
past it could take the whole server, and everyone's sessions, down with it; and its Python work took turns with
every page the server rendered. In a process of its own, capped at the share of memory a job may use plus what
its runtime needs, a job that outgrows it fails alone with a clear message, and the server carries on.

The job is `target(*args, hook=..., cancel=...)`, a module-level function with picklable arguments (the child is
a fresh interpreter: multiprocessing's "spawn"). Its progress (TrainProgress), its result (a path) and its error
(class and message) come back as JSON, never as pickles, so nothing the job read can make the server run code.
A cancel set here reaches it; the child stops if the server's process ends.

    result = run_isolated(train_one, (request,), hook=print, cancel=threading.Event())
"""

from __future__ import annotations

import ctypes
import dataclasses
import json
import logging
import multiprocessing
import multiprocessing.synchronize
import os
import signal
import threading
from pathlib import Path

from .. import errors
from ..errors import BrainclfError
from ..inference.model_worker import OUT_OF_MEMORY, cap_memory
from ..input import limits
from .config import TrainingCancelled, TrainProgress
from .prepare import job_memory_budget

log = logging.getLogger(__name__)

# What TensorFlow and the job's own code hold besides the arrays and batches the memory checks count: measured
# here, a site adaptation of ~1,300 site slices with replay peaked at 3.4-4.8 GB resident, of which the arrays
# counted were about 1.5 GB; 0.47 GB after importing Keras alone (limits.MODEL_PROCESS_DATA_BYTES).
RUNTIME_BYTES = 4 * 1024 * limits.MiB
MESSAGE_BYTES = 1 * limits.MiB  # one progress message (its history included) is a few kB
POLL_S = 0.2
ERROR_CLASSES = {cls.__name__: cls for cls in (BrainclfError, errors.ImageError, errors.DataError,
                                                errors.ModelError, errors.ConfigError)}


def train_job(request, hook, cancel):
    """brainclf.training.train as a job's target: `request` (a TrainRequest) with this process's hook and cancel."""
    from .loop import train

    return train(dataclasses.replace(request, progress=hook, cancel=cancel))


def cancel_event() -> threading.Event:
    """An event a job's process sees the moment it is set (a threading.Event passes on within POLL_S)."""
    return multiprocessing.get_context("spawn").Event()


def job_memory_cap(available: int | None = None) -> int | None:
    """The job process's RLIMIT_DATA: the job budget its checks refuse above, plus RUNTIME_BYTES; None where the
    OS does not say how much memory the machine has."""
    budget = job_memory_budget(available)
    return int(budget) + RUNTIME_BYTES if budget else None


def run_isolated(target, args: tuple, hook=None, cancel: threading.Event | None = None,
                 memory_bytes: int | None = None):
    """target(*args, hook=, cancel=) in a child process capped at `memory_bytes` (default job_memory_cap()); its
    progress goes to `hook`, a set `cancel` reaches it, and its result (a path) or its error is this call's.

    Raises:
        TrainingCancelled, BrainclfError (its own class where it is one of brainclf's): the job's; BrainclfError
            too where the process stopped without a word (out of memory, killed), saying so.
    """
    context = multiprocessing.get_context("spawn")
    receiver, sender = context.Pipe(duplex=False)
    # A process event (cancel_event()) reaches the child as it is set; any other is passed on when seen here.
    child_cancel = cancel if isinstance(cancel, multiprocessing.synchronize.Event) else context.Event()
    cap = memory_bytes if memory_bytes is not None else job_memory_cap()
    process = context.Process(target=_child, args=(target, args, sender, child_cancel, cap, os.getpid()),
                              name=f"brainclf-job-{getattr(target, '__name__', 'job')}", daemon=True)
    process.start()
    sender.close()  # the child holds the only writing end: a closed pipe here means it has ended
    try:
        outcome = _relay(process, receiver, hook, cancel, child_cancel)
    finally:
        receiver.close()
        process.join(5)
        if process.is_alive():
            process.kill()
            process.join()
    return _result(outcome, process.exitcode, cap)


def _relay(process, receiver, hook, cancel, child_cancel) -> dict | None:
    """Pass the child's progress to `hook` and a cancel to the child until it sends its outcome or ends."""
    while True:
        if cancel is not None and cancel is not child_cancel and cancel.is_set():
            child_cancel.set()
        try:
            if not receiver.poll(POLL_S):
                if not process.is_alive() and not receiver.poll(0):
                    return None
                continue
            message = json.loads(receiver.recv_bytes(MESSAGE_BYTES))
        except (EOFError, OSError, ValueError):
            return None  # ended (or sent something no job sends): what the exit code says is the outcome
        if "progress" not in message:
            return message
        if hook is not None:
            hook(TrainProgress(**message["progress"]))


def _result(outcome: dict | None, exitcode: int | None, cap: int | None):
    if outcome is None:
        within = f" (a job may use {limits.size_text(cap)})" if cap else ""
        how = f"was stopped by signal {-exitcode}" if exitcode is not None and exitcode < 0 else \
            f"ended with code {exitcode}"
        log.warning("job process %s without reporting an outcome", how)
        raise BrainclfError(f"The job's process {how} before finishing; it may have run out of memory{within}. "
                            "What it saved (a training's epochs) can be resumed; the server log may say more.")
    if "result" in outcome:
        return Path(outcome["result"])
    if outcome.get("error") == "TrainingCancelled":
        raise TrainingCancelled(outcome["message"])
    raise ERROR_CLASSES.get(outcome.get("error"), BrainclfError)(outcome.get("message", ""))


def _child(target, args, sender, cancel, cap: int | None, parent_pid: int) -> None:
    """The job process: cap its memory, run the job, send its progress and outcome."""
    _end_with_parent(parent_pid)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C in the server's terminal: the server ends the job
    if cap:
        cap_memory(cap)

    def send(message: dict) -> None:
        sender.send_bytes(json.dumps(message, default=_plain).encode())

    def hook(progress: TrainProgress) -> None:
        send({"progress": dataclasses.asdict(progress)})

    try:
        send({"result": str(target(*args, hook=hook, cancel=cancel))})
    except TrainingCancelled as e:
        send({"error": "TrainingCancelled", "message": str(e)})
    except BrainclfError as e:
        send({"error": type(e).__name__, "message": str(e)})
    except BaseException as e:  # noqa: BLE001 - its traceback to the log, one line to the user
        log.exception("job %s failed", getattr(target, "__name__", "job"))
        reason = ("it needed more memory than a job may use" if type(e).__name__ in OUT_OF_MEMORY
                  else f"an unexpected error ({type(e).__name__}) stopped it; the details are in the server log")
        send({"error": "BrainclfError", "message": f"The job did not finish: {reason}."})
    finally:
        sender.close()


def _end_with_parent(parent_pid: int) -> None:
    """Stop this job if the server's process ends: an orphan would go on writing a run that a restarted server
    offers to resume. Linux delivers SIGKILL at the parent's end (prctl PR_SET_PDEATHSIG); elsewhere a thread
    watches the parent's pid."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1: PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent_pid:  # it ended before the line above took effect
        os._exit(1)

    def watch() -> None:
        while os.getppid() == parent_pid:
            threading.Event().wait(1.0)
        os._exit(1)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def _plain(value):
    """NumPy scalars in a progress's history, as JSON numbers."""
    try:
        return value.item()
    except AttributeError:
        return str(value)
