"""External validation: partial-class folders, the manifest breakdown, case-group intervals, the
asymmetric refer rule, and leaving out images a model trained on."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from test_sources import write_external

from brainclf import CLASS_NAMES
from brainclf.errors import DataError
from brainclf.evaluation.external import cluster_bootstrap, read_manifest, summarise
from brainclf.scoring import choose_refer_thresholds, coverage_accuracy


def row(true, pred, p=0.9, seq="T1", referred=False, ood=False, group=0):
    probs = [(1 - p) / 3] * 4
    probs[CLASS_NAMES.index(pred)] = p
    return {"path": f"{true}/x.png", "true": true, "pred": pred, "probs": probs, "referred": referred,
            "ood": ood, "sequence": seq, "group": group}


def test_summarise_counts_tumours_called_no_tumour_with_and_without_referral():
    rows = [row("glioma", "notumor"), row("glioma", "notumor", referred=True), row("meningioma", "notumor", ood=True),
            row("meningioma", "meningioma"), row("notumor", "notumor"), row("notumor", "glioma")]
    s = summarise(rows, intervals=False)
    assert (s["n"], s["tumour_images"], s["called_notumor"], s["called_notumor_unflagged"]) == (6, 4, 3, 1)
    assert s["called_notumor_rate"] == pytest.approx(0.75) and s["called_notumor_unflagged_rate"] == 0.25
    assert s["classes_present"] == ["glioma", "meningioma", "notumor"] and "pituitary" not in s["recall"]
    assert s["recall"] == {"glioma": 0.0, "meningioma": 0.5, "notumor": 0.5}
    assert s["coverage"] == pytest.approx(4 / 6) and s["accuracy"] == pytest.approx(2 / 6)


def test_cluster_bootstrap_is_wider_when_slices_come_in_cases():
    rng = np.random.default_rng(0)
    case_right = rng.random(40) < 0.7
    y = np.zeros(400, int)
    pred = np.where(np.repeat(case_right, 10), 0, 1)  # ten slices per case, all right or all wrong
    caught = np.zeros(400, bool)
    by_case = cluster_bootstrap(y, pred, caught, np.repeat(np.arange(40), 10), n_boot=400)
    by_slice = cluster_bootstrap(y, pred, caught, np.arange(400), n_boot=400)
    width = lambda ci: ci[1] - ci[0]  # noqa: E731
    assert width(by_case["accuracy"]) > 2 * width(by_slice["accuracy"])
    assert by_case["groups"] == 40


def test_manifest_refuses_paths_outside_its_folder(tmp_path):
    (tmp_path / "manifest.csv").write_text("file,class,subtype,sequence\nglioma/a.png,glioma,Astro,T1C+\n")
    assert read_manifest(tmp_path) == {"glioma/a.png": {"sequence": "T1C+", "subtype": "Astro"}}
    for bad in ("../etc/passwd", "/etc/passwd", "glioma/../../x.png"):
        (tmp_path / "manifest.csv").write_text(f"file,class,subtype,sequence\n{bad},glioma,Astro,T1\n")
        with pytest.raises(DataError, match="inside its folder"):
            read_manifest(tmp_path)
    (tmp_path / "manifest.csv").write_text("name,label\na.png,glioma\n")
    with pytest.raises(DataError, match="columns"):
        read_manifest(tmp_path)
    assert read_manifest(tmp_path / "nowhere") == {}


def test_refer_rule_is_stricter_for_no_tumour():
    y = np.array([0, 2, 2, 2, 1, 0])
    probs = np.array([[.15, 0, .85, 0], [0, 0, .95, .05], [0, .1, .9, 0], [0, 0, .8, .2], [0, .99, .01, 0],
                      [.99, 0, .01, 0]])
    t = choose_refer_thresholds(y, probs, target_accuracy=0.75)
    # The symmetric rule would accept the glioma called 'no tumour' (0.85). The 0.8 normal is referred by the
    # 'no tumour' bar at any base bar, so the base bar's lowest cut is the next answerable one, 0.9.
    assert t["glioma"] == pytest.approx(0.9)
    assert t["notumor"] > 0.85  # the 'no tumour' rule refers it
    cov = coverage_accuracy(y, probs, t)
    assert cov["accepted_accuracy"] == 1.0 and cov["referred"] == 2  # the miss and the 0.8 normal
    assert coverage_accuracy(y, probs, 0.8)["accepted_accuracy"] < 1.0  # one bar of 0.8 for all would accept it
    # Without a missed tumour on validation the rule is the symmetric one.
    clean = choose_refer_thresholds(np.array([2, 0]), np.array([[0, 0, .9, .1], [.9, .1, 0, 0]]))
    assert len(set(clean.values())) == 1


@pytest.fixture(scope="module")
def external_folder(tmp_path_factory):
    return write_external(tmp_path_factory.mktemp("ext") / "ext-src", cases=4)


def test_evaluate_folder_on_a_partial_class_folder_breaks_down_by_sequence(smoke_predictor, external_folder):
    from brainclf.evaluation import evaluate_folder

    report = evaluate_folder(smoke_predictor, external_folder)
    ext = report["external"]
    assert report["n"] == ext["n"] == 36 and report["per_class"]["pituitary"]["support"] == 0
    assert set(ext["by_sequence"]) == {"T1", "T2"}
    assert sum(m["n"] for m in ext["by_sequence"].values()) == 36
    assert ext["tumour_images"] == 24 and "not among the model's training sources" in ext["membership"]
    assert ext["intervals"]["groups"] <= 36
    rows = ext["predictions"]
    assert {r["sequence"] for r in rows} == {"T1", "T2"} and all(r["path"].count("/") == 1 for r in rows)


def _trained_on_first(smoke_model, external_folder, tmp_path, k: int) -> tuple[Path, list[str]]:
    """A copy of the smoke model whose card says it trained on the first `k` files of `external_folder` as its
    extra source 'ext-src': (model path, those files)."""
    model = tmp_path / "m.keras"
    shutil.copy(smoke_model, model)
    card = json.loads(smoke_model.with_suffix(".json").read_text())
    first = sorted(p.relative_to(external_folder).as_posix() for p in external_folder.rglob("*.png"))[:k]
    card["training"]["files"]["train"] += [f"ext-src::{p}" for p in first]
    card["training"]["sources"] = [{"name": "x", "primary": True}, {"name": "ext-src", "weight": 1.0}]
    model.with_suffix(".json").write_text(json.dumps(card))
    return model, first


def test_evaluate_folder_leaves_out_images_the_model_trained_on(smoke_model, external_folder, tmp_path):
    from brainclf.evaluation import evaluate_folder
    from brainclf.inference import Predictor
    from brainclf.model import read_card

    model, first = _trained_on_first(smoke_model, external_folder, tmp_path, 5)
    predictor = Predictor.load(model)
    report = evaluate_folder(predictor, external_folder)
    assert report["excluded_trained_on"] == 5 and report["n"] == 31
    assert not {r["path"] for r in report["predictions"]} & set(first)
    assert "5 named as its training or validation files were left out" in report["external"]["membership"]
    assert read_card(model).name == "smoke"


def test_a_renamed_copy_of_a_training_source_is_not_scored_as_another_source(smoke_model, external_folder, tmp_path):
    """The model's extra source's files are left out of an evaluation whatever the folder is called now."""
    from brainclf.evaluation import evaluate_folder
    from brainclf.inference import Predictor

    model, _ = _trained_on_first(smoke_model, external_folder, tmp_path, 4)
    renamed = shutil.copytree(external_folder, tmp_path / "downloaded-copy")
    report = evaluate_folder(Predictor.load(model), renamed)
    assert report["excluded_trained_on"] == 4 and report["n"] == 32
    assert "4 named as its training or validation files were left out" in report["external"]["membership"]


def test_the_models_own_test_split_is_in_distribution_and_never_recorded_as_external(
        smoke_model, synthetic_dataset, tmp_path):
    from brainclf.errors import DataError
    from brainclf.evaluation import evaluate_folder, record_external
    from brainclf.inference import Predictor

    model = tmp_path / "m.keras"
    shutil.copy(smoke_model, model)
    shutil.copy(smoke_model.with_suffix(".json"), model.with_suffix(".json"))
    for folder in (synthetic_dataset / "Testing", synthetic_dataset):
        report = evaluate_folder(Predictor.load(model), folder, external=True)
        ext = report["external"]
        assert ext["own_source"] == synthetic_dataset.name
        assert "in-distribution, not another source" in ext["membership"]
        assert "not among the model's training sources" not in ext["membership"]
        with pytest.raises(DataError, match="in-distribution, so they are not recorded as external"):
            record_external(model, report)
    assert "Testing" not in (json.loads(model.with_suffix(".json").read_text())["metrics"].get("external") or {})
    # The command line says so before evaluating; a folder kept inside the source that is no split of it is not it.
    from brainclf.cli import main
    from brainclf.evaluation.evaluate import primary_source_part
    from brainclf.model import read_card

    assert main(["evaluate", "--model", str(model), "--data", str(synthetic_dataset / "Testing"), "--external",
                 "--record"]) == 2
    assert primary_source_part(read_card(model), synthetic_dataset / "hospital-b") is None
    assert primary_source_part(read_card(model), synthetic_dataset / "Testing") == synthetic_dataset.name


def test_record_external_stores_the_block_in_the_card(smoke_model, external_folder, tmp_path):
    from brainclf.evaluation import evaluate_folder, record_external
    from brainclf.inference import Predictor
    from brainclf.model import read_card

    model = tmp_path / "m.keras"
    shutil.copy(smoke_model, model)
    shutil.copy(smoke_model.with_suffix(".json"), model.with_suffix(".json"))
    report = evaluate_folder(Predictor.load(model), external_folder)
    record_external(model, report)
    card = read_card(model)
    assert card.metrics["external"]["ext-src"]["accuracy"] == report["external"]["accuracy"]
    assert len(card.external_predictions["ext-src"]) == 36
    assert "predictions" not in card.metrics["external"]["ext-src"]


def test_cli_evaluate_json_prints_the_sequence_breakdown(smoke_model, external_folder, capsys):
    from brainclf.cli import main

    assert main(["evaluate", "--model", str(smoke_model), "--data", str(external_folder), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out["external"]["by_sequence"]) == {"T1", "T2"}
    assert "predictions" not in out["external"] and out["external"]["called_notumor_rate"] is not None
    assert main(["evaluate", "--model", str(smoke_model), "--data", str(external_folder)]) == 0
    text = capsys.readouterr().out
    assert "external validation on ext-src" in text and "tumour images called 'no tumour'" in text


def test_training_paths_of_a_multi_source_card_are_the_primary_images_only(tmp_path):
    from brainclf.evaluation import training_paths_for
    from brainclf.model import ModelCard

    (tmp_path / "Training" / "glioma").mkdir(parents=True)
    (tmp_path / "Training" / "glioma" / "a.png").write_bytes(b"x")
    card = ModelCard(name="m", architecture="seed", input_contract={"size": 32, "channels": 1},
                     training={"files": {"train": ["Training/glioma/a.png", "ext::glioma/b.png"], "val": []}})
    assert training_paths_for(card, tmp_path / "Testing", tmp_path) == [tmp_path / "Training" / "glioma" / "a.png"]


def test_evaluating_the_models_own_training_folder_leaves_its_images_out(smoke_model, synthetic_dataset):
    """A Training folder evaluated on its own is the model's training set: its images are left out and counted, not
    scored as if new."""
    from brainclf.evaluation import evaluate_folder
    from brainclf.inference import Predictor
    from brainclf.model import read_card

    predictor = Predictor.load(smoke_model)
    files = read_card(smoke_model).training["files"]
    own = {f for part in ("train", "val") for f in files[part]}
    training = synthetic_dataset / "Training"
    assert own == {f"Training/{p.relative_to(training).as_posix()}" for p in training.rglob("*.png")}
    with pytest.raises(DataError, match="trained or validated on every image"):  # it was scored as new before
        evaluate_folder(predictor, training)
    (training / "glioma" / "new-slice.png").write_bytes((training / "glioma").iterdir().__next__().read_bytes())
    try:
        report = evaluate_folder(predictor, training)
    finally:
        (training / "glioma" / "new-slice.png").unlink()
    assert report["excluded_trained_on"] == len(own) and report["n"] == 1


def test_external_rows_answer_a_confidence_at_the_refer_bar_and_refer_one_step_below_it(tmp_path, make_image):
    """An external figure's 'referred' follows the rule every reader applies (refer *below* a class's bar): at the
    bar a slice is answered, one float below it referred; a bar of 1.0 answers a confidence of exactly 1.0."""
    from types import SimpleNamespace

    from brainclf.data.datasets import Sample
    from brainclf.evaluation.external import external_rows

    bars = {"glioma": 0.9, "meningioma": 0.9, "notumor": 0.99, "pituitary": 1.0}
    cases = [(cls, conf) for cls in ("glioma", "notumor", "pituitary")
             for conf in (bars[cls], float(np.nextafter(bars[cls], 0)))]
    raw = np.array([[conf if c == cls else (1 - conf) / 3 for c in CLASS_NAMES] for cls, conf in cases])
    samples = []
    for k, (cls, _) in enumerate(cases):
        (tmp_path / cls).mkdir(exist_ok=True)
        make_image(cls, seed=k).save(tmp_path / cls / f"{k}.png")
        samples.append(Sample(tmp_path / cls / f"{k}.png", CLASS_NAMES.index(cls)))
    predictor = SimpleNamespace(temperature=1.0, applied_refer_thresholds=bars, card=SimpleNamespace(ood=None))
    rows, errors = external_rows(predictor, samples, tmp_path, predicted=(raw, np.zeros((len(cases), 2)), samples, []),
                                 manifest={})
    assert errors == [] and [r["pred"] for r in rows] == [cls for cls, _ in cases]
    assert [r["referred"] for r in rows] == [False, True] * 3
