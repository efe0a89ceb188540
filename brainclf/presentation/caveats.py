"""What a model's recorded figures do not cover, in words for the Home page: tumours missed without referral
pooled over the other sources, classes no other source holds, the known limitations."""

from __future__ import annotations

from .. import CLASS_NAMES, DISPLAY_NAMES
from ..escaping import md_literal
from .scope import external_reports, site_scope


def missed_tumours_unflagged(card) -> dict | None:
    """Other-source tumour slices answered 'no tumour' with neither referral nor OOD flag, pooled over every
    recorded source (a refit's: its split run's) as recorded (each with the card's refer rule, single pass):
    {"missed", "tumours", "rate", "sources"}; None without tumour slices."""
    externals = external_reports(card)[0]
    counted = [(name, int(e.get("called_notumor_unflagged") or 0), int(e.get("tumour_images") or 0))
               for name, e in externals.items() if e.get("tumour_images")]
    tumours = sum(n for *_, n in counted)
    if not tumours:
        return None
    missed = sum(m for _, m, _ in counted)
    return {"missed": missed, "tumours": tumours, "rate": missed / tumours, "sources": [n for n, *_ in counted]}


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
            "brainclf groups near-duplicates so they never straddle training and validation. Images come from a few "
            "public sources (figshare, SARTAJ, Br35H), plus, for a multi-source model, other sources (Radiopaedia "
            "cases, a site's own slices); its external figures are from held-out cases of those sources only. "
            f"{where}, nor on tumour types outside these four classes.")


def recorded_rule_note(ext_tta: bool, tta: bool) -> str | None:
    """Where an external report's rows are in another flip-TTA mode than the rule in force, what its answered and
    referred figures are (the Evaluation page re-reads them with the rule in force otherwise)."""
    if ext_tta == tta:
        return None
    mode, switch = ("with flip TTA", "on") if ext_tta else ("single pass", "off")
    return (f"Its answered, referred and missed-tumour figures are as recorded ({mode}, with the card's own refer "
            f"rule then), not with the rule in force here: switch flip TTA {switch} in the sidebar to read them "
            "with it.")


def history_title(card) -> str:
    """The training-history chart's title: a site model's training block is its starting model's."""
    base = ((card.site or {}).get("base_model") or {}).get("name")
    return f"Training history of its starting model {base}" if base else f"Training history of {card.name}"


def site_training_words(card) -> str | None:
    """For a site model, whose training figures (history, epochs, image counts) are its starting model's: what was
    done at the site on top (Markdown, names escaped); None for any other model."""
    site = card.site or {}
    base = (site.get("base_model") or {}).get("name")
    if not base:
        return None
    where, base = md_literal(str(site.get("name", ""))), md_literal(str(base))
    adapt = site.get("adapt") or {}
    if not site.get("adapted"):
        return f"The same weights as {base}, calibrated at {where}: the training figures are {base}'s."
    return (f"The training figures are its starting model {base}'s. It was then fine-tuned at {where} on "
            f"{adapt.get('tune_slices', '?')} site slices, with {adapt.get('replay_images', '?')} of its own training "
            f"images replayed, for {adapt.get('epochs_run', '?')} epochs (epoch {adapt.get('best_epoch', '?')} kept).")
