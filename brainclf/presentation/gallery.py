"""The Evaluation page's galleries: image files decoded as the model sees them, with the Grad-CAM of their
predicted class blended on top. Overlays are cached (shared by the server's sessions) by model version and the
file's content, so a rerun of the page recomputes nothing. No Streamlit here.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .. import CLASS_NAMES
from ..errors import ImageError, ModelError
from ..evaluation.analysis import resolve_image
from ..inference.explain import overlay_heatmap
from ..input.preprocess import load_model_input
from ..input.reading import read_image_file
from .views import label, pct


class _LRU:
    """A small thread-safe LRU (the server's sessions share it)."""

    def __init__(self, size: int):
        self.size, self._d, self._lock = size, OrderedDict(), threading.Lock()

    def get(self, key, make):
        with self._lock:
            if key in self._d:
                self._d.move_to_end(key)
                return self._d[key]
        value = make()
        with self._lock:
            self._d[key] = value
            while len(self._d) > self.size:
                self._d.popitem(last=False)
        return value


OVERLAYS = _LRU(256)  # 160×160 RGB overlays: about 20 MB at most


def gradcam_overlay(predictor, path: Path, class_index: int, opacity: float = 0.45) -> np.ndarray:
    """The model input of an image file with the Grad-CAM of `class_index` blended on top (RGB uint8). Cached by
    model version, input contract, class and the file's content: a rerun of the page recomputes nothing."""
    data = read_image_file(path)
    card = predictor.card
    key = (card.label, card.file_sha256, str(card.input_contract), class_index, opacity,
           hashlib.sha256(data).hexdigest())

    def make():
        x = load_model_input(data, predictor.contract, name=Path(path).name)
        return overlay_heatmap(x, predictor.gradcam(x, class_index), opacity)

    return OVERLAYS.get(key, make)


@dataclass
class GalleryItem:
    name: str
    caption: str
    image: np.ndarray | None = None  # None: the file is not in the dataset


@dataclass
class Gallery:
    items: list[GalleryItem] = field(default_factory=list)
    more: str = ""  # "… and 3 more."
    table: list[dict] | None = None  # no dataset to open: the rows as a table instead


def probability_text(probs) -> str:
    """'Glioma 80.0 %, Meningioma 15.0 %': the classes at 1 % or more, most likely first."""
    pairs = sorted(zip(CLASS_NAMES, probs), key=lambda cp: -cp[1])
    return ", ".join(f"{label(c)} {pct(p)}" for c, p in pairs if p >= 0.01)


def gallery(predictor, rows: list[dict], root, allowed, limit: int = 12, start: int = 0,
            cam_of: str = "pred") -> Gallery:
    """Up to `limit` images of `rows` from `start` on (a page of them) with the Grad-CAM of their predicted class
    (`cam_of="true"`: of their true class, where the model would have had to look to be right); without a dataset
    root, the rows as a table (file, probability per class)."""
    if not rows:
        return Gallery()
    start = min(max(int(start), 0), max(len(rows) - 1, 0))
    shown = rows[start:start + limit]
    first, last = start + 1, start + len(shown)
    more = "" if len(rows) <= limit else (f"Image {first:,} of {len(rows):,}." if first == last
                                          else f"Images {first:,}–{last:,} of {len(rows):,}.")
    if not root:
        return Gallery(table=[{"file": r["path"], **{label(c): pct(p) for c, p in zip(CLASS_NAMES, r["probs"])}}
                              for r in rows])
    items = []
    model_down = False  # after one "busy" or "stopped", the rest show their captions without asking again
    for r in shown:
        name = Path(str(r["path"])).name
        path = resolve_image(r["path"], root, allowed=allowed)
        if path is None:
            items.append(GalleryItem(name, f"{name}: not found in the dataset"))
            continue
        overlay = None
        if not model_down:
            try:
                overlay = gradcam_overlay(predictor, path, CLASS_NAMES.index(r[cam_of]))
            except ImageError:
                items.append(GalleryItem(name, f"{name}: the image could not be read"))
                continue
            except (ModelError, ValueError) as e:  # the model process stopped or is busy, or no Grad-CAM for it
                model_down = isinstance(e, ModelError)
        caption = f"{name}: {probability_text(r['probs'])}" + (" (no Grad-CAM just now)" if overlay is None else "")
        items.append(GalleryItem(name, caption, overlay))
    return Gallery(items, more)
