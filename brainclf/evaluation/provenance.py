"""Where a model comes from, and whether the figures in its card were measured here.

A model trained by brainclf.training has no provenance: its card's metrics were measured by this code. An
uploaded one (brainclf.model.uploads.add_model) gets {"uploaded_by", "uploaded", "metrics_verified": False}: its
metrics are the uploader's claim, however plausible, until verify_uploaded_model re-measures them on this
server's own test data. The pages are meant to show `provenance_note` beside such a model's figures.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

from .. import CLASS_NAMES, __version__
from ..errors import ModelError
from ..inference.predict import Predictor
from ..model.card import ModelCard, card_path, file_sha256, iso_now, read_card
from ..model.card_schema import display_text, plain_label
from ..model.uploads import person_words
from .evaluate import evaluate_folder


def verify_uploaded_model(model_path: str | Path, data_root: str | Path,
                          progress: Callable[[int, int], None] | None = None, predictor=None) -> ModelCard:
    """Re-measure an uploaded model's test metrics on this server's own data and record them in its card.

    `data_root` is a Training/Testing root (every split but Training is evaluated, paths stored relative to
    the root as trained cards store them) or a folder of class sub-folders. metrics.test and
    test_predictions are replaced by the measurement (and metrics.test_tta / test_predictions_tta, measured
    with flip TTA, when the card has them or runs with TTA by default); provenance gets metrics_verified =
    True, the time, what was measured on (folder name, images per class, a hash of the file list) and the
    accuracy the uploader claimed (kept from the first verification when re-measured). `predictor`: the model
    already loaded (the app passes its model-process one: an upload is never opened in the server's own process);
    by default it is loaded here. Other sections (validation and external metrics, faithfulness) stay as
    uploaded. Returns the saved card.

    Raises:
        ModelError: the model does not load, was not uploaded (trained here: nothing to verify), or is a site model.
        DataError: the folder has no images to evaluate.
    """
    path, data = Path(model_path), Path(data_root)
    predictor = predictor or Predictor.load(path)
    card = read_card(path)  # its own copy to fill in: a predictor's card may be shared by every session
    _check_verifiable(path, card)
    _check_own_source(card, data)
    claimed = card.provenance.get("claimed_test_accuracy") if card_is_verified(card) else \
        (card.metrics.get("test") or {}).get("accuracy")
    measured = {}
    for split, tta in (("test", False), ("test_tta", True)):
        if tta and not (card.tta_default or card.metrics.get("test_tta") or card.test_predictions_tta):
            continue
        report = evaluate_folder(predictor.with_tta(tta), data, progress=progress, external=False)
        report.pop("data", None)  # the server's folder path is not the card's business
        measured[split] = (report, report.pop("predictions"))
    report, rows = measured["test"]
    card.metrics["test"], card.test_predictions = report, rows
    card.metrics["test_tta"], card.test_predictions_tta = measured.get("test_tta", (None, []))
    if card.metrics["test_tta"] is None:
        del card.metrics["test_tta"]
    counts = {c: sum(r["true"] == c for r in rows) for c in CLASS_NAMES}
    listing = "\n".join(sorted(r["path"] for r in rows))
    card.provenance.update({
        "metrics_verified": True, "verified": iso_now(), "verified_by": f"brainclf {__version__}",
        "verified_on": {"root_name": plain_label(own_test_data(card, data), 128), "n": len(rows), "counts": counts,
                        "file_list_sha256": hashlib.sha256(listing.encode()).hexdigest()},
        "claimed_test_accuracy": claimed})
    _check_still_there(path, card)
    card.save(card_path(path))
    return card


def _check_verifiable(path: Path, card: ModelCard) -> None:
    """ModelError for a model whose figures were all measured here: trained here, or a site model of an upload
    (re-measuring would overwrite the mark that its site figures were measured here)."""
    if not card.provenance:
        raise ModelError(f"{path.name} was not uploaded (its card has no provenance): its metrics were measured "
                         "when it was trained here.")
    if card.measured_site:
        raise ModelError(f"{path.name} is a site model of an upload, its figures measured here by its site steps: "
                         "verify the uploaded model it was made from instead.")


def training_source(card: ModelCard) -> str:
    """The name the card gives its primary training source ('' when it names none)."""
    return str((card.training.get("fingerprint") or {}).get("root_name") or "")


def own_test_data(card: ModelCard, data: Path) -> str | None:
    """How `data` is named in a verified card ('brain-tumor-mri', or 'brain-tumor-mri/Testing') when it is the card's
    training source or a test split in it, else None: a re-measured figure replaces the test split's and reads
    in-distribution (another hospital's slices are the site workflow's; a Training folder is what it learnt from)."""
    source, folder = training_source(card), data.resolve()
    if source and folder.name == source:
        return source
    if source and folder.parent.name == source and folder.name.lower() not in ("training", "train"):
        return f"{source}/{folder.name}"
    return None


def _check_own_source(card: ModelCard, data: Path) -> None:
    """ModelError unless own_test_data names `data`."""
    source = training_source(card)
    if not source:
        raise ModelError(f"{card.name}'s card names no training source, so no dataset here can stand in for its "
                         "test split; validate it on labelled slices with the site workflow instead.")
    if own_test_data(card, data) is None:
        raise ModelError(f"{card.name}'s test figures come from the test split of its training source, "
                         f"{plain_label(source, 64)}; {plain_label(data.resolve().name, 64)} is not that. Re-measure "
                         f"it on {plain_label(source, 64)}, or validate it on other slices with the site workflow.")


def _check_still_there(path: Path, card: ModelCard) -> None:
    """An admin may have removed (or someone replaced) the model while it was measured: a card saved back beside no
    model, or another one, would claim figures for nothing and keep the name from being used again."""
    if not path.is_file() or file_sha256(path) != card.file_sha256:
        raise ModelError(f"{path.name} was removed or replaced while it was re-measured; nothing was recorded.")


def card_is_verified(card: ModelCard) -> bool:
    """Whether the card's test metrics were measured on this server: a model trained here (no provenance),
    or an uploaded one that verify_uploaded_model re-measured. False: the figures are the uploader's claim."""
    prov = card.provenance or {}
    return not prov or prov.get("metrics_verified") is True


def provenance_note(card: ModelCard) -> str | None:
    """One plain-text line for an uploaded model ('uploaded by X on DATE; test metrics claimed by the uploader,
    not verified on this server's data'), or None for a model trained here. Show it with st.text/st.caption."""
    prov = card.provenance or {}
    if not prov:
        return None
    who = _uploader(prov)
    when = display_text(str(prov.get("uploaded") or "")[:10], 10)  # the date of an ISO time
    if card_is_verified(card):
        on, verified = prov.get("verified_on") or {}, display_text(str(prov.get("verified") or "")[:10], 10)
        return (f"Uploaded by {who} on {when}; test metrics re-measured on this server ({on.get('n', '?')} images "
                f"of {display_text(on.get('root_name', '?'), 64)}, {verified}).")
    return f"Uploaded by {who} on {when}; test metrics claimed by the uploader, not verified on this server's data."


def _uploader(prov: dict) -> str:
    """'Eve (account sub:…)': the uploader's name and account (two people may share a display name)."""
    return person_words({"name": prov.get("uploaded_by") or "an unnamed user", "account": prov.get("uploaded_by_id")})


def made_here_words(card: ModelCard) -> list[str]:
    """Who made the model on this server, as its card records it: the site step's runner, then who started the
    training of the weights (not an upload's: provenance_note says who uploaded it); [] where nobody is recorded
    (a CLI run, a bundled model, a card from before this was recorded). Plain text."""
    site = card.site or {}
    words = []
    if who := person_words(site.get("made_by")):
        how = "Fine-tuned" if site.get("adapted") else "Calibrated"
        words.append(f"{how} for site {display_text(site.get('name') or '?', 64)} by {who}")
    if not card.provenance and (who := person_words((card.training or {}).get("started_by"))):
        when = display_text(str((card.training or {}).get("started") or "")[:10], 10)
        words.append(f"trained on this server by {who}" + (f", started {when}" if when else ""))
    return words


def made_here_note(card: ModelCard) -> str | None:
    """made_here_words as one plain-text sentence for the Home page (beside provenance_note), or None."""
    words = "; ".join(made_here_words(card))
    return f"{words[0].upper()}{words[1:]}." if words else None


def maker_words(card: ModelCard) -> str:
    """The models table's short 'made by' cell: the site step's runner, the uploader or the trainer recorded in
    the card; 'not recorded' where it names no one."""
    prov = card.provenance or {}
    words = made_here_words(card)
    if prov:
        words.append(f"uploaded by {_uploader(prov)}")
    return "; ".join(words) if words else "not recorded"
