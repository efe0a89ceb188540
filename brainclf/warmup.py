"""Load a model in the background before anyone asks for it, so the first prediction does not wait for it.

Importing TensorFlow (~2.5 s on a 2-core laptop), loading the model (~0.5 s) and tracing its first
prediction with Grad-CAM (~0.5 s) dominate the app's cold start. The server's start-up hook
(`warm_default_model`, st.App's lifespan in app.py) calls `start(path)` for the default model only (so at most
one warmed model waits, whatever models visitors pick); the page that needs the model calls `take(path)`,
which hands over the warmed Predictor (waiting for it if it is still loading) or None, and then loads the model
itself as before.

    start(Path("models/default.keras"))   # returns at once; a daemon thread does the work
    predictor = take(Path("models/default.keras")) or Predictor.load(path)
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import Future
from contextlib import asynccontextmanager
from pathlib import Path

import numpy as np
from PIL import Image

from .card import default_model
from .predict import Predictor  # TensorFlow itself is imported when the model loads, in the background thread
from .settings import load_settings

log = logging.getLogger(__name__)

_lock = threading.Lock()
_warming: dict[tuple[str, float], Future] = {}
_handed_over: set[tuple[str, float]] = set()  # never warmed twice: the caller's cache has it


def _key(path: Path) -> tuple[str, float] | None:
    try:
        return str(Path(path).resolve()), Path(path).stat().st_mtime  # a replaced file is a new model
    except OSError:
        return None


def _warm(path: Path):
    predictor = Predictor.load(path)
    # One prediction with Grad-CAM traces the compiled functions, so the user's first one does not.
    blank = Image.fromarray(np.zeros((predictor.contract.size, predictor.contract.size), np.uint8))
    predictor.predict(blank, name="warm-up", explain=True)
    return predictor


def _run(future: Future, path: Path) -> None:
    try:
        future.set_result(_warm(path))
    except Exception as e:  # noqa: BLE001 - a failed warm-up only means the page loads the model itself
        log.warning("warm-up of %s failed: %s", Path(path).name, e)
        future.set_exception(e)


def start(path: Path | None) -> bool:
    """Begin loading `path` in a daemon thread unless that file version is loading or loaded already.

    Returns:
        True when this call started a warm-up.
    """
    key = _key(path) if path is not None else None
    if key is None:
        return False
    with _lock:
        if key in _warming or key in _handed_over:
            return False
        future: Future = Future()
        _warming[key] = future
    threading.Thread(target=_run, args=(future, Path(path)), name="brainclf-warmup", daemon=True).start()
    return True


def take(path: Path, timeout: float | None = 120):
    """The warmed Predictor for this file version (waiting up to `timeout` s while it loads), else None.

    The warm-up is handed over once and forgotten: the caller caches it (st.cache_resource) from then on.
    """
    key = _key(path)
    with _lock:
        future = _warming.pop(key, None) if key else None
        if future is not None:
            _handed_over.add(key)
    if future is None:
        return None
    try:
        return future.result(timeout)
    except Exception:  # noqa: BLE001 - failed or too slow: the caller loads the model and reports any error
        return None


@asynccontextmanager
async def warm_default_model(_app):
    """st.App start-up hook: begin warming the default model of the server's models folder, then serve.

    Bad settings are not reported here: the app's first run shows them to the visitor (app.py)."""
    try:
        start(default_model(load_settings().models_dir))
    except Exception as e:  # noqa: BLE001 - never keep the server from starting; the first visit shows the problem
        log.warning("no warm-up: %s", e)
    yield
