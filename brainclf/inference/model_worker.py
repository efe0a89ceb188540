"""The model process's own code: `python -m brainclf.inference.model_worker FD [MEMORY_BYTES]` loads models and
answers the server's calls over the socket FD, one at a time (the server's side, and why there is a process:
inference_process). MEMORY_BYTES caps the process's private writable memory (RLIMIT_DATA) from its start; an
uploaded model is opened here only ("check": load_model's checks, nothing kept), never in the server."""

from __future__ import annotations

import errno
import logging
import os
import resource
import signal
import sys
from collections import OrderedDict
from multiprocessing.connection import Connection
from pathlib import Path

import numpy as np

from ..errors import BrainclfError, ModelError
from ..input import limits
from ..model.card import load_model
from .predict import Predictor

log = logging.getLogger(__name__)

# What the model process answers: loading a model, and the Predictor methods that run it; and checking a model
# file (an upload) without keeping it. Nothing else.
MODEL_CALLS = ("load", "raw_probs_and_features", "_explained", "gradcam", "penultimate_features")
CHECK = "check"
OUT_OF_MEMORY = ("MemoryError", "ResourceExhaustedError")  # Python's, TensorFlow's (an allocation that failed)


def _serve(conn: Connection) -> None:
    """Answer (method, model path, expected identity, tta, args) until the server closes the pipe."""
    models: OrderedDict[tuple[str, int, int], Predictor] = OrderedDict()
    while True:
        try:
            method, path, expected, tta, args = conn.recv()
        except (EOFError, OSError):  # the server went away
            return
        try:
            if method == CHECK:
                load_model(path)  # every check of a model and its card, Keras's safe mode included; nothing kept
                answer = "ok", None
            elif method not in MODEL_CALLS:
                raise ModelError(f"the model process does not run {method!r}")
            else:
                predictor = _loaded(models, path, tuple(expected))
                answer = "ok", None if method == "load" else getattr(predictor.with_tta(tta), method)(*args)
        except Exception as e:  # noqa: BLE001 - every failure goes back to the caller; the process carries on
            answer = "error", _as_message(e)
            if answer[1][1].startswith("the model failed"):  # its text is not the caller's: the log keeps it
                log.exception("the model process's %s call failed", method)
        try:
            conn.send(answer)
        except OSError:  # the server went away while this call ran
            return


def _loaded(models: OrderedDict, path: str, expected: tuple) -> Predictor:
    """The model at `path` (loaded and warmed on first use; a replaced file is loaded again), checked to be
    the one whose card the caller read."""
    stat = os.stat(path)
    key = (path, stat.st_mtime_ns, stat.st_size)
    if key not in models:
        predictor = Predictor.load(path)
        try:  # one pass with Grad-CAM traces the compiled functions, so the user's first prediction does not
            predictor._explained(np.zeros((1, *predictor.contract.shape), np.float32))
        except ValueError as e:  # no Grad-CAM for this model: its predictions still work
            log.warning("%s: no Grad-CAM warm-up (%s)", Path(path).name, e)
        models[key] = predictor
        while len(models) > limits.MODELS_KEPT:
            models.popitem(last=False)
    models.move_to_end(key)
    if identity(models[key].card) != expected:
        raise ModelError(f"{Path(path).name} changed while the page was open; reload the page.")
    return models[key]


def identity(card) -> tuple[str, str, str]:
    """Name, version and the model file's SHA-256 (a name and version are whatever an uploader chose)."""
    return card.name, card.version, card.file_sha256


def _as_message(e: Exception) -> tuple[str, str]:
    """An error as (class name, message): brainclf's own errors and ValueError keep their class and words
    (ValueError: a model whose Grad-CAM cannot be built, which the Predict page answers with the prediction
    alone); anything else becomes a ModelError without its text."""
    if isinstance(e, BrainclfError) or type(e) is ValueError:
        return type(e).__name__, str(e)
    if type(e).__name__ in OUT_OF_MEMORY or memory_exhausted(e):
        cap = resource.getrlimit(resource.RLIMIT_DATA)[0]
        within = f" ({limits.size_text(cap)})" if cap != resource.RLIM_INFINITY else ""
        return "ModelError", f"the model needs more memory than the model process may use{within}; refused"
    if isinstance(e, OSError):
        return "ModelError", "the model file could not be read"
    return "ModelError", f"the model failed ({type(e).__name__})"


def memory_exhausted(e: Exception) -> bool:
    """Errors that say the memory cap was reached without saying MemoryError: an allocation or a mapping refused
    (OSError ENOMEM or EAGAIN) or a thread that could not get its stack (seen under a 256 MB cap on a busy machine)."""
    return (isinstance(e, OSError) and e.errno in (errno.ENOMEM, errno.EAGAIN)) or (
        type(e) is RuntimeError and "can't start new thread" in str(e)) or (
        type(e) is SystemError and _near_memory_cap())


def _near_memory_cap(share: float = 0.5) -> bool:
    """Whether this process's peak resident memory reached `share` of its cap. A C extension whose allocation
    failed can surface as a bare SystemError (seen loading a model under a 256 MB cap during a busy test run);
    that close to the cap, the cap is the likely cause, far from it the error is reported as it is."""
    cap = resource.getrlimit(resource.RLIMIT_DATA)[0]
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # kilobytes on Linux
    return cap != resource.RLIM_INFINITY and peak >= share * cap


def cap_memory(max_bytes: int) -> None:
    """Cap this process's private writable memory (RLIMIT_DATA; never above a hard limit already set)."""
    hard = resource.getrlimit(resource.RLIMIT_DATA)[1]
    cap = max_bytes if hard == resource.RLIM_INFINITY else min(max_bytes, hard)
    resource.setrlimit(resource.RLIMIT_DATA, (cap, hard))


if __name__ == "__main__":  # the model process: python -m brainclf.inference.model_worker FD [MEMORY_BYTES]
    cap_memory(int(sys.argv[2]) if len(sys.argv) > 2 else limits.MODEL_PROCESS_DATA_BYTES)
    # Ctrl-C in the server's terminal reaches this process too: the server closing the pipe is what ends it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # Keras imports scikit-learn and pandas only if it can, for features this process never uses; failing
    # those imports here saves ~0.8 s of every cold start (measured on a 2-core laptop).
    for optional in ("sklearn", "pandas"):
        sys.modules.setdefault(optional, None)
    _serve(Connection(int(sys.argv[1])))
