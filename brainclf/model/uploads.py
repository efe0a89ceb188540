"""Adding an uploaded model (.keras + its card) to the models folder.

Everything that needs no TensorFlow is checked here, in the caller's process: the name, the card (schema), the
zip and the parameter budget its config declares (brainclf.model.model_archive), the file's hash against the card's,
and that the upload does not pass itself off as a model trained or installed on this server (its name or
version). Then Keras opens it through `check`: in the app the model process does (inference_process.
add_uploaded_model), so TensorFlow never loads into the server and the process's memory cap applies.

The card that lands names the model by the name it was added under and records the file's real SHA-256;
results name a model by name, version and that hash (ModelCard.label).
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock, Timeout

from ..errors import ModelError
from ..input import limits
from .card import (
    MAX_CARD_BYTES,
    SITE_STEP,
    ModelCard,
    card_path,
    file_sha256,
    iso_now,
    list_models,
    load_model,
    read_card,
)
from .card_schema import display_text, plain_label
from .model_archive import check_model_archive
from .model_files import check_free_disk, publish_model, staged_model

# One upload's checks against the installed models and its install at a time, across the server's processes: two
# uploads of one account at once must not both pass its count (MAX_UPLOADS_PER_ACCOUNT). An upload waits this long.
UPLOAD_LOCK = ".uploads.lock"
UPLOAD_WAIT_S = 120.0


def add_model(name: str, model_bytes: bytes, card_bytes: bytes, models_dir: str | Path = "models",
              uploaded_by: str | None = None, check: Callable[[Path], object] | None = None,
              uploaded_by_id: str | None = None) -> Path:
    """Check an uploaded model + card in a scratch folder, then add it to models_dir as NAME.keras with its
    provenance: who uploaded it (display name and, as `uploaded_by_id`, the stable account id: two people may
    share a name, and a display name is often the user's own to edit) and when, and that its metrics are the
    uploader's claim until evaluation.provenance.verify_uploaded_model re-measures them here. Any provenance in
    the upload is replaced.

    `check(path)` opens the model with Keras (load_model's checks); by default in this process (the CLI, tests),
    in the app in the model process. A bad upload never lands in models_dir; an existing model of the same name
    is never overwritten.

    Raises:
        ModelError: saying why the upload is refused.
    """
    limits.validate_model_name(name, ModelError)
    if len(card_bytes) > limits.MAX_UPLOAD_CARD_BYTES:
        raise ModelError(f"The model card is {limits.size_text(len(card_bytes))}, above the limit of "
                         f"{limits.size_text(limits.MAX_UPLOAD_CARD_BYTES)} for an uploaded card (a card trained "
                         "here is about 3 MB): keep fewer per-image rows in it.")
    models_dir = Path(models_dir)
    target = models_dir / f"{name}.keras"
    if target.exists():
        raise ModelError(f"A model named {name} already exists; rename the files first.")
    with tempfile.TemporaryDirectory() as tmp:
        mp = Path(tmp) / f"{name}.keras"
        mp.write_bytes(model_bytes)
        card_path(mp).write_bytes(card_bytes)
        card = read_card(mp)
        check_model_archive(mp)
        digest = file_sha256(mp)
        if card.file_sha256 and card.file_sha256 != digest:
            raise ModelError(f"{mp.name} does not match its card (file hash differs): the card belongs to another "
                             "model file.")
        size = len(model_bytes) + len(card_bytes)
        _check_against_installed(card, name, models_dir, uploaded_by_id, size)  # before opening it; again below
        (check or load_model)(mp)
        card.name, card.file_sha256 = name, digest
        card.provenance = upload_provenance(uploaded_by, uploaded_by_id)
        card.site = {}  # a site block is written by this server's site steps, never taken from an upload
        card.save(card_path(mp))
        models_dir.mkdir(parents=True, exist_ok=True)
        try:
            with FileLock(models_dir / UPLOAD_LOCK, timeout=UPLOAD_WAIT_S):
                _install(mp, card, name, models_dir, uploaded_by_id, size)
        except Timeout:
            raise ModelError("Other uploads are being installed; nothing was added: try again in a few "
                             "minutes.") from None
    return target


def _check_against_installed(card, name: str, models_dir: Path, account: str | None, size: int) -> None:
    installed = installed_cards(models_dir)  # read once for both checks
    check_not_installed(card, name, installed)
    check_room(models_dir, installed, account, size)


def _install(mp: Path, card, name: str, models_dir: Path, account: str | None, size: int) -> None:
    """Install the checked upload `mp` as models_dir/NAME.keras once it passes the checks against what is
    installed now (under the upload lock)."""
    _check_against_installed(card, name, models_dir, account, size)
    target = models_dir / f"{name}.keras"
    with staged_model(target, size) as (staged, staged_card):  # claimed atomically: a rival upload is refused
        shutil.copyfile(mp, staged)
        shutil.copyfile(card_path(mp), staged_card)
        publish_model(staged, staged_card, target)


@dataclass(frozen=True)
class InstalledCard:
    """What the upload checks need of an installed model's card: not its rows (a full read of 20 uploads' cards
    held them all at once, on every upload click)."""

    name: str
    version: str
    provenance: dict


def installed_cards(models_dir: Path) -> list[tuple[Path, InstalledCard]]:
    """The models in the folder with a card that reads as JSON, and their names, versions and provenance."""
    out = []
    for path in list_models(models_dir):
        try:
            if card_path(path).stat().st_size > MAX_CARD_BYTES:
                continue
            data = json.loads(card_path(path).read_bytes())
        except (OSError, ValueError, RecursionError):
            continue
        if isinstance(data, dict):
            prov = data.get("provenance")
            out.append((path, InstalledCard(str(data.get("name") or ""), str(data.get("version") or ""),
                                            prov if isinstance(prov, dict) else {})))
    return out


def check_not_installed(card: ModelCard, name: str, installed: list[tuple[Path, InstalledCard]]) -> None:
    """ModelError when an upload's card claims the name or version of a model trained or installed on this
    server (one whose card has no provenance), or is added under such a model's name: its results would be
    stamped as that model's."""
    for path, theirs in installed:
        if theirs.provenance:  # another upload: it has a name of its own, and its hash tells them apart
            continue
        names = {path.stem, theirs.name}
        clash = (f"the name {card.name}" if card.name in names else f"the name {name}" if name in names
                 else f"the version {card.version}" if card.version and card.version == theirs.version else None)
        if clash:
            raise ModelError(f"The uploaded card claims {clash[:90]}, which belongs to {path.stem}, a model trained "
                             "or installed on this server: an upload may not take an installed model's name or "
                             "version. Give the card a name and version of its own.")


def check_room(models_dir: Path, installed: list[tuple[Path, InstalledCard]], account: str | None,
               incoming: int) -> None:
    """ModelError when the account already has limits.MAX_UPLOADS_PER_ACCOUNT uploads installed (a site profile of
    one, which anyone with the right may make, keeps its uploader but is not theirs to count), or when the upload
    would leave less than limits.MIN_FREE_DISK_BYTES free on the models folder's disk."""
    if account:
        mine = sum(card.provenance.get("uploaded_by_id") == plain_label(account, 128)
                   and card.provenance.get("verified_by") != SITE_STEP for _, card in installed)
        if mine >= limits.MAX_UPLOADS_PER_ACCOUNT:
            raise ModelError(f"Your account has {mine} uploaded models installed, the most one account may have "
                             f"({limits.MAX_UPLOADS_PER_ACCOUNT}); ask an admin to remove those no longer needed.")
    check_free_disk(models_dir, incoming)


def maker_record(name: str | None, account: str | None) -> dict:
    """Who made a model on this server, as its card records it (brainclf.model.card_schema's Maker): their display
    name and account id, plain labels; {} when neither is known (a CLI run)."""
    record = {"name": name, "account": account}
    return {k: label for k, v in record.items() if v and (label := plain_label(v, 128))}


def person_words(record: dict | None) -> str:
    """'Alice (account sub:…)' from a card's Maker record, plain text; '' when it names no one."""
    record = record if isinstance(record, dict) else {}
    name, account = (display_text(plain_label(record.get(k) or "", 128), 64) for k in ("name", "account"))
    if name and account:
        return f"{name} (account {account})"
    return name or (f"account {account}" if account else "")


def upload_provenance(uploaded_by: str | None, uploaded_by_id: str | None = None) -> dict:
    """The provenance add_model records for an upload (the upload's own claims are never kept);
    brainclf.evaluation.provenance.verify_uploaded_model adds to it."""
    who = plain_label(uploaded_by, 128) if uploaded_by is not None else None
    account = plain_label(uploaded_by_id, 128) if uploaded_by_id else None
    return {"uploaded_by": who or None, **({"uploaded_by_id": account} if account else {}), "uploaded": iso_now(),
            "metrics_verified": False}
