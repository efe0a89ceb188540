"""The Model page's table of installed models and the lists that pick one: each model in words, from its card."""

from __future__ import annotations

from ..evaluation.provenance import card_is_verified, maker_words
from ..model.card import short_hash as card_hash
from . import caveats, scope
from .views import _three, pct  # the Evaluation page's table formatters: one look for every table
from .wording import count as number


def model_row(stem: str, card, verified: bool, study: bool, mark: str | None = None) -> dict:
    """One installed model in words: the name and version first (at 1280 px the last columns scroll out of
    sight), its accuracy on another source's slices before its in-distribution test figure (the first is the one a
    clinic's scans will see), percentages and counts by the one formatter, '—' where the card has no figure."""
    test = card.test_metrics()
    mark = misses_words(card) if mark is None else mark  # model_listing's, worked out once
    never = not scope.external_reports(card)[0]  # in-distribution figures only: nothing says how it reads a clinic's
    use = ("study/baseline: not for reading scans" if study else f"comparison: {mark}" if mark
           else "research: never checked on another source" if never else "research")
    return {"model": stem, "version": card.version, "use": use,
            "other-source accuracy": other_source_accuracy(card),
            "test split accuracy (in-distribution)": pct(test.get("accuracy")),
            "macro AUC (test split)": _three(test.get("macro_auc")),
            "test figures": "measured by brainclf" if verified else "claimed by the uploader, not verified",
            "made by": maker_words(card),
            "architecture": card.architecture, "parameters": number(card.params or None),
            "epochs": number(card.training.get("epochs_run")), "flip TTA": "on" if card.tta_default else "off",
            "file SHA-256": card_hash(card.file_sha256), "input": card.contract.describe()}


def model_listing(stem: str, card) -> dict:
    """What lists of models show of one (the picker's label, the Model page's row, whether its figures were
    measured here), from its card or None for an unreadable one: a few hundred bytes an app can keep for every
    installed model."""
    verified = card is not None and card_is_verified(card)
    study = scope.is_study_card(card)
    mark = misses_words(card) if card is not None and not study else ""
    label = scope.model_choice_label(stem, card, verified=verified)
    return {"label": label + (f" · {mark}" if mark else ""), "verified": verified, "card": card is not None,
            "row": model_row(stem, card, verified, study, mark) if card is not None else None}


def other_source_accuracy(card) -> str:
    """The card's external validation in a few words, e.g. "74.9 % of 427 external-radiopaedia (split run)"
    ("split run": measured by the recipe's split run, this model refit on those cases too); "never checked"."""
    externals, recipe = scope.external_reports(card)
    words = [f"{scope.external_pct(ext, pct)} of {number(ext.get('n'))} {name}" for name, ext in externals.items()]
    return "; ".join(words) + (" (split run)" if recipe and words else "") if words else "never checked"


def misses_words(card) -> str:
    """The picker's and the table's short mark where caveats.unreferred_miss_warning has one, else ''."""
    if not caveats.unreferred_miss_warning(card):
        return ""
    return "misses tumours " + ("at its site" if card.measured_site else "on other sources")
