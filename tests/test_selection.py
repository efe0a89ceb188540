"""Choosing between candidates on validation only (brainclf.selection, scripts/compare_on_validation.py)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from conftest import copy_model
from PIL import Image

from brainclf.card import card_path, read_card
from brainclf.errors import DataError
from brainclf.predict import Predictor
from brainclf.preprocess import load_model_input
from brainclf.selection import PRIMARY, choose, mean_nll, validation_by_source, validation_samples

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "scripts"))
import compare_on_validation  # noqa: E402


def card_with(val: list[str]):
    return SimpleNamespace(name="cand", training={"files": {"val": val}})


def test_validation_files_are_grouped_by_source_with_their_labels(tmp_path):
    for rel in ("main/Training/glioma/a.png", "main/Training/notumor/b.png", "ext/meningioma/c.png"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.new("L", (32, 32), 90).save(tmp_path / rel)
    card = card_with(["Training/glioma/a.png", "ext::meningioma/c.png", "Training/notumor/b.png"])
    got = validation_samples(card, {PRIMARY: tmp_path / "main", "ext": tmp_path / "ext"})
    assert list(got) == [PRIMARY, "ext"]
    assert [(s.path.name, s.class_name) for s in got[PRIMARY]] == [("a.png", "glioma"), ("b.png", "notumor")]
    assert [(s.path.name, s.class_name) for s in got["ext"]] == [("c.png", "meningioma")]
    with pytest.raises(DataError, match="no folder given for it"):
        validation_samples(card, {PRIMARY: tmp_path / "main"})
    with pytest.raises(DataError, match="validation file missing: ext/meningioma/c.png"):
        validation_samples(card, {PRIMARY: tmp_path / "main", "ext": tmp_path / "elsewhere"})
    with pytest.raises(DataError, match="no validation files"):
        validation_samples(card_with([]), {PRIMARY: tmp_path})


def test_the_label_is_the_class_folder_even_with_case_folders_below_it(tmp_path):
    for rel in ("glioma/case1/a.png", "misc/b.png"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.new("L", (32, 32), 90).save(tmp_path / rel)
    got = validation_samples(card_with(["glioma/case1/a.png"]), {PRIMARY: tmp_path})
    assert [s.class_name for s in got[PRIMARY]] == ["glioma"]
    with pytest.raises(DataError, match="not inside a class folder"):
        validation_samples(card_with(["misc/b.png"]), {PRIMARY: tmp_path})


def test_scores_are_the_predictors_calibrated_ones(smoke_model, synthetic_dataset):
    card = read_card(smoke_model)
    samples = validation_samples(card, {PRIMARY: synthetic_dataset})
    predictor = Predictor.load(smoke_model, tta=False)
    got = validation_by_source(predictor, samples)[PRIMARY]
    items = samples[PRIMARY]
    probs = predictor.predict_arrays(np.stack([load_model_input(s.path, predictor.contract) for s in items]))
    y = np.array([s.label for s in items])
    assert got["n"] == len(card.training["files"]["val"]) == len(y)
    assert got["accuracy"] == pytest.approx(float((probs.argmax(1) == y).mean()))
    assert got["nll"] == pytest.approx(float(-np.log(probs[np.arange(len(y)), y]).mean()), rel=1e-4)


def test_every_source_counts_once_in_the_choice():
    # Pooled over images, "big" would win (its large primary source is slightly better); per source it loses.
    big = {PRIMARY: {"n": 1000, "accuracy": 0.97, "nll": 0.10}, "ext": {"n": 50, "accuracy": 0.6, "nll": 1.2}}
    small = {PRIMARY: {"n": 1000, "accuracy": 0.96, "nll": 0.13}, "ext": {"n": 50, "accuracy": 0.7, "nll": 0.9}}
    assert mean_nll(big) == pytest.approx(0.65) and mean_nll(small) == pytest.approx(0.515)
    assert choose({"big": big, "small": small}) == "small"
    with pytest.raises(DataError):
        choose({})


def test_the_script_compares_and_refuses_candidates_on_different_splits(smoke_model, synthetic_dataset, tmp_path,
                                                                        capsys):
    a, b = copy_model(smoke_model, tmp_path, "a"), copy_model(smoke_model, tmp_path, "b")
    assert compare_on_validation.main([str(a), str(b), "--data", str(synthetic_dataset), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["chosen"] == "a" and out["results"]["a"] == out["results"]["b"]  # a tie: the first of equals
    assert out["results"]["a"][PRIMARY]["n"] == len(read_card(a).training["files"]["val"])

    card = json.loads(card_path(b).read_text())
    card["training"]["files"]["val"] = card["training"]["files"]["val"][1:]
    card_path(b).write_text(json.dumps(card))
    assert compare_on_validation.main([str(a), str(b), "--data", str(synthetic_dataset)]) == 2
    assert "validated on different files" in capsys.readouterr().err
    twin = copy_model(smoke_model, tmp_path / "elsewhere", "a")
    assert compare_on_validation.main([str(a), str(twin), "--data", str(synthetic_dataset)]) == 2
    assert "share a name" in capsys.readouterr().err
