"""A refit model and the split run of its recipe.

`train --refit` ships a model that learnt from the extra sources' held-out cases too, so it has no held-out
figure there of its own. Its recipe's figure comes from the split run (same config but `refit`, same split):
`link_recipe_run` copies that run's external summaries (and its sensitivity and specificity there) into the
refit card's `extra["recipe_run"]`, named as the split run's, and brainclf.presentation.scope shows them as such
("…, by its split run NAME").
"""

from __future__ import annotations

from ..errors import ConfigError
from ..scoring.rates import sensitivity_specificity
from .config import TrainConfig

SUMMARY_KEYS = ("n", "accuracy", "membership", "called_notumor_rate", "called_notumor_unflagged_rate", "coverage",
                "tumour_images", "called_notumor_unflagged", "classes_present", "tta", "case_grouping_bits")


def link_recipe_run(refit_card, split_card) -> dict:
    """The refit card's `recipe_run` block from the split run's card; ConfigError when they are not one recipe
    on one split (other settings, other validation files, or not a refit and its split run)."""
    defaults = TrainConfig().to_dict()  # a key an older run did not record had its default value then
    refit_cfg, split_cfg = ({**defaults, **(c.training.get("config") or {})} for c in (refit_card, split_card))
    if not refit_cfg.get("refit") or split_cfg.get("refit"):
        raise ConfigError(f"{refit_card.name} must be a --refit run and {split_card.name} its split run.")
    refit_cfg.pop("refit"), split_cfg.pop("refit", None)
    if refit_cfg != split_cfg:
        differ = sorted(k for k in set(refit_cfg) | set(split_cfg) if refit_cfg.get(k) != split_cfg.get(k))
        raise ConfigError(f"not one recipe: the runs differ in {', '.join(differ)}.")
    val = [c.training.get("files", {}).get("val") or [] for c in (refit_card, split_card)]
    if sorted(val[0]) != sorted(val[1]):
        raise ConfigError("not one split: the two runs were validated on different files.")
    external = {name: {k: report[k] for k in SUMMARY_KEYS if k in report}
                for name, report in split_card.metrics.get("external", {}).items()}
    if not external:
        raise ConfigError(f"{split_card.name} has no external held-out figures to link.")
    # Clinicians' rates from the split run's per-image rows: the Home page's external columns for the refit.
    rates = {name: sensitivity_specificity(rows) for name, rows in split_card.external_predictions.items()
             if name in external and rows}
    return {"model": split_card.name, "version": split_card.version, "file_sha256": split_card.file_sha256,
            "external": external, "sensitivity_specificity": rates}
