"""The Evaluation page's "Compare models", ready to lay out: two cards on their own test splits (an in-distribution
comparison, labelled so and naming its dataset) and, file by file, on every external dataset both cards hold
per-image rows for. An uploader's claimed figures are marked and get no paired test. No Streamlit here."""

from __future__ import annotations

from ..escaping import md_literal
from ..evaluation.analysis import paired_comparison, report_from_rows
from ..evaluation.provenance import card_is_verified
from .comparison_words import no_paired_test, paired_words, second_name
from .scope import claim_words, external_words, missing_test_rows_words, upper_estimate
from .views import comparison, count, pct
from .wording import count as number


def compare_cards(card_a, card_b, tta: bool, name_b: str) -> dict:
    """What "Compare models" shows for the active model's card and another's (`card_b` None: unreadable; `name_b`:
    its file's name): {"missing": why there is no test-split comparison (Markdown) or None, "test": the
    views.comparison dict plus "caption" and "figures" [(confusion matrix, title, data)] or None, "external": one
    Markdown sentence per external dataset, or one saying none can be paired}. Both test splits with flip TTA
    where both cards store it and `tta` is on, else both without."""
    out = {"missing": None, "test": None, "external": external_comparison(card_a, card_b) if card_b else []}
    both_tta = bool(tta and card_b is not None and card_a.stored_test_predictions(True)[1]
                    and card_b.stored_test_predictions(True)[1])
    rows_b, tta_b = card_b.stored_test_predictions(both_tta) if card_b else ([], False)
    rows_a, tta_a = card_a.stored_test_predictions(both_tta)
    if not rows_a or not rows_b:
        short, name = (card_b, name_b) if not rows_b else (card_a, card_a.name)
        out["missing"] = f"{md_literal(name)} {missing_test_rows_words(short, tta)}"
        return out
    report_a, report_b = report_from_rows(rows_a), report_from_rows(rows_b)
    claimed = (not card_is_verified(card_a), not card_is_verified(card_b))
    test = comparison(card_a.name, report_a, card_a.params, rows_a, card_b.name, report_b, card_b.params, rows_b,
                      claimed)
    figures = [(r["confusion_matrix"], f"{c.name}: confusion matrix",
                f"its test split of {test_source(c)} (in-distribution), {count(r['n'])}")
               for c, r in ((card_a, report_a), (card_b, report_b))]
    return {**out, "test": {**test, "caption": test_caption(card_a, card_b, tta_a and tta_b), "figures": figures}}


def test_source(card) -> str:
    """The dataset a card's test split was drawn from (its primary training source), by the name it recorded."""
    return str((card.training.get("fingerprint") or {}).get("root_name") or "an unrecorded dataset")


def test_caption(card_a, card_b, tta: bool) -> str:
    """The test-split comparison's label, as Markdown that renders literally: in-distribution, on which data."""
    a, b = test_source(card_a), test_source(card_b)
    data = f"of {a}" if a == b else f"({card_a.name}: {a}; {card_b.name}: {b})"
    return md_literal(f"In-distribution: both models on their cards' test splits {data}, drawn from the same source "
                      f"as their training images, {'with' if tta else 'without'} flip TTA. Not how either reads "
                      "another hospital's scans: the comparison on external data below is.")


def external_comparison(card_a, card_b) -> list[str]:
    """One Markdown sentence per external dataset both cards hold per-image rows for, paired on the files both have
    rows for (a model trained on part of a source holds rows for its held-out files only); one for the datasets only
    one card holds; and, where they share none, one saying so with each card's recorded figure."""
    rows_a, rows_b = card_a.external_predictions or {}, card_b.external_predictions or {}
    shared = [d for d in rows_a if rows_a[d] and rows_b.get(d)]
    out = [_external_pair(d, card_a, card_b) for d in shared]
    alone = sorted(d for d in {*rows_a, *rows_b} if d not in shared)
    if not shared:
        out.append(md_literal(
            f"No paired comparison on external data: {card_a.name} and {card_b.name} hold no per-image "
            f"rows for the same external dataset. As recorded in their cards, on different images: {card_a.name} "
            f"{external_words(card_a)}{claim_words(card_a, True)}; {card_b.name} {external_words(card_b)}"
            f"{claim_words(card_b, True)}."))
    elif alone:
        out.append(md_literal(f"Not paired, per-image rows in one card only: {', '.join(alone)}."))
    return out


def _external_pair(dataset: str, card_a, card_b) -> str:
    """Two cards on one external dataset, paired on the files both hold rows for (case groups resampled where the
    rows carry them)."""
    a, b = card_a.external_predictions[dataset], card_b.external_predictions[dataset]
    name_a, name_b = card_a.name, second_name(card_a.name, card_b.name)
    claimed = [c.name for c in (card_a, card_b) if claim_words(c, external=True)]
    paired = paired_comparison(a, b, tests=not claimed)  # no interval or p-value on an uploader's claim
    head = f"External data, **{md_literal(dataset)}**{_modes(dataset, card_a, card_b, name_a, name_b)}: "
    held = f"({md_literal(name_a)} {number(len(a))}, {md_literal(name_b)} {number(len(b))})"
    if not paired["n"]:
        return head + f"the two cards hold per-image rows {held} for no file in common: nothing to pair."
    lead = f"on the {count(paired['n'], 'file')} both cards hold per-image rows for {held}"
    if claimed:
        return (head + f"{lead}: {md_literal(name_a)} {pct(paired['accuracy_a'])}, {md_literal(name_b)} "
                f"{pct(paired['accuracy_b'])}. " + no_paired_test(claimed, f"rows on {md_literal(dataset)}"))
    loose = [n for n, c in ((name_a, card_a), (name_b, card_b))
             if upper_estimate(((c.metrics.get("external") or {}).get(dataset)) or {})]
    bound = (f" For {md_literal(' and '.join(loose))}, the held-out cases of {md_literal(dataset)} had neighbouring "
             "slices in training: its accuracy here is an upper estimate, as is any lead it shows.") if loose else ""
    return head + paired_words(paired, name_a, name_b, lead) + bound


def _modes(dataset: str, card_a, card_b, name_a: str, name_b: str) -> str:
    """', measured with flip TTA on for a, off for b' where the two cards' rows differ in it, else ''."""
    on = [bool(((c.metrics.get("external") or {}).get(dataset) or {}).get("tta")) for c in (card_a, card_b)]
    if on[0] == on[1]:
        return ""
    return (f", measured with flip TTA {'on' if on[0] else 'off'} for {md_literal(name_a)}, "
            f"{'on' if on[1] else 'off'} for {md_literal(name_b)}")
