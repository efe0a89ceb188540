"""The names a site step's models take: SITE-MODEL for a site profile, SITE-MODEL-adapted for an adapted model,
'-2', '-3', … when a step is redone; a name of the user's own when given. Nothing is ever overwritten."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ..errors import BrainclfError, ModelError
from ..input.limits import MODEL_NAME_MAX, validate_model_name
from ..model.card import card_path
from ..model.model_files import publish_model
from ..training.state import name_held_by_a_run

__all__ = ["default_name", "free_default_name", "new_name", "publish_named"]


def default_name(site: str, model: str, suffix: str) -> str:
    """SITE-MODEL plus `suffix`, as a model name: a site name's dots become '-'; when too long, the site part is
    shortened first (to 8 characters at least), then the model's, so the suffix stays whole."""
    site = site.replace(".", "-")
    room = MODEL_NAME_MAX - len(suffix) - 1
    if len(site) + len(model) > room:
        site = site[:max(8, room - len(model))]
        model = model[:room - len(site)]
    return f"{site}-{model}{suffix}"


def free_default_name(models_dir: str | Path, site: str, model: str, suffix: str,
                      runs_root: str | Path | None = None) -> str:
    """The default name, or, when a step is redone (another target, or after a restart), the same with the first
    free '-2', '-3', …: nothing is overwritten, and a redo needs no name of its own. A name an unfinished training
    under `runs_root` will take is not free either."""
    for k in range(1, 100):
        name = default_name(site, model, suffix + (f"-{k}" if k > 1 else ""))
        if not _taken(Path(models_dir) / f"{name}.keras") and not _held(runs_root, name):
            return validate_model_name(name)
    raise BrainclfError(f"Site {site} already has 99 models of this step; remove some first.")


def new_name(models_dir: str | Path, name: str, runs_root: str | Path | None = None) -> str:
    """`name`, when it is a valid model name that no model (or card) in models_dir has and no unfinished training
    under `runs_root` will take."""
    validate_model_name(name)
    if _taken(Path(models_dir) / f"{name}.keras"):
        raise BrainclfError(f"A model named {name} already exists; nothing is overwritten: give another name.")
    if _held(runs_root, name):
        raise BrainclfError(f"An unfinished training named {name} can still be resumed, and its model will take "
                            "that name: give another name.")
    return name


def publish_named(models_dir: str | Path, name: str | None, free_name: Callable[[], str], staged: Path,
                  staged_card: Path, card_named: Callable[[str], object],
                  runs_root: str | Path | None = None) -> tuple[Path, object]:
    """Publish a staged model as models_dir/NAME, or, without a name, under free_name() asked now: a step chooses
    its default name when its work is done, so an upload or a restore that took the name while an adaptation ran
    does not make it refuse at the end; if another writer claims that name in the instant before, the next free
    one. card_named(chosen name) -> the card (with .save) to stage for that name; `runs_root`: new_name's.
    Returns (the published path, its card as staged): what the step records, read before anyone else could move
    the published files.

    Raises:
        BrainclfError: `name` was given and is taken (ModelError when taken in the instant before publishing).
    """
    for attempt in (1, 2, 3):
        chosen = new_name(models_dir, name, runs_root) if name else free_name()
        card = card_named(chosen)
        card.save(staged_card)
        out = Path(models_dir) / f"{chosen}.keras"
        try:
            return publish_model(staged, staged_card, out), card
        except ModelError:
            if name or attempt == 3 or not _taken(out):  # not taken: the copy failed (disk full), no retry helps
                raise
    raise AssertionError("three attempts either return or raise")


def _taken(model_path: Path) -> bool:
    """A name is taken by its model or by its card alone (publish_model refuses both)."""
    return model_path.exists() or card_path(model_path).exists()


def _held(runs_root: str | Path | None, name: str) -> bool:
    return runs_root is not None and name_held_by_a_run(runs_root, name)
