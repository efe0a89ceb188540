"""Two models' paired comparison in words (brainclf.evaluation.analysis.paired_comparison): the sentence both the
test-split and the external comparisons say, and why an uploader's claimed figures get no paired test. No Streamlit
here; the Evaluation page reaches these through .views and .comparison."""

from __future__ import annotations

from ..escaping import md_literal
from . import wording
from .wording import cell_pct, points

# Beside a card's name where its figures are its uploader's claim (brainclf.evaluation.card_is_verified false).
CLAIMED = " (claimed by its uploader)"


def second_name(name_a: str, name_b: str) -> str:
    """The second model's name as a column or a sentence shows it: marked when both cards share one name."""
    return name_b if name_b != name_a else f"{name_b} (other)"


def p_text(p: float) -> str:
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}" if p < 0.1 else f"p = {p:.2f}"


def paired_words(paired: dict, name_a: str, name_b: str, lead: str) -> str:
    """A paired_comparison (with matched images) in one Markdown sentence after `lead` (Markdown): both accuracies,
    the difference with its paired bootstrap interval (over what it resampled: images or case groups) and the
    paired test's p-value (McNemar's for images, a permutation test over case groups). The names are escaped here."""
    lo, hi = paired["interval"]
    name_a, name_b = md_literal(name_a), md_literal(name_b)  # the sentence is Markdown; the names are the cards'
    return (f"{lead}: **{name_a} {cell_pct(paired['accuracy_a'])}**, "
            f"**{name_b} {cell_pct(paired['accuracy_b'])}**; difference **{points(paired['difference'])}** "
            f"(95 % paired bootstrap interval {points(lo)} to {points(hi)}, resampling "
            f"{wording.plural(paired['units'], paired['resampled'].rstrip('s'))}). "
            f"{paired['test'][0].upper() + paired['test'][1:]}: "
            f"{p_text(paired['p_value'])} ({wording.plural(paired['a_only'], 'image')} only {name_a} got right, "
            f"{wording.plural(paired['b_only'], 'image')} only {name_b}).")


def no_paired_test(names: list[str], what: str) -> str:
    """Why figures claimed by an uploader get no paired test, as Markdown (the names escaped): a p-value on an
    upload's invented predictions would read as a finding."""
    whose = " and ".join(f"{md_literal(n)}'s" for n in names)
    return (f"No paired test: {whose} {what} are claimed by {'its uploader' if len(names) == 1 else 'their uploaders'}"
            ", not measured on this server, and a p-value on them would only test that claim.")
