"""Start loading the default model when the server starts, so the first prediction does not wait for it.

Importing TensorFlow (~2.8 s of interpreter work on a 2-core laptop), loading the model (~0.5 s) and tracing its
first prediction with Grad-CAM (~0.5 s) dominate the app's cold start. They happen in the model process
(brainclf.inference.inference_process), so the server keeps painting pages meanwhile. The server's start-up hook
(`warm_default_model`, st.App's lifespan in app.py) calls `start(path)` for the default model only (so at most
one warmed model waits, whatever models visitors pick); the page that needs the model calls `take(path)`,
which hands over that ProcessPredictor once (its first call waits for the load), or None, and the page then
starts one itself as before.

    start(Path("models/default.keras"))   # returns at once; the model process loads the model
    predictor = take(Path("models/default.keras")) or ProcessPredictor.start(path)
"""

from __future__ import annotations

import logging
import threading
from contextlib import asynccontextmanager
from pathlib import Path

from ..errors import BrainclfError
from ..inference.inference_process import ProcessPredictor, stop_shared
from ..model.card import default_model
from .settings import load_settings

log = logging.getLogger(__name__)

_lock = threading.Lock()
_warming: dict[tuple[str, float], ProcessPredictor] = {}
_handed_over: set[tuple[str, float]] = set()  # never warmed twice: the caller's cache has it


def _key(path: Path) -> tuple[str, float] | None:
    try:
        return str(Path(path).resolve()), Path(path).stat().st_mtime  # a replaced file is a new model
    except OSError:
        return None


def start(path: Path | None) -> bool:
    """Have the model process load `path` unless that file version was started already.

    Returns:
        True when this call started loading it; False for no file, a started one, or an unreadable card (the
        page that needs the model reports that).
    """
    key = _key(path) if path is not None else None
    if key is None:
        return False
    with _lock:
        if key in _warming or key in _handed_over:
            return False
        try:
            _warming[key] = ProcessPredictor.start(Path(path))
        except (BrainclfError, OSError) as e:
            log.warning("no warm-up of %s: %s", Path(path).name, e)
            return False
    return True


def take(path: Path) -> ProcessPredictor | None:
    """The ProcessPredictor started for this file version, handed over once (the caller caches it), or None."""
    key = _key(path)
    with _lock:
        predictor = _warming.pop(key, None) if key else None
        if predictor is not None:
            _handed_over.add(key)
    return predictor


@asynccontextmanager
async def warm_default_model(_app):
    """st.App start-up hook: have the model process load the default model of the server's models folder.

    Bad settings are not reported here: the app's first run shows them to the visitor (app.py)."""
    try:
        start(default_model(load_settings().models_dir))
    except Exception as e:  # noqa: BLE001 - never keep the server from starting; the first visit shows the problem
        log.warning("no warm-up: %s", e, exc_info=not isinstance(e, BrainclfError))
    yield
    stop_shared()  # the server is shutting down: so does its model process
