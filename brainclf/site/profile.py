"""The card of a site profile or a site-adapted model: the starting model's card with the site's calibration, OOD
guard, held-out figures and scope ("validated at X").

Every figure of the starting card was made with its own calibration, refer rule and guard, so none is carried
over: the card holds the site's held-out figures and the Kaggle `Testing` check read with the site model (for an
adapted model, the forgetting check), stored under the way it ran (`metrics.test`, or `metrics.test_tta` with flip
TTA). A profile (same weights) keeps the starting card's faithfulness and provenance; an adapted model (new
weights) neither, and its training record adds the site as a source.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import replace
from pathlib import Path

from ..data.datasets import relative_path
from ..data.sources import licence_of
from ..model.card import SITE_STEP, file_sha256, iso_now
from ..presentation.wording import pct, plural

SUMMARY_KEYS = ("n", "accuracy", "recall", "coverage", "accepted_accuracy", "referred", "ood_flagged",
                "called_notumor_rate", "called_notumor_unflagged_rate", "intervals", "membership")


def summary(report: dict | None) -> dict | None:
    """The figures of a held-out report a card keeps (no per-slice rows)."""
    return {k: report[k] for k in SUMMARY_KEYS if k in report} if report else None


def scope_words(site: str, report: dict, target: float) -> str:
    """'validated at St Elsewhere: 78.2 % right on 427 held-out slices, 41.0 % answered at a 98 % target'."""
    answered = report.get("coverage")
    return (f"validated at {site}: {pct(report.get('accuracy'))} right on {plural(report['n'], 'held-out slice')}"
            + (f", {pct(answered)} answered at a {pct(target, 0)} accepted-accuracy target" if answered is not None
               else ""))[:200]


def site_card(card, name: str, model_file: Path, run, report: dict, adapted: bool, target: float,
              result: dict | None = None, kaggle_test: dict | None = None):
    """A ModelCard for models_dir/NAME.keras (`card`: the starting card with the site's calibration and OOD
    guard already in), `report`: the held-out validation with them, `run`: the SiteRun; its Kaggle `Testing` check
    (`kaggle_test`, with its rows) and an adapted model's `result` (brainclf.site.run)."""
    site, sha = run.state["site"], file_sha256(model_file)
    rows = report.get("predictions", [])
    training = dict(card.training)
    # Only figures measured with the site's calibration, refer rule and OOD guard: the starting card's were made
    # with its own (a profile showed them under the site's thresholds). Its Kaggle `Testing` check when there is one,
    # stored under the way it was run (with flip TTA: as the TTA figures).
    metrics, rows_of = {}, {"test": [], "test_tta": []}
    if kaggle_test:
        key = "test_tta" if kaggle_test.get("tta") else "test"
        rows_of[key] = kaggle_test["predictions"]
        metrics[key] = {k: v for k, v in kaggle_test.items() if k != "predictions"}
    if adapted:
        primary = (training.get("fingerprint") or {}).get("root_name", "unrecorded")
        sources = training.get("sources") or [{"name": primary, "primary": True}]
        training["sources"] = [*sources, {"name": site, "weight": 1.0, "licence": licence_of(run.split.root)[:300],
                                          "fingerprint": run.state["fingerprint"]}]
    metrics["external"] = {site: {k: v for k, v in report.items() if k != "predictions"}}
    block = {"name": site, "adapted": adapted, "target": target, "scope": scope_words(site, report, target),
             "base_model": {k: str(v) for k, v in run.state["model"].items() if k != "path"},
             "fingerprint": run.state["fingerprint"], "split": run.split.counts(), "groups": run.state["groups"],
             "used": sorted(relative_path(s.path, run.split.root) for s in run.split.adaptation),
             **({"made_by": run.made_by} if getattr(run, "made_by", None) else {}),
             # A profile's own figure is "profile"; an earlier calibration's (another target, perhaps) is not its.
             "heldout": {k: v for k, v in (("before", summary(run.step("validate"))),
                                            ("calibrated", adapted and summary((run.step("calibrate") or {})
                                                                               .get("heldout"))),
                                            ("adapted" if adapted else "profile", summary(report))) if v}}
    if adapted and result:
        block["adapt"] = result["adapt"]
        block["kaggle_test"] = {k: {"n": v["n"], "accuracy": v["accuracy"]}
                                for k, v in result["kaggle_test"].items() if v}
    how = "fine-tuned on" if adapted else "calibrated for"
    # A profile keeps its starting model's file (and hash): the version names its rule too, so two profiles made
    # the same day at other targets are told apart wherever a model is named (the go-live PDF, results).
    rule = hashlib.sha256(json.dumps([card.calibration, card.ood], sort_keys=True, default=str).encode()).hexdigest()
    return replace(card, name=name, version=f"{time.strftime('%Y%m%d')}-{sha[:8]}-r{rule[:6]}", file_sha256=sha,
                   created=iso_now(), description=f"{card.name} {how} site {site}"[:2000], metrics=metrics,
                   training=training, test_predictions=rows_of["test"], test_predictions_tta=rows_of["test_tta"],
                   # An upload's faithfulness figures are its uploader's claim: not on a card marked verified.
                   faithfulness={} if adapted or card.provenance else card.faithfulness,
                   external_predictions={site: rows},
                   # An upload's adapted weights keep its provenance too: its card's file lists are its uploader's.
                   provenance=_measured_here(card.provenance, report), site=block)


def _measured_here(provenance: dict | None, report: dict) -> dict:
    """A profile keeps the starting model's weights, so it keeps their provenance (who uploaded them); every figure
    on its card is measured here, so they are no longer the uploader's claim."""
    if not provenance:
        return {}
    return {**provenance, "metrics_verified": True, "verified": iso_now(), "verified_by": SITE_STEP,
            "verified_on": {"root_name": str(report.get("dataset", ""))[:128], "n": report.get("n", 0)}}
