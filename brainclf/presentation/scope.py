"""What a model was validated on, in words a clinician can check a scan against.

Read from the card: the training sources (with their licences), the classes each covered, and the MR
sequences of the external validation. An upload that looks unlike all of them is flagged by the OOD guard
(brainclf.inference.ood); this module only says what "like them" means.
"""

from __future__ import annotations

from .. import CLASS_NAMES, DISPLAY_NAMES
from ..data.sources import SAME_CASE_THRESHOLD, is_non_commercial
from ..evaluation.external import MIN_INTERVAL_GROUPS
from ..evaluation.provenance import card_is_verified
from ..scoring.rates import sensitivity_specificity
from .wording import class_label, is_study_model, pct, plural


def external_reports(card) -> tuple[dict, dict | None]:
    """(the external validation summaries to show, the recipe_run block they come from or None): the card's own,
    else, for a refit (which learnt from its recipe's held-out cases), its split run's (brainclf.training.refit)."""
    own = card.metrics.get("external", {})
    recipe = None if own else (card.extra or {}).get("recipe_run")
    return (recipe.get("external", {}), recipe) if recipe else (own, None)


def sensitivity_rows(rows: list[dict], ext_rates: list[dict], ext_words: str) -> list[dict]:
    """Home's table: each finding's sensitivity and specificity on the Kaggle test rows and, where the card has
    them (external_rates), on the external source (its columns named by `ext_words`)."""
    ext = {t["finding"]: t for t in ext_rates}
    return [{"finding": class_label(t["finding"]), "sensitivity (Kaggle)": pct(t["sensitivity"]),
             "specificity (Kaggle)": pct(t["specificity"]),
             **({f"sensitivity ({ext_words})": pct(ext.get(t["finding"], {}).get("sensitivity")),
                 f"specificity ({ext_words})": pct(ext.get(t["finding"], {}).get("specificity"))} if ext else {})}
            for t in (sensitivity_specificity(rows) if rows else [])]


def claim_words(card, external: bool = False) -> str:
    """'' for figures measured on this server; ', claimed by the uploader, not verified' for an upload's test
    figures until re-measured, and for its external ones always (verifying re-measures the test split only), but
    for a site model's (its site's held-out figures are measured by the site steps)."""
    measured = (not card.provenance or bool(card.measured_site)) if external else card_is_verified(card)
    return "" if measured else ", claimed by the uploader, not verified"


def is_study_card(card) -> bool:
    """A study/baseline model (the seed CNN, or under 90 % test accuracy): not for reading scans."""
    return card is not None and is_study_model(card.architecture, card.test_metrics().get("accuracy"))


def validated_scope(card) -> dict:
    """{"sources": [...], "classes": [...], "sequences": [...], "external": [...], "sentence": str}."""
    sources = card.training.get("sources") or [
        {"name": (card.training.get("fingerprint") or {}).get("root_name", "unrecorded"), "primary": True}]
    classes = set()
    for s in sources:
        counts = (s.get("fingerprint") or {}).get("counts", {})
        classes |= {c for part in counts.values() for c, n in part.items() if n}
    primary_counts = (card.training.get("fingerprint") or {}).get("counts", {})
    classes |= {c for part in primary_counts.values() for c, n in part.items() if n}
    externals, recipe = external_reports(card)
    sequences = sorted({seq for ext in externals.values() for seq in ext.get("by_sequence", {}) if seq != "unknown"})
    ordered = [c for c in CLASS_NAMES if c in classes] or list(CLASS_NAMES)
    names = [s["name"] for s in sources]
    validated = [f"{name} ({plural(ext['n'], 'image')}, {external_pct(ext)} accurate)"
                 for name, ext in externals.items()]
    sentence = (f"Trained on {', '.join(names)}; classes {', '.join(DISPLAY_NAMES[c] for c in ordered)}. "
                + (f"Checked on other-source slices: {'; '.join(validated)}"
                   + (f", sequences {', '.join(sequences)}" if sequences else "")
                   + (f" (measured by this recipe's split run {recipe.get('model')}; this model was then refit on "
                      "those cases too)" if recipe else "") + "."
                   if validated else "Never checked on slices from another source: its figures are "
                                     "in-distribution only."))
    if card.site:
        sentence = f"{site_scope(card)}. {sentence}"
    return {"sources": names, "classes": ordered, "sequences": sequences, "external": list(externals),
            "licences": [s.get("licence", "") for s in sources if s.get("licence")], "sentence": sentence}


def site_scope(card) -> str:
    """The card's "validated at SITE: …" words, capitalised; an upload's own marked as its uploader's claim
    (uploads re-measure the test split only), a profile of an upload (ModelCard.measured_site) not."""
    scope = card.site["scope"]
    if not card.measured_site:
        return f"Claimed by its uploader (not measured here): {scope}"
    return f"{scope[0].upper()}{scope[1:]}"


def source_tag(card) -> str:
    """Short words for a model picker: which sources it learnt from and whether that restricts its use."""
    sources = [s for s in card.training.get("sources") or [] if not s.get("primary")]
    if not sources:
        return "Kaggle only"
    tag = "Kaggle + " + " + ".join(s["name"] for s in sources)
    return tag + (" · non-commercial" if any(is_non_commercial(s.get("licence", "")) for s in sources) else "")


def upper_estimate(ext: dict) -> bool:
    """Whether a recorded external figure comes from a training split whose case groups joined only re-encodings
    of one slice (cards split before 2026-12-06 record no case_grouping_bits): neighbouring slices of held-out
    cases were in training, so the figure is an upper estimate."""
    return (str(ext.get("membership", "")).startswith("held-out case groups")
            and (ext.get("case_grouping_bits") or 0) < SAME_CASE_THRESHOLD)


# Why such a split's figures are bounds, not estimates (caveats.grouping_caveat, views.external_view).
LOOSE_SPLIT_WHY = ("joined only re-encodings of one slice into a case, so neighbouring slices of some held-out cases "
                   "were in training")


def upper_mark(upper: bool) -> str:
    """'≤ ' before an accuracy that is an upper estimate (upper_estimate), else ''."""
    return "≤ " if upper else ""


def lower_mark(lower: bool) -> str:
    """'≥ ' before such a split's share of tumours called 'no tumour': a lower estimate (the honest split of
    default_split's recipe read 14.5 % where it read 13.0 %). Not before the share neither referred nor flagged,
    which depends on confidence too and went the other way there (0 of 339 against 1)."""
    return "≥ " if lower else ""


def external_pct(ext: dict, fmt=pct) -> str:
    """A recorded external accuracy as every page shows it: '≤ 74.9 %' where it is an upper estimate (`fmt`: the
    percentage formatter of the table it goes in)."""
    return upper_mark(upper_estimate(ext)) + fmt(ext.get("accuracy"))


def external_summary(card) -> dict | None:
    """Every recorded other-source validation pooled: {"n", "accuracy", "upper" (any an upper estimate), "datasets":
    [(name, n, accuracy, upper estimate)]};
    None when the model was never measured on another source."""
    external, recipe = external_reports(card)
    done = [(name, int(ext["n"]), float(ext["accuracy"]), upper_estimate(ext)) for name, ext in external.items()
            if ext.get("n") and ext.get("accuracy") is not None]
    if not done:
        return None
    n = sum(k for _, k, _, _ in done)
    return {"n": n, "accuracy": sum(k * a for _, k, a, _ in done) / n, "datasets": done,
            "recipe_run": recipe.get("model") if recipe else None, "upper": any(u for *_, u in done)}


def external_words(card) -> str:
    """'74.9 % right (427 slices of external-radiopaedia)', or 'not measured on any other source'."""
    ext = external_summary(card)
    if ext is None:
        return "not measured on any other source"
    where = _datasets_words(ext, "")
    # A refit model learnt from those held-out cases: the figure is its recipe's, measured by the split run.
    run = f", by its split run {ext['recipe_run']}" if ext.get("recipe_run") else ""
    upper = upper_mark(ext["upper"])
    if len(ext["datasets"]) == 1:
        return f"{upper}{pct(ext['accuracy'])} right ({plural(ext['n'], 'slice')} of {ext['datasets'][0][0]}{run})"
    return f"{upper}{pct(ext['accuracy'])} right ({plural(ext['n'], 'slice')}: {where}{run})"


def _datasets_words(ext: dict, right: str) -> str:
    """'≤ 74.9 %{right} on 427 slices of external-radiopaedia; …' for an external_summary's datasets."""
    return "; ".join(f"{upper_mark(u)}{pct(a)}{right} on {plural(k, 'slice')} of {name}"
                     for name, k, a, u in ext["datasets"])


def external_rates(card) -> tuple[list[dict], str] | None:
    """(sensitivity and specificity per finding on the first external source, the column label's source words):
    from the card's own per-image rows, else (a refit) its split run's; None when neither exists."""
    externals, recipe = external_reports(card)
    if recipe is None:
        rows = next(iter(card.external_predictions.values()), None) if externals else None
        return (sensitivity_specificity(rows), "external") if rows else None
    rates = next(iter((recipe.get("sensitivity_specificity") or {}).values()), None)
    return (rates, f"external, split run {recipe.get('model')}") if rates else None


def no_external_note(card) -> str:
    """What the Evaluation page says where a model has no external validation of its own: a refit points to the
    split run that holds its recipe's figures, anything else to how to measure one."""
    recipe = external_reports(card)[1]
    if recipe and (ext := external_summary(card)):
        where = _datasets_words(ext, " right")
        return (f"This model was refit on its recipe's external held-out cases too, so it has no held-out figure "
                f"of its own there. Its recipe's figure ({where}) comes from the split run {recipe.get('model')} "
                f"(version {recipe.get('version')}): pick that model for the per-sequence figures and the "
                "misclassified slices.")
    return ("No external validation is recorded for this model. Re-evaluate it on an external folder, or run "
            "`python -m brainclf evaluate --model … --data EXTERNAL --record`.")


def case_scope_line(card, tta: bool | None = None) -> str:
    """One line under a case's verdict: the validated scope in a few words, how right the model was on other
    sources' scans, and its in-distribution test accuracy second (`tta`: as the model runs)."""
    scope = validated_scope(card)
    test = card.test_metrics(tta=tta).get("accuracy")
    kaggle = f"; on the Kaggle test split {pct(test)} (in-distribution{claim_words(card)})" if test is not None else ""
    if card.site:  # a site profile or adapted model: the site's own held-out figures come first
        return f"Scope: {site_scope(card)}{kaggle}."
    ext = external_words(card)
    how = "Claimed by its uploader (not measured here) on" if card.provenance else "Measured on"
    measured = f"{how} other sources' scans: {ext}" if external_summary(card) else ext.capitalize()
    return f"Scope: brain MRI slices like those of {few(scope['sources'])}. {measured}{kaggle}."


def few(names: list[str], shown: int = 3) -> str:
    """'a and b', 'a, b, c and 4 more': a line that must fit a report page names a few and counts the rest."""
    if len(names) <= shown:
        return " and ".join(names)
    return f"{', '.join(names[:shown])} and {len(names) - shown} more"



def non_commercial(card) -> bool:
    """Whether a source the model learnt from restricts it to non-commercial use (its licence says NC)."""
    return any(is_non_commercial(s.get("licence", "")) for s in card.training.get("sources") or [])


def model_choice_label(stem: str, card, verified: bool) -> str:
    """How the model picker names a model: 'seed (seed, Kaggle only; other source 23.3 % of 1,281; Kaggle test
    68.4 % (in-distribution)) · study/baseline: not for reading scans'. `verified`: its figures were re-measured
    here; an upload's otherwise read as its uploader's claim. A refit's other-source figure says it comes from its
    split run."""
    if card is None:
        return f"{stem} (card unreadable)"
    acc, ext = card.test_metrics().get("accuracy"), external_summary(card)
    # The picker's short form of claim_words; the other source's figure first (a clinic's scans are another source).
    claimed = "" if verified else " claimed, not verified"
    ext_claimed = " claimed, not verified" if claim_words(card, external=True) else ""
    parts = [f"other source {upper_mark(ext['upper'])}{pct(ext['accuracy'])} of {ext['n']:,}{ext_claimed}"
             + (" by its split run" if ext["recipe_run"] else "") if ext else "other source never checked",
             f"Kaggle test {pct(acc)} (in-distribution){claimed}" if acc else ""]
    label = f"{stem} ({card.architecture}, {source_tag(card)}" + "".join(f"; {x}" for x in parts if x) + ")"
    return label + (" · study/baseline: not for reading scans" if is_study_card(card) else "")


def group_interval(intervals: dict | None, key: str = "accuracy", name: str = "accuracy", lead: str = "") -> str:
    """How a case-group interval was got, in words, after `lead`: 'over 151 case groups' (percentile bootstrap),
    'exact, over 14 case groups' where every resample agreed (brainclf.evaluation.external fell back to
    Clopper-Pearson, naming the figure `name` in its method); or, without `lead`, why there is none ('no interval:
    4 case group(s), …')."""
    iv = intervals if isinstance(intervals, dict) else {}
    method = str(iv.get("method") or "")
    if not iv.get(key):  # the card's own words are not shown: a cell of st.table is Markdown
        groups = iv.get("groups")
        counted = isinstance(groups, int) and not isinstance(groups, bool) and groups >= 0
        return (f"no interval: {plural(groups, 'case group')}, fewer than the {MIN_INTERVAL_GROUPS} it needs"
                if counted and groups < MIN_INTERVAL_GROUPS else "no interval")
    exact = name in method.partition("agreed: ")[2].split(", ")
    return f"{lead}{'exact, ' if exact else ''}over {plural(iv.get('groups') or 0, 'case group')}"


def missing_test_rows_words(card, tta_on: bool) -> str:
    """Why a card gives no test rows to compare with: stored with flip TTA only while it is off (a site model's
    check ran that way), or none at all."""
    if card is not None and not tta_on and card.stored_test_predictions(True)[1]:
        return ("holds its test predictions with flip TTA only (a site model's check ran that way): switch flip TTA on "
                "in the sidebar to read them.")
    return "has no test predictions in its card."
