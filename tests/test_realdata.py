"""Tests on the real dataset ($BRAINCLF_DATA) and the bundled models.

They skip when the data is absent on a developer machine, but CI sets BRAINCLF_REQUIRE_REAL_DATA=1 and
then a missing dataset is a failure, never a silent skip.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from brainclf import CLASS_NAMES

REPO = Path(__file__).resolve().parent.parent
MODELS = REPO / "models"


@pytest.fixture(scope="module")
def default_report(real_data):
    from brainclf.evaluation import evaluate_folder
    from brainclf.inference import Predictor

    # Without TTA, like the card's "test" metrics it is compared with.
    return evaluate_folder(Predictor.load(MODELS / "default.keras", tta=False), real_data / "Testing")


def test_dataset_layout_matches_its_readme(real_data):
    from brainclf.data import discover

    ds = discover(real_data)
    counts = {split: {c: sum(s.class_name == c for s in samples) for c in CLASS_NAMES}
              for split, samples in ds.splits.items()}
    assert counts["Training"] == {"glioma": 1321, "meningioma": 1339, "notumor": 1591, "pituitary": 1457}
    assert counts["Testing"] == {"glioma": 200, "meningioma": 226, "notumor": 399, "pituitary": 200}


def test_default_model_meets_the_accuracy_bar(default_report):
    """The bundled default (the refit): >= 98 % on the 1,025 Testing images, meningioma recall >= 97.5 %. Its
    split run held 98.5 % and 98 %; learning from 427 more external slices cost it 7 Kaggle images (98.05 %,
    README 'Results'), a trade made for the external source, so the bar follows it and no lower."""
    r = default_report
    assert r["n"] == 1025
    assert r["unreadable"] == []
    assert r["accuracy"] >= 0.98, r["confusion_matrix"]
    assert r["per_class"]["meningioma"]["recall"] >= 0.975, r["confusion_matrix"]
    assert r["macro_auc"] >= 0.99


def test_default_card_agrees_with_a_fresh_evaluation(default_report):
    """The card's stored per-image predictions are what the model really predicts (the app trusts them)."""
    card = json.loads((MODELS / "default.json").read_text())
    stored = {Path(r["path"]).name: r["pred"] for r in card["test_predictions"]}
    fresh = {Path(r["path"]).name: r["pred"] for r in default_report["predictions"]}
    assert stored.keys() == fresh.keys()
    disagree = [k for k in stored if stored[k] != fresh[k]]
    assert len(disagree) <= 1, disagree  # float round-off may flip a tie, nothing more
    assert abs(card["metrics"]["test"]["accuracy"] - default_report["accuracy"]) <= 1 / 1025


def test_the_clean_subset_leaves_out_the_testing_images_near_a_training_image(default_report, real_data):
    """The clean-subset figures are measured on the Testing images with no exact or near duplicate among the
    model's training images. brainclf.data.dedup's docstring measured each Testing image's distance to its
    nearest Training image: 489 are within 10 bits and 513 within 15, so at its threshold of 12 bits between 512
    and 536 of the 1,025 are clean."""
    from brainclf.data import dedup_report, discover

    clean = default_report["clean"]
    assert clean is not None, default_report.get("clean_note")  # the card's training images were found
    assert clean["n"] == sum(r["clean"] for r in default_report["predictions"])
    assert 1025 - 513 <= clean["n"] <= 1025 - 489, clean["n"]
    # The default trained and validated on the whole Training folder: its clean subset is the dedup report's.
    ds = discover(real_data)
    card = json.loads((MODELS / "default.json").read_text())
    learnt = {k for part in ("train", "val") for k in card["training"]["files"][part] if "::" not in k}
    assert learnt == {s.path.relative_to(real_data).as_posix() for s in ds.splits["Training"]}
    assert clean["n"] == dedup_report(ds)["leakage"]["Testing"]["clean"]  # hashes remembered from the evaluation


def test_cli_evaluate_json_on_testing(real_data, capsys):
    from brainclf.cli import main

    assert main(["evaluate", "--model", str(MODELS / "default.keras"), "--data", str(real_data / "Testing"),
                 "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    # As the model runs by default (the refit default: flip TTA on, 97.95 % recorded in its card).
    card = json.loads((MODELS / "default.json").read_text())
    assert out["tta"] is card["calibration"]["tta_default"]
    assert out["n"] == 1025 and out["accuracy"] >= 0.975
    assert abs(out["accuracy"] - card["metrics"]["test_tta" if out["tta"] else "test"]["accuracy"]) <= 1 / 1025
    assert set(out["per_class"]) == set(CLASS_NAMES)
    assert len(out["confusion_matrix"]) == 4 and sum(map(sum, out["confusion_matrix"])) == 1025
    assert 0.99 <= out["macro_auc"] <= 1.0


def test_seed_model_is_the_studys_architecture_and_its_card_is_honest(real_data):
    from brainclf.evaluation import evaluate_folder
    from brainclf.inference import Predictor

    p = Predictor.load(MODELS / "seed.keras")
    assert p.model.count_params() == 2364
    assert p.card.architecture == "seed" and p.card.contract.size == 120 and p.card.contract.channels == 3
    r = evaluate_folder(p, real_data / "Testing")
    assert abs(r["accuracy"] - p.card.metrics["test"]["accuracy"]) <= 1 / 1025


def test_bundled_models_are_small_and_have_full_cards():
    for name in ("default", "default_split", "seed"):
        path = MODELS / f"{name}.keras"
        assert path.stat().st_size < 10_000_000
        card = json.loads((MODELS / f"{name}.json").read_text())
        t = card["training"]
        assert t["config"]["architecture"] == card["architecture"]
        assert t["fingerprint"]["counts"]["train"] and len(t["fingerprint"]["file_list_sha256"]) == 64
        assert len(t["history"]["val_loss"]) == t["epochs_run"]
        assert card["libraries"]["keras"].startswith("3.")
        assert len(card["test_predictions"]) == 1025


def test_dedup_finds_the_known_train_test_leakage(real_data):
    from brainclf.data import dedup_report, discover

    r = dedup_report(discover(real_data))
    leak = r["leakage"]["Testing"]
    # The dataset's README: most notumor Testing images have a near twin in Training; hundreds overall.
    assert 300 <= leak["with_near_duplicate_in_training"] <= 800
    assert leak["clean"] + leak["with_near_duplicate_in_training"] == 1025
    assert r["pairs"]["Testing x Training"]["exact_pairs"] > 100


def test_smoke_training_on_a_few_dozen_real_images(real_data, tmp_path):
    from brainclf.model import load_model
    from brainclf.training import TrainConfig, TrainRequest, train

    out = train(TrainRequest(TrainConfig(architecture="compact_cnn", image_size=48, epochs=1, batch_size=16,
                            max_train_images=48), real_data, "real_smoke", models_dir=tmp_path / "m",
                run_dir=tmp_path / "run"))
    model, card = load_model(out)
    assert card.training["sizes"]["train"] == 48
    # The split is leakage-aware: no training file is also a validation file.
    state = json.loads((tmp_path / "run" / "state.json").read_text())
    assert not set(state["train_files"]) & set(state["val_files"])
    from brainclf.data import NEAR_DUP_THRESHOLD, hamming_matrix, hash_files

    tr = hash_files([real_data / p for p in state["train_files"]])
    va = hash_files([real_data / p for p in state["val_files"]])
    assert hamming_matrix(va.dhash, tr.dhash).min() > NEAR_DUP_THRESHOLD
    assert card.metrics["test"]["n"] > 0


def test_gradcam_faithfulness_direction_on_real_images(real_data):
    """Issue #4: deleting Grad-CAM's most salient pixels hurts more than deleting random blocks, and a
    re-initialised model's maps differ from the trained model's."""
    from brainclf.data import discover, load_arrays
    from brainclf.evaluation import deletion_test, randomisation_check
    from brainclf.inference import Predictor

    p = Predictor.load(MODELS / "default.keras")
    samples = [s for s in discover(real_data / "Testing").splits[""]][::50]  # 21 images, all classes
    x, _, _, _ = load_arrays(samples, p.contract)
    d = deletion_test(p, x)
    assert d["gradcam_auc"] < d["random_auc"] - 0.05
    assert randomisation_check(p, x)["mean_spearman"] < 0.6


def test_ood_guard_on_real_and_non_mri_images(real_data):
    """Issue #4: >= 95 % of non-MRI inputs are flagged, <= 1 % of the real Testing MR slices (and its CT ones all)."""
    from brainclf.data import discover
    from brainclf.inference import Predictor, non_mri_images

    # The OOD flag comes from the unflipped pass's features: flip TTA would only double the work.
    p = Predictor.load(MODELS / "default.keras", tta=False)
    others = non_mri_images()
    flagged = sum(p.predict(img, name=n).out_of_distribution for n, img in others)
    assert flagged / len(others) >= 0.95
    samples = discover(real_data / "Testing").splits[""]
    assert len(samples) == 1025
    # The set's CT slices (a bright skull ring: 27 of 1,025, 24 of them "no tumour") are not brain MRI: flagged,
    # every one; of the rest, at most 1 %.
    from brainclf.inference.ood import CT_RING_THRESHOLD, ct_ring_score
    from brainclf.input import decode_image

    ct = {s.path for s in samples if ct_ring_score(decode_image(s.path)) >= CT_RING_THRESHOLD}
    assert 10 <= len(ct) <= 50
    flagged = {s.path for s in samples if p.predict(s.path, name=s.path.name).out_of_distribution}
    assert ct <= flagged
    assert len(flagged - ct) / (len(samples) - len(ct)) <= 0.01
