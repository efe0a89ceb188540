"""Removing a model from the models folder (the app's admins): the model and its card move to
MODELS/.removed/NAME-TIMESTAMP/, out of every model picker (list_models reads the top level only) but
recoverable by whoever runs the server. Adding one is brainclf.model.uploads.add_model."""

from __future__ import annotations

import time
from pathlib import Path

from ..errors import ModelError
from ..input.limits import validate_model_name
from .card import card_path

REMOVED = ".removed"


def remove_model(model: str | Path, models_dir: str | Path) -> Path:
    """Move MODELS/NAME.keras and NAME.json into MODELS/.removed/NAME-TIMESTAMP/; return that folder.

    Raises:
        ModelError: the model is not a .keras file directly inside `models_dir`, or is missing.
    """
    models_dir = Path(models_dir).resolve()
    path = Path(model)
    name = path.stem
    validate_model_name(name, ModelError)
    target = models_dir / f"{name}.keras"
    if path.suffix != ".keras" or (path.is_absolute() and path.resolve() != target) or not target.is_file():
        raise ModelError(f"There is no model named {name} to remove.")
    dest = models_dir / REMOVED / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"
    dest.mkdir(parents=True, exist_ok=False)
    for f in (card_path(target), target):  # the card first: a model without its card is never listed
        if f.exists():
            f.replace(dest / f.name)
    return dest
