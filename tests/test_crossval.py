"""Grouped k-fold comparison of recipes (train --extra-val-fold, evaluation.crossval, scripts/compare_folds.py)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from test_sources import write_external

from brainclf.errors import DataError
from brainclf.evaluation.crossval import pool_folds, pooled_difference, summarise_pooled
from brainclf.evaluation.selection import PRIMARY
from brainclf.training import TrainConfig

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "scripts"))
import compare_folds  # noqa: E402


def scored(paths, nll, correct, y=None):
    return {"paths": list(paths), "y": np.asarray(y if y is not None else [0] * len(paths)),
            "nll": np.asarray(nll, float), "correct": np.asarray(correct, float)}


def two_folds(shift: float = 0.0):
    """Fold 0 validates on ext files c, a; fold 1 on b; both on the same primary files p, q (in another order)."""
    return [{PRIMARY: scored(["p", "q"], [0.2 + shift, 0.4 + shift], [1, 0]),
             "ext": scored(["c", "a"], [1.0 + shift, 3.0 + shift], [1, 0], y=[2, 0])},
            {PRIMARY: scored(["q", "p"], [0.6 + shift, 0.4 + shift], [1, 1]),
             "ext": scored(["b"], [2.0 + shift], [1], y=[1])}]


def test_extra_sources_are_pooled_out_of_fold_and_the_primary_averaged_over_folds():
    pooled = pool_folds(two_folds())
    ext, primary = pooled["ext"], pooled[PRIMARY]
    assert ext["paths"] == ["a", "b", "c"] and ext["nll"].tolist() == [3.0, 2.0, 1.0]
    assert ext["y"].tolist() == [0, 1, 2] and ext["out_of_fold"]
    assert primary["paths"] == ["p", "q"] and primary["nll"] == pytest.approx([0.3, 0.5])
    assert primary["correct"].tolist() == [1.0, 0.5] and not primary["out_of_fold"]
    summary = summarise_pooled(pooled)
    assert summary["ext"] == {"n": 3, "accuracy": pytest.approx(2 / 3), "nll": pytest.approx(2.0), "folds": 2,
                              "out_of_fold": True}
    assert summary[PRIMARY]["accuracy"] == pytest.approx(0.75)


def test_folds_that_are_not_folds_of_one_split_are_refused():
    folds = two_folds()
    with pytest.raises(DataError, match="at least two fold models"):
        pool_folds(folds[:1])
    with pytest.raises(DataError, match="share validation files of ext"):
        pool_folds([folds[0], folds[0]])  # the same fold twice
    other_primary = {**folds[1], PRIMARY: scored(["p", "r"], [0.1, 0.1], [1, 1])}
    with pytest.raises(DataError, match="different primary-source images"):
        pool_folds([folds[0], other_primary])
    with pytest.raises(DataError, match="different sources"):
        pool_folds([folds[0], {PRIMARY: folds[1][PRIMARY]}])


def test_a_uniformly_better_recipe_is_better_beyond_doubt_and_other_files_are_refused():
    incumbent, challenger = pool_folds(two_folds()), pool_folds(two_folds(shift=-0.1))
    groups = {PRIMARY: np.array([0, 1]), "ext": np.array([0, 1, 2])}
    d = pooled_difference(challenger, incumbent, groups)
    assert d["difference"] == pytest.approx(-0.1) and d["interval"][1] < 0
    assert pooled_difference(incumbent, incumbent, groups)["interval"] == (0.0, 0.0)
    folds = two_folds()
    folds[1]["ext"] = scored(["d"], [2.0], [1])
    with pytest.raises(DataError, match="different validation files"):
        pooled_difference(pool_folds(folds), incumbent, groups)


@pytest.fixture(scope="module")
def fold_models(tmp_path_factory, synthetic_dataset):
    """One tiny recipe trained on folds 0 and 1 of an extra source."""
    from brainclf.data import Source
    from brainclf.training import TrainRequest, train

    base = tmp_path_factory.mktemp("folds")
    ext = write_external(base / "ext-src", cases=10)
    out = []
    for fold in (0, 1):
        config = TrainConfig(architecture="seed", image_size=32, epochs=1, batch_size=8, extra_val_fold=fold,
                             extra_sources=[{"name": "ext-src", "weight": 2.0}])
        out.append(Path(train(TrainRequest(config, synthetic_dataset, f"fold{fold}", models_dir=base / "models",
                                           run_dir=base / f"run{fold}", extra_data=[Source("ext-src", ext, 2.0)]))))
    return out, ext


def test_fold_runs_share_the_held_out_part_and_validate_on_other_cases(fold_models):
    (m0, m1), _ = fold_models
    states = [json.loads((m.parent.parent / f"run{k}" / "state.json").read_text()) for k, m in enumerate((m0, m1))]
    assert states[0]["external_test_files"] == states[1]["external_test_files"]
    ext_val = [{f for f in s["val_files"] if f.startswith("ext-src::")} for s in states]
    assert ext_val[0] and ext_val[1] and not ext_val[0] & ext_val[1]
    assert [s["config"]["extra_val_fold"] for s in states] == [0, 1]
    primary_val = [{f for f in s["val_files"] if "::" not in f} for s in states]
    assert primary_val[0] == primary_val[1]


def test_the_script_pools_the_folds_and_keeps_the_incumbent_without_a_clear_win(fold_models, synthetic_dataset,
                                                                                   capsys):
    (m0, m1), ext = fold_models
    common = ["--data", str(synthetic_dataset), "--extra-data", str(ext)]
    assert compare_folds.main(["--recipe", "a", str(m0), str(m1), "--recipe", "b", str(m1), str(m0), *common,
                               "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["chosen"] == "a" and out["differences"]["b"]["difference"] == pytest.approx(0.0, abs=1e-6)
    ext_result = out["results"]["a"]["ext-src"]
    assert ext_result["out_of_fold"] and ext_result["folds"] == 2
    states = [json.loads((m.parent.parent / f"run{k}" / "state.json").read_text()) for k, m in enumerate((m0, m1))]
    assert ext_result["n"] == sum(sum(f.startswith("ext-src::") for f in s["val_files"]) for s in states)
    assert compare_folds.main(["--recipe", "a", str(m0), str(m0), *common]) == 2
    assert "share validation files of ext-src" in capsys.readouterr().err
    assert compare_folds.main(["--recipe", "a", str(m0), *common]) == 2
