"""What a model's recorded figures do not cover, in words for the Home page: tumours missed without referral
pooled over the other sources, classes no other source holds, the known limitations."""

from __future__ import annotations

from .. import CLASS_NAMES, DISPLAY_NAMES
from ..escaping import md_literal
from .scope import LOOSE_SPLIT_WHY, claim_words, external_reports, site_scope, upper_estimate
from .wording import count, pct, pct_pair, plural


def missed_tumours_unflagged(card) -> dict | None:
    """Other-source tumour slices answered 'no tumour' with neither referral nor OOD flag, as recorded (each with
    the card's refer rule then, in the flip-TTA mode it was recorded in), over every source (a refit's: its split
    run's): {"rate", "missed", "tumours" (None where only a rate was recorded: a refit linked before 2026-12-07,
    one source), "sources", "words"}; None without such a figure."""
    externals = {name: e for name, e in external_reports(card)[0].items()
                 if e.get("tumour_images") or e.get("called_notumor_unflagged_rate") is not None}
    counted = all(e.get("tumour_images") is not None and e.get("called_notumor_unflagged") is not None
                  for e in externals.values())
    tumours = sum(int(e.get("tumour_images") or 0) for e in externals.values()) if counted else None
    if not externals or tumours == 0 or (not counted and len(externals) > 1):
        return None
    modes = {"flip TTA" if e.get("tta") else "single pass" for e in externals.values()}
    how = f"as recorded ({' and '.join(sorted(modes))}, with the card's own refer rule then)"
    names = ", ".join(externals)
    if counted:
        missed = sum(int(e["called_notumor_unflagged"]) for e in externals.values())
        return {"rate": missed / tumours, "missed": missed, "tumours": tumours, "sources": list(externals),
                "words": f"{missed} of {plural(tumours, 'tumour slice')} from other sources ({names}) answered 'no "
                         f"tumour' without a referral or an out-of-distribution flag, {how}."}
    rate = float(next(iter(externals.values()))["called_notumor_unflagged_rate"])
    return {"rate": rate, "missed": None, "tumours": None, "sources": list(externals),
            "words": f"The share of {names}'s tumour slices answered 'no tumour' without a referral or an "
                     f"out-of-distribution flag, {how}."}


# The external-validation issue's bar for tumours answered "no tumour" with neither referral nor flag: above it, a
# model is for comparison on another source's scans, whatever its in-distribution accuracy.
MAX_UNREFERRED_MISS = 0.02


def unreferred_miss_warning(card) -> str | None:
    """"answered 'no tumour' for 27.2 % of external-radiopaedia's tumour slices …" where, on any one recorded
    external source (a refit's: its split run's; a site model's: its site's held-out part), more than
    MAX_UNREFERRED_MISS of the tumours were answered "no tumour" without a referral or flag, under the refer rule
    recorded with them; the worst source is named. None otherwise, or where none is recorded. An upload's figures
    are said to be its uploader's claim."""
    worst = max(((_unflagged_rate(e), name) for name, e in external_reports(card)[0].items()), default=(None, ""))
    rate, name = worst
    if rate is None or rate <= MAX_UNREFERRED_MISS:
        return None
    shown, bar = pct_pair(rate, MAX_UNREFERRED_MISS)
    whose = f"its site's held-out part ({name})" if card.measured_site else name
    return (f"answered 'no tumour' for {shown} of {whose}'s tumour slices without a referral or an "
            f"out-of-distribution flag, under the refer rule recorded with them (the bar is {bar})"
            f"{claim_words(card, external=True)}")


def unreferred_miss_advice(card) -> str:
    """What the Predict page tells a reader beside unreferred_miss_warning: where its 'no tumour' answers cannot be
    relied on and what to do."""
    if card.measured_site:
        return "At its site its 'no tumour' answers cannot be relied on: re-run the site's steps with more cases."
    return ("On another hospital's scans its 'no tumour' answers cannot be relied on: choose a model trained on more "
            "than one source in the sidebar.")


def _unflagged_rate(ext: dict) -> float | None:
    """One external report's share of tumour slices answered 'no tumour' unreferred and unflagged, or None."""
    tumours, missed = ext.get("tumour_images"), ext.get("called_notumor_unflagged")
    if tumours and missed is not None:
        return int(missed) / int(tumours)
    rate = ext.get("called_notumor_unflagged_rate")
    return None if rate is None else float(rate)


def grouping_caveat(card) -> str:
    """'' unless a recorded external figure comes from a training split whose case groups joined only re-encodings
    of one slice (cards split before 2026-12-06 record no case_grouping_bits): then neighbouring slices of held-out
    cases were in training, and the figure is an upper estimate, in words."""
    loose = [name for name, e in external_reports(card)[0].items() if upper_estimate(e)]
    if not loose:
        return ""
    return (f"An upper estimate: the split of {', '.join(loose)} {LOOSE_SPLIT_WHY}; a split by whole cases reads "
            "lower (README, \"Results: read this first\").")


def held_out_words(card) -> str:
    """How each recorded external set relates to the model's training, for the Home page's help: a refit's
    figures are its split run's, whose held-out cases the refit then learnt from."""
    externals, recipe = external_reports(card)
    if recipe:
        return " ".join(f"{name}: {ext.get('membership', '')} by the split run {recipe.get('model')}; this model, "
                        "refit on every development case, learnt from them." for name, ext in externals.items())
    return " ".join(f"{name}: {ext.get('membership', '')}." for name, ext in externals.items())


def refit_rule_words(card) -> str:
    """For a refit, what its split run's missed-tumour figure does not say about it: that run's refer rule answered
    its own share of those slices, and the refit's own rule is not measured on held-out external slices."""
    recipe = external_reports(card)[1]
    if not recipe:
        return ""
    answered = [f"{pct(e['coverage'])} of {name}'s" for name, e in recipe.get("external", {}).items()
                if e.get("coverage") is not None]
    share = f" (it answered {', '.join(answered)} slices)" if answered else ""
    return (f" Measured by the split run {recipe.get('model')} with its own refer rule{share}; this model's rule was "
            "fitted on its own validation images and is not measured on held-out external slices.")


def absent_classes_words(card) -> str:
    """'The other-source slices hold no pituitary slice: …' (classes none of the recorded sources has), or
    '' when there is no other source or it holds every class."""
    externals = external_reports(card)[0]
    present = {c for e in externals.values() for c in e.get("classes_present") or []}
    absent = [DISPLAY_NAMES[c].lower() for c in CLASS_NAMES if c not in present]
    if not present or not absent:
        return ""
    return f"The other-source slices hold no {' and no '.join(absent)} slice: no figure there speaks for it."


def limitations_words(card) -> str:
    """The Home page's known limitations in Markdown (the card's words escaped), for this card: a site model's
    scope replaces 'not validated elsewhere'."""
    where = (f"Beyond its site ({md_literal(site_scope(card))}), it has not been validated on other scanners or "
             "institutions" if card.site else "It has not been validated on other scanners or institutions")
    return ("**Known limitations.** The public dataset has no patient IDs, so splits cannot be made per patient, and "
            "it contains hundreds of exact and near-duplicate images, many shared between its Training and Testing "
            "parts: plain test accuracy overstates how well the model generalises to new patients and scanners. "
            "brainclf keeps near-duplicates and neighbouring slices of one case on one side of a split, as far as "
            "image hashes and file names can tell (without patient IDs, not always). Images come from a few "
            "public sources (figshare, SARTAJ, Br35H), plus, for a multi-source model, other sources (Radiopaedia "
            "cases, a site's own slices); its external figures are from held-out cases of those sources only. "
            f"{where}, nor on tumour types outside these four classes.")


def recorded_rule_note(ext_tta: bool, tta: bool) -> str | None:
    """Where an external report's rows are in another flip-TTA mode than the rule in force, what its answered and
    referred figures are (the Evaluation page re-reads them with the rule in force otherwise)."""
    if ext_tta == tta:
        return None
    mode, other = ("with flip TTA", "single pass") if ext_tta else ("single pass", "with flip TTA")
    return (f"Its answered, referred and missed-tumour figures are as recorded ({mode}, with the card's own refer "
            f"rule then), not with the rule in force here, which is read {other}.")


def history_title(card) -> str:
    """The training-history chart's title: a site model's training block is its starting model's."""
    base = (card.measured_site.get("base_model") or {}).get("name")
    return f"Training history of its starting model {base}" if base else f"Training history of {card.name}"


def site_training_words(card) -> str | None:
    """For a site model, whose training figures (history, epochs, image counts) are its starting model's: what was
    done at the site on top (Markdown, names escaped); None for any other model."""
    site = card.measured_site  # an upload's own site block is its uploader's words
    base = (site.get("base_model") or {}).get("name")
    if not base:
        return None
    where, base = md_literal(str(site.get("name", ""))), md_literal(str(base))
    adapt = site.get("adapt") or {}

    def n(key: str) -> str:
        value = adapt.get(key)
        return count(value) if isinstance(value, int) and not isinstance(value, bool) else "?"

    if not site.get("adapted"):
        return f"The same weights as {base}, calibrated at {where}: the training figures are {base}'s."
    return (f"The training figures are its starting model {base}'s. It was then fine-tuned at {where} on "
            f"{n('tune_slices')} site slices, with {n('replay_images')} of its own training images replayed, for "
            f"{n('epochs_run')} epochs (epoch {n('best_epoch')} kept).")


def guard_words(card) -> str:
    """What the out-of-distribution guard flags, for the Predict page's scope line: an upload's card may have none,
    and then only a colour image is flagged; an upload's guard, temperature and refer rule are its uploader's (its
    verification re-measures test figures only) unless a site step fitted them here."""
    if card.ood:  # inference.ood.check: without the card's statistics only the colour check runs
        words = ("Colour images, CT slices (told by their bright skull) and slices unlike these (other sequences, "
                 "photos) are flagged as out of distribution; a CT whose skull is not bright may still get an answer.")
    else:
        words = ("This model's card has no out-of-distribution guard: only colour images and CT slices with a "
                 "bright skull are flagged, and another CT, an MR sequence it never saw or a photo can get an answer.")
    if getattr(card, "provenance", None) and not card.measured_site:
        words += (" Its calibration, refer rule and out-of-distribution guard are its uploader's, not fitted on this "
                  "server: verifying an upload re-measures its test figures only.")
    return words
