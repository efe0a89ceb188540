"""Run the models in a process of their own, so TensorFlow never loads into the app's server process.

Why: Python's GIL lets one thread of a process run at a time. With the model in the server process, importing
TensorFlow and Keras (~2.8 s of interpreter work on a 2-core laptop) and loading the model took turns with
every page the server rendered: on a fresh server the first page and the first prediction waited for each
other (issue #14). In a process of its own the model loads on the other core while the server paints pages,
and on a shared server one user's predictions no longer hold up everyone else's pages.

A ProcessPredictor is a Predictor whose card-only parts (contract, temperature, refer rule, OOD rule, the
Prediction it builds) run here and whose model calls (the forward pass with its OOD features, Grad-CAM, the
pooled features) run in the model process: one per server, a fresh interpreter running this module, holding
the last few models it was asked for (each loaded with `Predictor.load` and warmed) and answering one call at
a time. Calls from many sessions queue for it. A call that gets no answer within its time limit stops the
process, and a stopped process starts again on the next call.

    predictor = ProcessPredictor.start(Path("models/default.keras"))  # returns at once; the model loads there
    result = predictor.predict(image_bytes, name="slice.png", explain=True)
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import threading
import weakref
from collections import OrderedDict
from multiprocessing.connection import Connection
from pathlib import Path

import numpy as np

from .card import read_card
from .errors import BrainclfError, DataError, ImageError, ModelError
from .predict import Predictor

log = logging.getLogger(__name__)

# What the model process answers: loading a model, and the Predictor methods that run it. Nothing else.
MODEL_CALLS = ("load", "raw_probs_and_features", "_explained", "gradcam", "penultimate_features")
_ERRORS = {cls.__name__: cls for cls in (BrainclfError, DataError, ImageError, ModelError)}
MODELS_KEPT = 4  # models loaded at once in the model process (as many as the app caches)
LOAD_TIMEOUT_S = 180.0  # starting the process and loading a model: seconds on a laptop, more under load
CALL_TIMEOUT_S = 600.0  # one call: at most a batch of 64 images (folders are evaluated in batches)


# --- the model process -----------------------------------------------------------------------------------

def _serve(conn: Connection) -> None:
    """Answer (method, model path, expected (name, version), tta, args) until the server closes the pipe."""
    models: OrderedDict[tuple[str, float], Predictor] = OrderedDict()
    while True:
        try:
            method, path, expected, tta, args = conn.recv()
        except (EOFError, OSError):  # the server went away
            return
        try:
            if method not in MODEL_CALLS:
                raise ModelError(f"the model process does not run {method!r}")
            predictor = _loaded(models, path, tuple(expected))
            answer = "ok", None if method == "load" else getattr(predictor.with_tta(tta), method)(*args)
        except Exception as e:  # noqa: BLE001 - every failure goes back to the caller; the process carries on
            answer = "error", _as_message(e)
        try:
            conn.send(answer)
        except OSError:  # the server went away while this call ran
            return


def _loaded(models: OrderedDict, path: str, expected: tuple[str, str]) -> Predictor:
    """The model at `path` (loaded and warmed on first use; a replaced file is loaded again), checked to be
    the one whose card the caller read."""
    key = (path, os.stat(path).st_mtime)
    if key not in models:
        predictor = Predictor.load(path)
        # One pass with Grad-CAM traces the compiled functions, so the user's first prediction does not.
        predictor._explained(np.zeros((1, *predictor.contract.shape), np.float32))
        models[key] = predictor
        while len(models) > MODELS_KEPT:
            models.popitem(last=False)
    models.move_to_end(key)
    card = models[key].card
    if (card.name, card.version) != expected:
        raise ModelError(f"{Path(path).name} changed while the page was open; reload the page.")
    return models[key]


def _as_message(e: Exception) -> tuple[str, str]:
    """An error as (class name, message): brainclf's own errors keep their class and their words."""
    if isinstance(e, BrainclfError):
        return type(e).__name__, str(e)
    if isinstance(e, OSError):
        return "ModelError", "the model file could not be read"
    return "ModelError", f"the model failed ({type(e).__name__})"


# --- the server's side -----------------------------------------------------------------------------------

class ModelProcess:
    """The server's handle on its model process: started on first use, restarted after it stopped."""

    def __init__(self, call_timeout: float = CALL_TIMEOUT_S):
        self.call_timeout = call_timeout
        self._lock = threading.Lock()  # one call at a time on the pipe
        self._process: subprocess.Popen | None = None
        self._conn: Connection | None = None
        self._unanswered = 0  # preloads sent whose answers nobody has read yet

    def preload(self, path: Path, expected: tuple[str, str]) -> None:
        """Ask the process to load a model, without waiting for it."""
        with self._lock:
            self._send(("load", str(path), expected, False, ()))
            self._unanswered += 1

    def call(self, path: Path, expected: tuple[str, str], method: str, tta: bool, *args):
        """Run `method` of the model at `path` there and return its result; its errors are raised here."""
        with self._lock:
            while self._unanswered:  # a preload's failure is met again by this call, which loads once more
                self._unanswered -= 1
                self._receive(LOAD_TIMEOUT_S)
            self._send((method, str(path), expected, bool(tta), args))
            status, value = self._receive(LOAD_TIMEOUT_S + self.call_timeout)
        if status != "ok":
            name, message = value
            raise _ERRORS.get(name, ModelError)(message)
        return value

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def stop(self) -> None:
        if self._process is not None:
            self._finalizer()
        self._process = self._conn = None
        self._unanswered = 0

    def _start(self) -> None:
        # A fresh interpreter running this module: not a fork (the server has threads, and a forked copy of a
        # threaded process can deadlock), not multiprocessing's spawn (it re-runs the caller's main script).
        ours, theirs = socket.socketpair()
        root = str(Path(__file__).resolve().parents[1])
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
        with theirs:
            self._process = subprocess.Popen([sys.executable, "-m", "brainclf.inference_process",
                                              str(theirs.fileno())],
                                             pass_fds=(theirs.fileno(),), env=env, stdin=subprocess.DEVNULL)
        self._conn = Connection(ours.detach())
        self._finalizer = weakref.finalize(self, _stop, self._process, self._conn)
        log.info("model process started (pid %d)", self._process.pid)

    def _send(self, message) -> None:
        if self._process is None:
            self._start()
        try:
            self._conn.send(message)
        except (OSError, ValueError):
            self.stop()
            raise ModelError("the model process stopped; it starts again on the next request.") from None

    def _receive(self, timeout: float):
        try:
            if not self._conn.poll(timeout):
                self.stop()
                raise ModelError(f"the model gave no answer within {timeout:.0f} s; it was stopped and starts "
                                 "again on the next request.")
            return self._conn.recv()
        except (EOFError, OSError):
            self.stop()
            raise ModelError("the model process stopped; it starts again on the next request.") from None


def _stop(process: subprocess.Popen, conn: Connection) -> None:
    """Close the pipe (the process then exits on its own) and make sure it is gone."""
    try:
        conn.close()
    except OSError:
        pass
    try:
        process.wait(timeout=2)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=5)


_shared: ModelProcess | None = None
_shared_lock = threading.Lock()


def shared_process() -> ModelProcess:
    """This server's model process (one for every session and model)."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = ModelProcess()
        return _shared


class ProcessPredictor(Predictor):
    """A Predictor whose model runs in the model process (see the module's docstring). Thread-safe."""

    def __init__(self, card, path: Path, process: ModelProcess, tta: bool | None = None):
        # Not Predictor.__init__: that builds the model's compiled functions in this process.
        self.tta = card.tta_default if tta is None else bool(tta)
        self.card = card
        self.contract = card.contract
        self.path = Path(path)
        self._process = process

    @classmethod
    def start(cls, model_path: str | Path, tta: bool | None = None,
              process: ModelProcess | None = None) -> ProcessPredictor:
        """Read the card here and have the model process load the model; returns without waiting for it.

        Raises:
            ModelError: the card is missing or invalid (the model process checks the model against it).
        """
        card = read_card(model_path)
        predictor = cls(card, Path(model_path), process or shared_process(), tta=tta)
        predictor._process.preload(predictor.path, predictor._expected)
        return predictor

    @property
    def _expected(self) -> tuple[str, str]:
        return self.card.name, self.card.version

    def wait_ready(self) -> ProcessPredictor:
        """Block until the model has loaded there (raises its error if it cannot)."""
        self._call("load")
        return self

    @property
    def model(self):
        raise ModelError(f"{self.card.name} runs in the model process: use Predictor.load for the Keras model.")

    def _call(self, method: str, *args):
        return self._process.call(self.path, self._expected, method, self.tta, *args)

    def raw_probs_and_features(self, x: np.ndarray, batch_size: int = 64, tta: bool | None = None):
        tta = self.tta if tta is None else tta
        return self._process.call(self.path, self._expected, "raw_probs_and_features", tta,
                                  np.asarray(x, dtype=np.float32), batch_size)

    def _explained(self, x: np.ndarray):
        return self._call("_explained", np.asarray(x, dtype=np.float32))

    def gradcam(self, x: np.ndarray, class_index: int | None = None) -> np.ndarray:
        return self._call("gradcam", np.asarray(x, dtype=np.float32), class_index)

    def penultimate_features(self, x: np.ndarray) -> np.ndarray:
        return self._call("penultimate_features", np.asarray(x, dtype=np.float32))


if __name__ == "__main__":  # the model process: python -m brainclf.inference_process FD
    # Keras imports scikit-learn and pandas only if it can, for features this process never uses; failing
    # those imports here saves ~0.8 s of every cold start (measured on a 2-core laptop).
    for optional in ("sklearn", "pandas"):
        sys.modules.setdefault(optional, None)
    _serve(Connection(int(sys.argv[1])))
