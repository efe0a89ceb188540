"""brainclf.serving.bench: the benchmark runs end to end on a tiny model and reports well-formed numbers.

Behaviour only (keys, counts, consistency); never timing thresholds, which flake on shared machines.
"""

from __future__ import annotations

import json

import pytest

from brainclf.input import InputContract
from brainclf.model import read_card
from brainclf.serving import bench_training, format_bench, run_bench


@pytest.fixture(scope="module")
def bench_result(smoke_model, synthetic_dataset):
    return run_bench([smoke_model], synthetic_dataset, app=False, runs=3)


def test_single_image_figures_are_medians_over_the_runs(bench_result, smoke_model):
    (m,) = bench_result["models"]
    assert m["model"] == smoke_model.stem and m["params"] == read_card(smoke_model).params
    for key in ("decode", "preprocess", "forward", "gradcam", "end_to_end", "predict_with_ood"):
        assert m[key]["runs"] == 3, key
        assert 0 < m[key]["median_ms"] <= m[key]["p95_ms"], key
    assert m["naive_forward"]["runs"] == 20  # the naive path gets at least 20 runs
    assert m["speedup_vs_naive"] > 0


def test_evaluation_and_training_entries(bench_result, smoke_model):
    e = bench_result["evaluation"][smoke_model.stem]
    # The CLI run is a whole process (it raises if `brainclf evaluate` fails); its time is reported, never compared.
    assert e["images"] == 12 and e["seconds"] > 0 and e["cli_process_s"] > 0
    assert e["images_per_s"] == pytest.approx(e["images"] / e["seconds"])
    (t,) = bench_result["training"]
    # Timed at the size the model was trained at, not the architecture's default.
    assert t["architecture"] == f"compact_cnn {read_card(smoke_model).contract.size}px float32"
    assert t["s_per_epoch_est"] == pytest.approx(t["s_per_step"] * 161)  # ceil(5137 / 32) steps
    assert "app" not in bench_result


def test_format_and_json(bench_result, smoke_model):
    text = format_bench(bench_result)
    assert text.startswith("brainclf benchmark — ")
    assert smoke_model.stem in text and "ms/step of 32" in text and "peak memory" in text
    assert json.loads(json.dumps(bench_result)) == bench_result  # bench.json is plain JSON


def test_bench_training_honours_the_contract():
    r = bench_training("seed", steps=2, contract=InputContract(size=40, channels=3))
    assert r["architecture"] == "seed 40px float32" and r["s_per_step"] > 0
