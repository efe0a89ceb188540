"""brainclf.training: the smoke run's outputs, resume, config checks and cancellation."""

from __future__ import annotations

import json
import threading
import zipfile

import keras
import numpy as np
import pytest

from brainclf import CLASS_NAMES
from brainclf.errors import ConfigError
from brainclf.model import file_sha256, read_card
from brainclf.training import TrainConfig, TrainingCancelled, TrainRequest, runs_dir, train

SMOKE = dict(architecture="compact_cnn", image_size=32, epochs=1, batch_size=8, early_stopping_patience=5)


def test_smoke_model_and_card_exist(smoke_run):
    model_path, run_dir, models_dir = smoke_run
    assert model_path == models_dir / "smoke.keras" and model_path.is_file()
    assert model_path.with_suffix(".json").is_file()
    assert {"state.json", "best.keras", "last.keras"} <= {p.name for p in run_dir.iterdir()}
    assert not list(models_dir.glob("*.tmp*"))  # the atomic write left nothing behind


def test_card_contents(smoke_model):
    card = read_card(smoke_model)
    assert card.name == "smoke" and card.architecture == "compact_cnn"
    assert card.input_contract == {"size": 32, "channels": 1, "padding": "centre-black", "resample": "bilinear",
                                   "crop": "none", "intensity": "none"}
    assert card.file_sha256 == file_sha256(smoke_model)
    assert card.version.endswith(card.file_sha256[:8])
    assert card.class_names == list(CLASS_NAMES)
    assert card.params == keras.saving.load_model(smoke_model, compile=False).count_params()
    tr = card.training
    assert tr["config"]["epochs"] == 1 and tr["config"]["image_size"] == 32
    assert tr["epochs_run"] == 1 and tr["best_epoch"] == 1
    for key in ("loss", "accuracy", "val_loss", "val_accuracy", "lr"):
        assert len(tr["history"][key]) == 1, key
    fp = tr["fingerprint"]
    assert set(fp["counts"]) == {"train", "val", "test"}
    assert sum(fp["counts"]["test"].values()) == 12
    assert sum(fp["counts"]["train"].values()) + sum(fp["counts"]["val"].values()) == 48
    assert len(fp["file_list_sha256"]) == 64
    assert tr["sizes"] == {k: sum(v.values()) for k, v in fp["counts"].items()}


def test_card_test_metrics_and_predictions(smoke_model):
    card = read_card(smoke_model)
    test = card.metrics["test"]
    assert test["n"] == 12
    cm = np.array(test["confusion_matrix"])
    assert cm.shape == (4, 4) and cm.sum() == 12
    assert cm.sum(1).tolist() == [3, 3, 3, 3]  # rows are the true classes
    assert "val" in card.metrics and card.metrics["val"]["n"] >= 1
    rows = card.test_predictions
    assert len(rows) == 12
    for r in rows:
        assert {"path", "true", "pred", "probs"} <= set(r)
        assert r["path"].startswith("Testing/") and r["path"].endswith(".png")
        assert r["true"] in CLASS_NAMES and r["pred"] in CLASS_NAMES
        assert r["path"].split("/")[1] == r["true"]
        assert len(r["probs"]) == 4 and sum(r["probs"]) == pytest.approx(1.0, abs=1e-4)
        assert r["pred"] == CLASS_NAMES[int(np.argmax(r["probs"]))]
    correct = sum(r["true"] == r["pred"] for r in rows)
    assert test["accuracy"] == pytest.approx(correct / 12)


def test_saved_model_has_no_optimizer(smoke_run):
    model_path, run_dir, _ = smoke_run
    model = keras.saving.load_model(model_path, compile=False, safe_mode=True)
    assert model.input_shape == (None, 32, 32, 1)
    assert model_path.stat().st_size < (run_dir / "last.keras").stat().st_size
    with zipfile.ZipFile(model_path) as z:
        config = json.loads(z.read("config.json"))
    assert not config.get("compile_config")
    with zipfile.ZipFile(run_dir / "last.keras") as z:
        assert json.loads(z.read("config.json")).get("compile_config")


def test_resume_of_finished_run_does_not_retrain(smoke_run, synthetic_dataset, tmp_path):
    _, run_dir, _ = smoke_run
    events = []
    out = train(TrainRequest(TrainConfig(**SMOKE), data=synthetic_dataset, name="smoke", models_dir=tmp_path,
                run_dir=run_dir, progress=events.append))
    stages = [p.stage for p in events]
    assert out == tmp_path / "smoke.keras" and out.exists()
    assert "training" not in stages and stages[-1] == "done"
    # Issue #27: the final evaluation reports its steps, its share growing to 1 (the bar and the time left).
    evaluating = [p for p in events if p.stage == "evaluating"]
    shares = [p.fraction_done() for p in evaluating]
    assert len(evaluating) >= 6 and shares == sorted(shares) and evaluating[-1].fraction == pytest.approx(1.0)
    assert any("OOD guard" in p.message for p in evaluating) and evaluating[-1].eta_s() == pytest.approx(0.0)
    state = json.loads((run_dir / "state.json").read_text())
    assert state["epoch"] == 1 and len(state["history"]["loss"]) == 1
    assert len(read_card(out).training["history"]["loss"]) == 1


def test_different_config_in_same_run_dir_is_refused(smoke_run, synthetic_dataset, tmp_path):
    _, run_dir, _ = smoke_run
    with pytest.raises(ConfigError, match="different config"):
        train(TrainRequest(TrainConfig(**{**SMOKE, "epochs": 2}), data=synthetic_dataset, name="smoke",
                           models_dir=tmp_path, run_dir=run_dir))
    assert not (tmp_path / "smoke.keras").exists()


def test_a_cancel_before_the_start_stops_it_while_preparing_and_leaves_nothing(synthetic_dataset, tmp_path,
                                                                               monkeypatch):
    monkeypatch.setenv("BRAINCLF_RUNS", str(tmp_path / "runs"))
    cancel = threading.Event()
    cancel.set()
    events = []
    with pytest.raises(TrainingCancelled, match="while preparing its images, before any epoch"):
        train(TrainRequest(TrainConfig(**{**SMOKE, "epochs": 3, "augment": False}), data=synthetic_dataset,
                           name="cancelme", models_dir=tmp_path / "models", cancel=cancel, progress=events.append))
    assert not any(e.stage == "training" for e in events)  # not one batch
    assert not (tmp_path / "runs" / "cancelme").exists()  # nothing saved: the folder it made is gone again
    assert not (tmp_path / "models" / "cancelme.keras").exists()


def test_a_cancel_in_the_first_epoch_stops_after_its_batch(synthetic_dataset, tmp_path, monkeypatch):
    monkeypatch.setenv("BRAINCLF_RUNS", str(tmp_path / "runs"))
    cancel, events = threading.Event(), []

    def hook(p):
        events.append(p)
        if p.stage == "training":
            cancel.set()

    with pytest.raises(TrainingCancelled, match="cancelled"):
        train(TrainRequest(TrainConfig(**{**SMOKE, "epochs": 3, "augment": False}), data=synthetic_dataset,
                           name="cancelme", models_dir=tmp_path / "models", cancel=cancel, progress=hook))
    run_dir = tmp_path / "runs" / "cancelme"  # BRAINCLF_RUNS decides where the run lives
    batch_events = [e for e in events if e.stage == "training" and e.batch < e.batches]
    assert 1 <= len(batch_events) <= 2 < batch_events[0].batches  # stopped after the batch it saw, mid-epoch
    assert events[-1].stage == "cancelled"
    assert json.loads((run_dir / "state.json").read_text())["epoch"] == 0  # the cut epoch is not counted
    assert not (tmp_path / "models" / "cancelme.keras").exists()


def test_runs_dir_follows_env(monkeypatch, tmp_path):
    monkeypatch.setenv("BRAINCLF_RUNS", str(tmp_path))
    assert runs_dir() == tmp_path


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"epochs": 0}, "epochs"),
    ({"architecture": "nope"}, "Unknown architecture"),
    ({"batch_size": 0}, "batch size"),
    ({"optimizer": "sgd"}, "optimizer"),
    ({"learning_rate": 0.0}, "learning rate"),
    ({"learning_rate": float("inf")}, "learning rate"),
    ({"learning_rate": float("nan")}, "learning rate"),
    ({"max_train_images": -5}, "max-images must be at least 1"),
])
def test_config_validation(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        TrainConfig(**kwargs).validate()


def test_invalid_config_fails_before_touching_disk(synthetic_dataset, tmp_path):
    with pytest.raises(ConfigError):
        train(TrainRequest(TrainConfig(epochs=0), data=synthetic_dataset, name="x", models_dir=tmp_path / "m",
              run_dir=tmp_path / "run"))
    assert not (tmp_path / "run").exists() and not (tmp_path / "m").exists()


def test_config_contract_defaults():
    assert TrainConfig(architecture="seed").contract().shape == (120, 120, 3)
    assert TrainConfig(image_size=64, channels=3).contract().shape == (64, 64, 3)


def test_validate_rejects_bad_image_size():
    with pytest.raises(ConfigError):
        TrainConfig(image_size=16).validate()


def test_finish_now_saves_the_best_checkpoint_of_an_interrupted_run(synthetic_dataset, tmp_path):
    cancel = threading.Event()

    def hook(p):
        if p.stage == "training" and p.epoch == 1 and p.batch >= 1:
            cancel.set()  # interrupt during the second epoch

    config = TrainConfig(**{**SMOKE, "epochs": 3, "augment": False})
    run_dir = tmp_path / "run"
    with pytest.raises(TrainingCancelled):
        train(TrainRequest(config, data=synthetic_dataset, name="f", models_dir=tmp_path / "m", cancel=cancel,
                           progress=hook, run_dir=run_dir))
    out = train(TrainRequest(config, data=synthetic_dataset, name="f", models_dir=tmp_path / "m", run_dir=run_dir,
                finish_now=True))
    card = read_card(out)
    assert card.training["epochs_run"] == 1 and card.training["stopped_early"]
    assert card.training["stopped_reason"] == "finished on request after 1 of 3 epochs"


def test_tta_default_is_chosen_on_validation_and_test_predictions_kept_both_ways(smoke_model):
    card = read_card(smoke_model)
    cal = card.calibration
    for suffix in ("", "_tta"):
        assert cal[f"val_nll{suffix}"] >= 0 and 0 <= cal[f"val_accuracy{suffix}"] <= 1
    # Flip TTA becomes the default exactly when it lowers the calibrated validation loss.
    assert cal["tta_default"] is (cal["val_nll_tta"] < cal["val_nll"])
    assert card.tta_default is cal["tta_default"]
    # Both sets of test predictions are stored; the headline metrics follow the default.
    assert len(card.test_predictions_tta) == len(card.test_predictions) == card.metrics["test_tta"]["n"]
    assert [r["path"] for r in card.test_predictions_tta] == [r["path"] for r in card.test_predictions]
    assert card.metrics["test_tta"]["tta"] is True and card.metrics["test"]["tta"] is False
    assert card.test_metrics(tta=True) is card.metrics["test_tta"]
    assert card.test_metrics(tta=False) is card.metrics["test"]
    assert card.test_metrics() is card.metrics["test_tta" if card.tta_default else "test"]


def test_member_configs_share_the_split_and_differ_in_seed():
    config = TrainConfig(architecture="compact_cnn_x2", image_size=32, seed=7)
    members = config.member_configs()
    assert [m.architecture for m in members] == ["compact_cnn", "compact_cnn"]
    assert [m.seed for m in members] == [7, 8]
    assert {m.effective_split_seed() for m in members} == {7}
    assert TrainConfig(**SMOKE).member_configs() == [TrainConfig(**SMOKE)]


def test_a_run_saved_before_new_config_fields_still_resumes(tmp_path):
    # state.json of an older run lacks fields added since; they take their defaults when compared.
    old = {k: v for k, v in TrainConfig(**SMOKE).to_dict().items() if k not in ("precision", "split_seed")}
    assert TrainConfig(**old).to_dict() == TrainConfig(**SMOKE).to_dict()


def test_bad_precision_is_refused():
    with pytest.raises(ConfigError, match="precision"):
        TrainConfig(precision="float16").validate()


@pytest.fixture(scope="module")
def ensemble_run(synthetic_dataset, tmp_path_factory):
    base = tmp_path_factory.mktemp("ensemble")
    events = []
    config = TrainConfig(**{**SMOKE, "architecture": "compact_cnn_x2", "precision": "mixed_bfloat16"})
    out = train(TrainRequest(config, data=synthetic_dataset, name="ens", models_dir=base / "m", run_dir=base / "run",
                progress=events.append))
    return config, out, base / "run", events


def test_ensemble_trains_each_member_on_one_split_and_saves_one_float32_model(ensemble_run):
    from brainclf.inference import Predictor

    config, out, run_dir, events = ensemble_run
    card = read_card(out)
    assert card.architecture == "compact_cnn_x2"
    assert card.gradcam_layer == ["m0_last_conv", "m1_last_conv"]
    states = [json.loads((run_dir / f"member{k}" / "state.json").read_text()) for k in range(2)]
    assert [s["config"]["seed"] for s in states] == [42, 43]
    assert states[0]["val_files"] == states[1]["val_files"] and states[0]["train_files"] == states[1]["train_files"]
    assert [m["seed"] for m in card.training["members"]] == [42, 43]
    assert card.training["train_seconds"] == pytest.approx(sum(s["train_seconds"] for s in states), abs=0.2)
    assert card.training["config"]["precision"] == "mixed_bfloat16"
    model = keras.models.load_model(out)
    assert {layer.compute_dtype for layer in model.layers if layer.weights} == {"float32"}
    # Progress counts the members' epochs as one run: 1 and 2 of 2.
    epochs = [(p.epoch, p.epochs) for p in events if p.stage == "training" and p.batch == p.batches]
    assert epochs[-1] == (2, 2) and sorted(epochs) == epochs
    assert [p.epoch for p in events if p.epoch_end] == [1, 2]  # one end-of-epoch report per epoch (CLI lines)
    assert events[-1].stage == "done"
    evaluating = [p for p in events if p.stage == "evaluating"]
    assert evaluating[0].message.endswith("combining the members") and evaluating[-1].fraction == pytest.approx(1.0)
    assert evaluating[0].epochs == 2 and all(0 < p.fraction_done() <= 1 for p in evaluating)
    predictor = Predictor.load(out)
    x = np.random.default_rng(0).random((32, 32, 1), np.float32)
    assert predictor.gradcam(x).shape == (32, 32)
    assert card.ood["layers"] == ["m0_s0b", "m0_s1b", "m0_s2b"]


def test_finished_ensemble_is_not_retrained(ensemble_run, synthetic_dataset):
    config, out, run_dir, _ = ensemble_run
    before = [(run_dir / f"member{k}" / "last.keras").stat().st_mtime for k in range(2)]
    events = []
    train(TrainRequest(config, data=synthetic_dataset, name="ens", models_dir=out.parent, run_dir=run_dir,
                       progress=events.append))
    assert [(run_dir / f"member{k}" / "last.keras").stat().st_mtime for k in range(2)] == before
    assert not [p for p in events if p.stage == "training"]


def test_finish_now_refuses_an_ensemble_with_an_untrained_member(synthetic_dataset, tmp_path):
    cancel = threading.Event()

    def stop_after_member_0(p):
        if p.stage == "training" and p.epoch >= 1:
            cancel.set()

    # Two epochs per member, cancelled after member 1's first: member 1 half-trained, member 2 not started.
    config = TrainConfig(**{**SMOKE, "architecture": "compact_cnn_x2", "augment": False, "epochs": 2})
    run_dir = tmp_path / "run"
    with pytest.raises(TrainingCancelled):
        train(TrainRequest(config, data=synthetic_dataset, name="e", models_dir=tmp_path / "m", cancel=cancel,
              progress=stop_after_member_0, run_dir=run_dir))
    assert json.loads((run_dir / "member0" / "state.json").read_text())["epoch"] == 1
    with pytest.raises(ConfigError, match="Member 2 of 2 .* has not trained an epoch"):
        train(TrainRequest(config, data=synthetic_dataset, name="e", models_dir=tmp_path / "m", run_dir=run_dir,
                           finish_now=True))
    # Nothing was marked finished: a plain resume would still train both members to the end.
    assert json.loads((run_dir / "member0" / "state.json").read_text())["stopped_early"] is False
    assert not (run_dir / "member1" / "state.json").exists()
    assert not (tmp_path / "m" / "e.keras").exists()


def test_finish_now_refuses_a_run_without_a_finished_epoch(synthetic_dataset, tmp_path):
    with pytest.raises(ConfigError, match="not one epoch"):
        train(TrainRequest(TrainConfig(**SMOKE), data=synthetic_dataset, name="z", models_dir=tmp_path / "m",
              run_dir=tmp_path / "run", finish_now=True))
    # Nothing is marked finished: a new run refused before its first epoch leaves no state at all (a 0-epoch state
    # a cancel left is kept unmarked: brainclf.training.loop._finish_now refuses before it marks anything).
    assert not (tmp_path / "run" / "state.json").exists()


def test_an_ensemble_refuses_a_run_dir_holding_another_config(smoke_run, synthetic_dataset, tmp_path):
    _, run_dir, _ = smoke_run  # a single compact_cnn run
    with pytest.raises(ConfigError, match="different config"):
        train(TrainRequest(TrainConfig(**{**SMOKE, "architecture": "compact_cnn_x2"}), data=synthetic_dataset, name="x",
              models_dir=tmp_path / "m", run_dir=run_dir))
