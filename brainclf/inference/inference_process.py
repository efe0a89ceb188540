"""Run the models in a process of their own, so TensorFlow never loads into the app's server process.

Why: Python's GIL lets one thread of a process run at a time. With the model in the server process, importing
TensorFlow and Keras (~2.8 s of interpreter work on a 2-core laptop) and loading the model took turns with
every page the server rendered: on a fresh server the first page and the first prediction waited for each
other (issue #14). In a process of its own the model loads on the other core while the server paints pages,
and on a shared server one user's predictions no longer hold up everyone else's pages.

A ProcessPredictor is a Predictor whose card-only parts (contract, temperature, refer rule, OOD rule, the
Prediction it builds) run here and whose model calls (the forward pass with its OOD features, Grad-CAM, the
pooled features) run in the model process: one per server, a fresh interpreter running brainclf.inference.model_worker,
holding the last few models it was asked for (each loaded with `Predictor.load` and warmed) and answering one
call of at most CHUNK images at a time. Calls from many sessions queue for it (BUSY_TIMEOUT_S at most, then a
"busy" error). A call that gets no answer within its time limit stops the process; a process found stopped is
started again, and the request that met it mid-call gets a clear error. Replies are unpickled as numeric arrays
and plain values only (model_replies). The process's memory is capped (limits.MODEL_PROCESS_DATA_BYTES), and an
uploaded model is opened there only (ModelProcess.check).

    predictor = ProcessPredictor.start(Path("models/default.keras"))  # returns at once; the model loads there
    result = predictor.predict(image_bytes, name="slice.png", explain=True)
"""

from __future__ import annotations

import io
import logging
import pickle
import subprocess
import threading
import weakref
from contextlib import contextmanager
from multiprocessing.connection import Connection
from pathlib import Path

import numpy as np

from ..errors import BrainclfError, DataError, ImageError, ModelError
from ..input import limits
from ..model.card import read_card
from ..model.uploads import add_model
from .interpreter import ROOT, start_worker
from .model_replies import ReplyUnpickler, well_formed
from .model_worker import CHECK, identity
from .predict import Predictor

log = logging.getLogger(__name__)

# Errors that come back with their class (ValueError: a model whose Grad-CAM cannot be built, which the Predict
# page answers with the prediction alone); anything else is a ModelError.
ERRORS = {cls.__name__: cls for cls in (BrainclfError, DataError, ImageError, ModelError, ValueError)}
CHUNK = 64  # images per call: bounded messages, and no call long enough to hold up other sessions
LOAD_TIMEOUT_S = 180.0  # starting the process and loading a model: seconds on a laptop, more under load
CALL_TIMEOUT_S = 300.0  # one call of at most CHUNK images
BUSY_TIMEOUT_S = 120.0  # waiting for other sessions' calls before answering "busy"


class ModelProcess:
    """The server's handle on its model process: started on first use, restarted after it stopped."""

    def __init__(self, call_timeout: float = CALL_TIMEOUT_S, busy_timeout: float = BUSY_TIMEOUT_S,
                 memory_bytes: int = limits.MODEL_PROCESS_DATA_BYTES):
        self.call_timeout, self.busy_timeout = call_timeout, busy_timeout
        self.memory_bytes = int(memory_bytes)  # the process's RLIMIT_DATA, set by model_worker at its start
        self._lock = threading.Lock()  # one call at a time on the pipe
        self._process: subprocess.Popen | None = None
        self._conn: Connection | None = None
        self._unanswered = 0  # preloads sent whose answers nobody has read yet

    def preload(self, path: Path, expected: tuple) -> None:
        """Ask the process to load a model, without waiting for it."""
        with self._locked():
            self._send(("load", str(Path(path).resolve()), expected, False, ()))
            self._unanswered += 1

    def call(self, path: Path, expected: tuple, method: str, tta: bool, *args):
        """Run `method` of the model at `path` there and return its result; its errors are raised here."""
        with self._locked():
            while self._unanswered:  # a preload's failure is met again by this call, which loads once more
                self._unanswered -= 1
                self._receive(LOAD_TIMEOUT_S)
            self._send((method, str(Path(path).resolve()), expected, bool(tta), args))
            status, value = self._receive(LOAD_TIMEOUT_S + self.call_timeout)
        if status != "ok":
            name, message = value
            raise ERRORS.get(name, ModelError)(message)
        return value

    def check(self, path: Path) -> None:
        """Open the model file at `path` with its card (load_model's checks) there, keeping nothing: how an
        upload is checked without TensorFlow in the server. Raises ModelError saying why it is refused."""
        try:
            self.call(path, (), CHECK, False)
        except ModelError as e:
            if str(e) == STOPPED:
                raise ModelError(f"{Path(path).name}: the model process stopped while opening it (memory cap "
                                 f"{limits.size_text(self.memory_bytes)}); refused.") from None
            raise

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def stop(self) -> None:
        try:
            if self._process is not None:
                self._finalizer()
        finally:
            self._process = self._conn = None
            self._unanswered = 0

    @contextmanager
    def _locked(self):
        """The pipe's lock, or ModelError when other sessions' calls keep it longer than busy_timeout."""
        if not self._lock.acquire(timeout=self.busy_timeout):
            raise ModelError("the model is busy with other requests; try again in a moment.")
        try:
            if self._process is not None and self._process.poll() is not None:
                self.stop()  # it died while idle (its unanswered preloads with it): the next send starts afresh
            yield
        finally:
            self._lock.release()

    def _start(self) -> None:
        # A fresh interpreter running model_worker (interpreter.start_worker), in the package's folder.
        try:
            self._process, self._conn = start_worker("brainclf.inference.model_worker", [str(self.memory_bytes)],
                                                     cwd=ROOT)
        except (OSError, ValueError) as e:
            raise ModelError(f"the model process could not start ({type(e).__name__})") from None
        self._finalizer = weakref.finalize(self, _stop, self._process, self._conn)
        log.info("model process started (pid %d)", self._process.pid)

    def _send(self, message) -> None:
        if self._process is None:
            self._start()
        try:
            self._conn.send(message)
        except (OSError, ValueError):
            self.stop()
            raise ModelError(STOPPED) from None
        except BaseException:  # half a message may be on the pipe: never reuse it
            self.stop()
            raise

    def _receive(self, timeout: float):
        try:
            if not self._conn.poll(timeout):
                self.stop()
                raise ModelError(f"the model gave no answer within {timeout:.0f} s; it was stopped and starts "
                                 "again on the next request.")
            reply = ReplyUnpickler(io.BytesIO(self._conn.recv_bytes())).load()
        except (EOFError, OSError):
            self.stop()
            raise ModelError(STOPPED) from None
        except (pickle.UnpicklingError, ImportError, AttributeError, TypeError, ValueError, IndexError):
            self.stop()
            raise ModelError(NOT_AN_ANSWER) from None
        except BaseException:  # a reply half read: never reuse the pipe
            self.stop()
            raise
        if not well_formed(reply):
            self.stop()
            raise ModelError(NOT_AN_ANSWER)
        return reply


STOPPED = "the model process stopped; it starts again on the next request."
NOT_AN_ANSWER = "the model process sent something that is not an answer; it was stopped and starts again."


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
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            log.warning("model process %d did not exit", process.pid)


_shared: ModelProcess | None = None
_shared_lock = threading.Lock()


def shared_process() -> ModelProcess:
    """This server's model process (one for every session and model)."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = ModelProcess()
        return _shared


def stop_shared() -> None:
    """Stop this server's model process, if it started (the server is shutting down)."""
    with _shared_lock:
        if _shared is not None:
            _shared.stop()


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
        predictor._process.preload(predictor.path, identity(card))
        return predictor

    def wait_ready(self) -> ProcessPredictor:
        """Block until the model has loaded there (raises its error if it cannot)."""
        self._call("load", self.tta)
        return self

    @property
    def model(self):
        raise AttributeError(f"{self.card.name} runs in the model process: use Predictor.load for the Keras model.")

    def _call(self, method: str, tta: bool, *args):
        return self._process.call(self.path, identity(self.card), method, tta, *args)

    def _chunked(self, method: str, x: np.ndarray, tta: bool, empty, *args):
        """`method` over x in calls of at most CHUNK images, its outputs joined; `empty` when x has none."""
        x = np.asarray(x, dtype=np.float32)
        parts = [self._call(method, tta, x[i:i + CHUNK], *args) for i in range(0, len(x), CHUNK)]
        if not parts:
            return empty
        return tuple(np.concatenate(p) for p in zip(*parts)) if isinstance(parts[0], tuple) else np.concatenate(parts)

    def raw_probs_and_features(self, x: np.ndarray, batch_size: int = 64, tta: bool | None = None):
        x = np.asarray(x, dtype=np.float32)
        n = len(self.card.class_names)
        return self._chunked("raw_probs_and_features", x[None] if x.ndim == 3 else x, self.tta if tta is None else tta,
                             (np.zeros((0, n), np.float32), np.zeros((0, 0), np.float32)), batch_size)

    def _explained(self, x: np.ndarray):
        size, n = self.contract.size, len(self.card.class_names)  # as Predictor's: heat maps, probabilities, features
        return self._chunked("_explained", x, self.tta, (np.zeros((0, size, size), np.float32),
                                                         np.zeros((0, n), np.float32), np.zeros((0, 0), np.float32)))

    def gradcam(self, x: np.ndarray, class_index: int | None = None) -> np.ndarray:
        return self._call("gradcam", self.tta, np.asarray(x, dtype=np.float32), class_index)

    def penultimate_features(self, x: np.ndarray) -> np.ndarray:
        return self._chunked("penultimate_features", x, self.tta, np.zeros((0, 0), np.float32))


def add_uploaded_model(name: str, model_bytes: bytes, card_bytes: bytes, models_dir: str | Path,
                       uploaded_by: str | None = None, process: ModelProcess | None = None,
                       uploaded_by_id: str | None = None) -> Path:
    """brainclf.model.uploads.add_model for the app: Keras opens the upload in the model process (memory-capped), never
    in the server. Raises ModelError saying why an upload is refused."""
    return add_model(name, model_bytes, card_bytes, models_dir, uploaded_by, check=(process or shared_process()).check,
                     uploaded_by_id=uploaded_by_id)
