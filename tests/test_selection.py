"""Choosing between candidates on validation only (brainclf.evaluation.selection, scripts/compare_on_validation.py)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from conftest import copy_model
from PIL import Image

from brainclf.errors import DataError
from brainclf.evaluation import (
    PRIMARY,
    choose,
    decide,
    mean_nll,
    nll_difference,
    validation_groups,
    validation_samples,
    validation_scores,
)
from brainclf.evaluation.selection import summarise
from brainclf.inference import Predictor
from brainclf.input import load_model_input
from brainclf.model import card_path, read_card
from brainclf.scoring import group_mean_resamples

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
    got = summarise(validation_scores(predictor, samples))[PRIMARY]
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
    assert out["chosen"] == "a" and out["results"]["a"] == out["results"]["b"]  # a tie: the incumbent stays
    assert out["incumbent"] == "a" and out["differences"]["b"]["difference"] == 0.0
    assert out["results"]["a"][PRIMARY]["n"] == len(read_card(a).training["files"]["val"])

    card = json.loads(card_path(b).read_text())
    card["training"]["files"]["val"] = card["training"]["files"]["val"][1:]
    card_path(b).write_text(json.dumps(card))
    assert compare_on_validation.main([str(a), str(b), "--data", str(synthetic_dataset)]) == 2
    assert "validated on different files" in capsys.readouterr().err
    twin = copy_model(smoke_model, tmp_path / "elsewhere", "a")
    assert compare_on_validation.main([str(a), str(twin), "--data", str(synthetic_dataset)]) == 2
    assert "share a name" in capsys.readouterr().err


def scores_for(p_true: np.ndarray) -> dict:
    """Validation scores of one source where each image's true class (0) gets probability p_true."""
    probs = np.column_stack([p_true, *(np.full((3, len(p_true)), 1.0) * (1 - p_true) / 3)])
    return {"y": np.zeros(len(p_true), int), "probs": probs}


def test_a_challenger_replaces_the_incumbent_only_beyond_validation_noise():
    rng = np.random.default_rng(0)
    incumbent = {PRIMARY: scores_for(np.full(200, 0.7))}
    clearly = {PRIMARY: scores_for(np.full(200, 0.9))}  # better on every image
    barely = {PRIMARY: scores_for(np.clip(0.7 + rng.normal(0.005, 0.2, 200), 0.05, 0.99))}  # noisy, hardly better
    each_image = {PRIMARY: np.arange(200)}
    d_clear = nll_difference(clearly, incumbent, each_image)
    d_barely = nll_difference(barely, incumbent, each_image)
    assert d_clear["difference"] == pytest.approx(np.log(0.7) - np.log(0.9))
    assert d_clear["interval"][1] < 0 and d_barely["interval"][0] < 0 < d_barely["interval"][1]
    assert decide("inc", {"barely": d_barely}) == "inc"
    assert decide("inc", {"barely": d_barely, "clearly": d_clear}) == "clearly"
    # The interval resamples case groups: one group per source leaves nothing to vary.
    one_case = nll_difference(barely, incumbent, {PRIMARY: np.zeros(200, int)})
    assert one_case["interval"][0] == pytest.approx(one_case["interval"][1]) == pytest.approx(d_barely["difference"])
    with pytest.raises(DataError, match="different validation images"):
        nll_difference({PRIMARY: scores_for(np.full(199, 0.9))}, incumbent, each_image)


def test_group_resamples_draw_whole_groups():
    means = group_mean_resamples(np.array([1.0, 1.0, 1.0, 0.0]), np.array(["a", "a", "a", "b"]), 500,
                                 np.random.default_rng(0))
    # two groups drawn with replacement: (a, a) → 1, (b, b) → 0, (a, b) → 3 of 4 images
    assert set(np.round(means, 6)) == {0.0, 0.75, 1.0}


def test_validation_groups_join_copies_of_one_slice(tmp_path):
    rng = np.random.default_rng(0)
    slice_a = Image.fromarray(rng.integers(0, 255, (64, 64), dtype=np.uint8))
    for name, image in (("x1.png", slice_a), ("copy.png", slice_a),
                        ("other.png", Image.fromarray(rng.integers(0, 255, (64, 64), dtype=np.uint8)))):
        image.save(tmp_path / name)
    samples = {PRIMARY: [SimpleNamespace(path=tmp_path / n) for n in ("x1.png", "copy.png", "other.png")]}
    groups = validation_groups(samples)[PRIMARY]
    assert groups[0] == groups[1] != groups[2]
