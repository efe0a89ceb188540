"""Real-data check of external validation: re-evaluating a sample of the external set reproduces the
per-image predictions every bundled model's card records (runs, never skips, in CI)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from brainclf import CLASS_NAMES
from brainclf.model import list_models, read_card

REPO = Path(__file__).resolve().parent.parent
DATASET = "external-radiopaedia"
WITH_EXTERNAL = [p for p in list_models(REPO / "models") if DATASET in read_card(p).external_predictions]


def test_every_bundled_reading_model_has_external_validation():
    names = {p.stem for p in WITH_EXTERNAL}
    assert {"default_split", "kaggle_only", "single", "seed"} <= names, names
    # The default is refit on the held-out cases too: its recipe's figures are its split run's (test_refit.py).
    assert "default" not in names and read_card(REPO / "models" / "default.keras").extra["recipe_run"]


@pytest.mark.parametrize("model", WITH_EXTERNAL, ids=lambda p: p.stem)
def test_a_sample_of_the_external_set_matches_the_card(model, external_data):
    from brainclf.data import Sample
    from brainclf.inference import Predictor, predict_samples

    card = read_card(model)
    rows = card.external_predictions[DATASET]
    ext = card.metrics["external"][DATASET]
    assert ext["n"] == len(rows) and "membership" in ext
    sample = [rows[i] for i in np.random.default_rng(0).choice(len(rows), size=min(48, len(rows)), replace=False)]
    predictor = Predictor.load(model, tta=ext["tta"])
    samples = [Sample(external_data / r["path"], CLASS_NAMES.index(r["true"])) for r in sample]
    raw, kept, errors = predict_samples(predictor, samples)
    assert not errors and len(kept) == len(sample)
    from brainclf.scoring import apply_temperature

    probs = apply_temperature(raw, predictor.temperature)
    np.testing.assert_allclose(probs, np.array([r["probs"] for r in sample]), atol=2e-4)
    assert [CLASS_NAMES[i] for i in probs.argmax(1)] == [r["pred"] for r in sample]


def test_a_multi_source_model_was_validated_on_held_out_cases_only(external_data):
    multi = [p for p in WITH_EXTERNAL if any(s.get("name") == DATASET
                                             for s in read_card(p).training.get("sources", []))]
    assert [p.stem for p in multi] == ["default_split"]
    for model in multi:
        card = read_card(model)
        trained = {k.split("::", 1)[1] for k in card.training["files"]["train"] + card.training["files"]["val"]
                   if k.startswith(DATASET + "::")}
        held = {r["path"] for r in card.external_predictions[DATASET]}
        assert trained and held and not trained & held
        assert all((external_data / p).is_file() for p in list(held)[:20])
