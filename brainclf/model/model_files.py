"""Model files in the models folder. Publishing a finished model (training, upload, site runs) claims its name
atomically, so two writers of one name never overwrite each other's model; removing one (the app's admins)
moves the model and its card to MODELS/.removed/NAME-TIMESTAMP/, out of every model picker (list_models reads
the top level only) but recoverable by whoever runs the server."""

from __future__ import annotations

import os
import secrets
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..errors import ModelError
from ..input import limits
from ..input.limits import validate_model_name
from .card import card_path

REMOVED = ".removed"


def check_free_disk(folder: Path, incoming: int = 0) -> None:
    """ModelError when writing `incoming` bytes into `folder` would leave less than limits.MIN_FREE_DISK_BYTES free
    on its disk: every model written (an upload, a training's, a site step's) asks, so no user's models can fill
    the disk the server, its audit log and everyone's work share."""
    existing = next(p for p in (folder.resolve(), *folder.resolve().parents) if p.exists())
    free = shutil.disk_usage(existing).free
    if free - incoming < limits.MIN_FREE_DISK_BYTES:
        raise ModelError(f"The server's disk has {limits.size_text(free)} free; saving a model must leave "
                         f"{limits.size_text(limits.MIN_FREE_DISK_BYTES)}. Ask an admin to make room (removed models "
                         "take space until an admin deletes them for good on the Model page).")


@contextmanager
def staged_model(target: Path, incoming: int = 0) -> Iterator[tuple[Path, Path]]:
    """(model file, card file) to write a model meant for TARGET (MODELS/NAME.keras) into: hidden names beside it,
    on its file system, never listed (no card of their own name); removed on the way out unless published.
    `incoming`: the bytes about to be written, where known (check_free_disk is asked first)."""
    check_free_disk(target.parent, incoming)
    target.parent.mkdir(parents=True, exist_ok=True)
    stem = f".{target.stem}.{secrets.token_hex(4)}"
    model, card = target.with_name(f"{stem}.keras"), target.with_name(f"{stem}.card")
    try:
        yield model, card
    finally:
        model.unlink(missing_ok=True)
        card.unlink(missing_ok=True)


def publish_model(model: Path, card: Path, target: Path, replace: bool = False) -> Path:
    """Give a staged model and its card (staged_model) their names TARGET and its card path. The name is claimed
    atomically: the card is linked first (a card alone is never listed), then the model; if either name is
    taken, what this call linked is removed and nothing is overwritten. `replace`: a training run re-finalising
    its own model replaces it.

    Raises:
        ModelError: a model (or card) of that name exists; it was added while this one was being made.
    """
    if replace:
        os.replace(model, target)
        os.replace(card, card_path(target))
        return target
    linked: list[Path] = []
    try:
        for source, name in ((card, card_path(target)), (model, target)):
            _link_new(source, name)
            linked.append(name)
    except FileExistsError:
        for name in linked:
            name.unlink(missing_ok=True)
        raise ModelError(f"A model named {target.stem} already exists (it was added while this one was being "
                         "made); nothing was overwritten: give this one another name.") from None
    except OSError as e:  # a failed copy (disk full): nothing half-written stays under the name
        for name in linked:
            name.unlink(missing_ok=True)
        raise ModelError(f"The model {target.stem} could not be saved ({e.strerror or type(e).__name__}); "
                         "nothing was kept under its name.") from None
    return target


def _link_new(source: Path, name: Path) -> None:
    """Hard-link `source` as `name`, failing with FileExistsError if `name` exists; a file system without hard
    links gets an exclusive create and a copy."""
    try:
        os.link(source, name)
    except FileExistsError:
        raise
    except OSError:
        with open(name, "xb") as out:  # exclusive: the name is claimed here, so a failed copy removes it
            try:
                with open(source, "rb") as src:
                    shutil.copyfileobj(src, out)
            except OSError:
                out.close()
                name.unlink(missing_ok=True)
                raise


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
    # A token after the second: two removals in one second (two admins, or remove → upload → remove) each get one.
    dest = models_dir / REMOVED / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"
    try:
        dest.mkdir(parents=True, exist_ok=False)
        for f in (card_path(target), target):  # the card first: a model without its card is never listed
            if f.exists():
                f.replace(dest / f.name)
    except FileNotFoundError:  # removed by someone else meanwhile
        raise ModelError(f"There is no model named {name} to remove (it was removed meanwhile).") from None
    except OSError as e:
        raise ModelError(f"The model {name} could not be removed ({e.strerror or type(e).__name__}).") from None
    return dest
