"""A refit model shows its recipe's external held-out figures, measured by the split run (brainclf.training.refit)."""

from __future__ import annotations

import copy
import shutil
import subprocess
import sys

import pytest

from brainclf.errors import ConfigError
from brainclf.model import card_path, list_models, read_card
from brainclf.model.card import file_sha256
from brainclf.presentation import (
    case_scope_line,
    external_rates,
    external_summary,
    no_external_note,
    pct,
    validated_scope,
)
from brainclf.training.refit import link_recipe_run


def bundled_external() -> dict:
    """A real external-validation block: from the bundled model that has one (the split run of `default`)."""
    return next(c.metrics["external"] for c in map(read_card, list_models("models")) if c.metrics.get("external"))


def pair(smoke_model):
    split = read_card(smoke_model)
    split.metrics = {**split.metrics, "external": bundled_external()}
    refit = copy.deepcopy(split)
    refit.name, refit.metrics = "shipped", {k: v for k, v in refit.metrics.items() if k != "external"}
    refit.training = {**refit.training, "config": {**refit.training["config"], "refit": True}}
    return refit, split


def test_a_refit_card_names_its_split_run_and_its_figures(smoke_model):
    refit, split = pair(smoke_model)
    assert external_summary(refit) is None and "not measured" in case_scope_line(refit).lower()
    refit.extra = {"recipe_run": link_recipe_run(refit, split)}
    summary, report = external_summary(refit), split.metrics["external"]["external-radiopaedia"]
    assert summary["n"] == report["n"] and summary["recipe_run"] == split.name
    line = case_scope_line(refit)
    assert f"{pct(report['accuracy'])} right ({report['n']} slices of external-radiopaedia" in line
    assert f"split run {split.name}" in line
    assert "by_sequence" not in refit.extra["recipe_run"]["external"]["external-radiopaedia"]


def test_the_scope_and_the_evaluation_page_name_the_split_run_of_a_refit(smoke_model):
    refit, split = pair(smoke_model)
    assert "Never checked" in validated_scope(refit)["sentence"]
    assert "Re-evaluate it" in no_external_note(refit)
    refit.extra = {"recipe_run": link_recipe_run(refit, split)}
    report = split.metrics["external"]["external-radiopaedia"]
    sentence = validated_scope(refit)["sentence"]
    assert "Never checked" not in sentence and f"split run {split.name}" in sentence
    assert f"{report['n']} images, ≤ {pct(report['accuracy'])} accurate" in sentence  # a 12-bit split: a bound
    note = no_external_note(refit)
    assert f"{pct(report['accuracy'])} right on {report['n']} slices" in note and split.version in note


def test_a_refit_shows_its_split_runs_sensitivity_and_specificity_named_as_such(smoke_model):
    refit, split = pair(smoke_model)
    split.external_predictions = read_card("models/default_split.keras").external_predictions
    assert external_rates(refit) is None
    refit.extra = {"recipe_run": link_recipe_run(refit, split)}
    rates, words = external_rates(refit)
    own, own_words = external_rates(split)
    assert rates == own and own_words == "external" and words == f"external, split run {split.name}"
    assert rates[0]["finding"] == "Any tumour (vs no tumour)" and 0 < rates[0]["sensitivity"] < 1


def test_the_bundled_default_is_a_refit_linked_to_its_bundled_split_run():
    """The shipped default learnt from every development case; its external figures are default_split's, the
    same recipe on the same split (README, 'Results')."""
    default, split = read_card("models/default.keras"), read_card("models/default_split.keras")
    recipe = default.extra["recipe_run"]
    assert recipe["model"] == "default_split" and recipe["version"] == split.version
    assert recipe["file_sha256"] == split.file_sha256 == file_sha256("models/default_split.keras")
    assert link_recipe_run(default, split) == recipe  # still one recipe on one split
    assert not default.metrics.get("external") and split.metrics["external"]
    held_out = {r["path"] for r in split.external_predictions["external-radiopaedia"]}
    learnt = {k.split("::", 1)[1] for k in default.training["files"]["train"] if k.startswith("external-radiopaedia::")}
    assert held_out and held_out <= learnt  # the refit learnt from the split run's held-out cases



def test_the_model_picker_gives_a_refit_its_split_runs_external_figure_named_as_such():
    from pathlib import Path

    from brainclf.presentation import external_reports, pct
    from pages.common import model_listing

    default, split = (Path(f"models/{m}.keras") for m in ("default", "default_split"))
    shown = model_listing(default)["label"]
    recorded = external_reports(read_card(split))[0]["external-radiopaedia"]["accuracy"]
    assert f"other source ≤ {pct(recorded)} of 427 by its split run" in shown
    assert "by its split run" not in model_listing(split)["label"]


def test_only_one_recipe_on_one_split_is_linked(smoke_model):
    refit, split = pair(smoke_model)
    with pytest.raises(ConfigError, match="--refit run"):
        link_recipe_run(split, split)
    other = copy.deepcopy(split)
    other.training = {**other.training, "config": {**other.training["config"], "epochs": 99}}
    with pytest.raises(ConfigError, match="differ in epochs"):
        link_recipe_run(refit, other)
    moved = copy.deepcopy(split)
    moved.training = {**moved.training, "files": {**moved.training["files"], "val": ["elsewhere.jpg"]}}
    with pytest.raises(ConfigError, match="different files"):
        link_recipe_run(refit, moved)


def test_the_script_writes_the_link_into_the_refit_card(smoke_model, tmp_path):
    refit, split = pair(smoke_model)
    for card, name in ((refit, "shipped"), (split, "split")):
        shutil.copy(smoke_model, tmp_path / f"{name}.keras")
        card.name = name
        card.save(card_path(tmp_path / f"{name}.keras"))
    out = subprocess.run([sys.executable, "scripts/link_recipe_run.py", str(tmp_path / "shipped.keras"),
                          str(tmp_path / "split.keras")], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert read_card(tmp_path / "shipped.keras").extra["recipe_run"]["model"] == "split"
