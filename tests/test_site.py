"""The site workflow (brainclf.site) on a made-up site: its split, its refusals, and validate → calibrate →
adapt → report with the smoke model, each step's model saved under a new name with a card that says where it
was validated."""

from __future__ import annotations

import json
import re
import string
import subprocess
import threading
from pathlib import Path

import numpy as np
import pytest
from conftest import copy_model, synthetic_image
from PIL import Image

from brainclf.errors import BrainclfError, ConfigError, DataError
from brainclf.inference.predict import Predictor
from brainclf.model import read_card
from brainclf.site import AdaptConfig, SiteRun, site_report_pdf, split_site
from brainclf.training.config import TrainingCancelled

SITE_CLASSES = ("glioma", "meningioma", "notumor")


def case_id(i: int) -> str:
    """Letters only: a file-name series per case (digits would make all cases one series)."""
    return "".join(string.ascii_lowercase[int(d)] for d in f"{i:03d}")


def write_site(root, cases_per_class: int = 12, slices_per_case: int = 2, classes=SITE_CLASSES, seed: int = 7):
    """ROOT/<class>/<class>-<case>-<k>.png: another 'scanner' (brighter, inverted contrast) than the smoke data."""
    rng = np.random.default_rng(seed)
    for cls in classes:
        (root / cls).mkdir(parents=True, exist_ok=True)
        for i in range(cases_per_class):
            for k in range(1, slices_per_case + 1):
                img = np.asarray(synthetic_image(cls, rng, size=48), np.float64)
                synthetic = np.clip(255 - img * 0.8, 0, 255).astype(np.uint8)
                Image.fromarray(synthetic, mode="L").save(root / cls / f"{cls}-{case_id(i)}-{k}.png")
    return root


@pytest.fixture(scope="module")
def site_folder(tmp_path_factory):
    return write_site(tmp_path_factory.mktemp("site") / "st-elsewhere")


def test_split_keeps_cases_whole_and_reads_back(site_folder, tmp_path):
    split = split_site(site_folder, "st-elsewhere")
    counts = split.counts()
    assert sum(counts.values()) == 72 and all(counts.values())
    case_of = {}
    for part, samples in split.parts.items():
        for s in samples:
            case = s.path.stem.rsplit("-", 1)[0]
            assert case_of.setdefault(case, part) == part, f"case {case} straddles {part} and {case_of[case]}"
    assert split.classes() == list(SITE_CLASSES)
    assert split_site(site_folder, "st-elsewhere").to_dict() == split.to_dict()  # same seed, same split


def test_too_small_a_site_is_refused_saying_what_is_needed(tmp_path):
    small = write_site(tmp_path / "tiny", cases_per_class=3)
    with pytest.raises(DataError, match=r"at least 60 labelled slices.*18 slices"):
        split_site(small, "tiny")


def test_a_class_with_too_few_cases_is_named(tmp_path):
    site = write_site(tmp_path / "thin", cases_per_class=14)
    for f in sorted((site / "notumor").iterdir())[4:]:
        f.unlink()
    with pytest.raises(DataError, match=r"too few cases of No tumour \(2\)"):
        split_site(site, "thin")


def test_a_bad_site_name_is_refused(site_folder):
    with pytest.raises(DataError, match="site name"):
        split_site(site_folder, "[click](http://x)")


def test_a_site_run_refuses_a_changed_folder(tmp_path, smoke_model):
    site = write_site(tmp_path / "site")
    SiteRun.open(tmp_path / "run", site, "site", smoke_model)
    synthetic_image("glioma", np.random.default_rng(1), size=48).save(site / "glioma" / "extra-slice.png")
    with pytest.raises(DataError, match=r"changed since.*1 new"):
        SiteRun.open(tmp_path / "run", site, "site", smoke_model)


def test_a_site_run_refuses_slices_replaced_under_the_same_names(tmp_path, smoke_model):
    """The fingerprint hashes the slices' contents: a folder whose files were overwritten between validate and
    adapt is not the data the run's figures and the site model's card speak of."""
    site = write_site(tmp_path / "site")
    run = SiteRun.open(tmp_path / "run", site, "site", smoke_model)
    assert len(run.state["fingerprint"]["content_sha256"]) == 64
    assert SiteRun.open(tmp_path / "run", site, "site", smoke_model).split.fingerprint == run.split.fingerprint
    slice_path = run.split.parts["heldout"][0].path
    synthetic_image("meningioma", np.random.default_rng(9), size=48).save(slice_path)  # same name, other pixels
    with pytest.raises(DataError, match=r"replaced since this site run split it \(the same file names"):
        SiteRun.open(tmp_path / "run", site, "site", smoke_model)


@pytest.fixture(scope="module")
def site_run(tmp_path_factory, site_folder, smoke_model, synthetic_dataset):
    """validate → calibrate → adapt (one epoch) of the smoke model at the made-up site."""
    from brainclf.inference import Predictor

    base = tmp_path_factory.mktemp("siterun")
    models = base / "models"
    models.mkdir()
    run = SiteRun.open(base / "run", site_folder, "st-elsewhere", smoke_model)
    run.validate(Predictor.load(smoke_model))
    run.calibrate(Predictor.load(smoke_model), target=0.9, models_dir=models, data_root=synthetic_dataset)
    run.adapt(AdaptConfig(epochs=1, batch_size=16), synthetic_dataset, target=0.9, models_dir=models)
    return run, models


def test_each_step_records_its_held_out_figures(site_run):
    run, _ = site_run
    validated = run.step("validate")
    assert validated["n"] == len(run.split.parts["heldout"]) > 0
    assert validated["model"]["name"] == "smoke"
    assert [r["finding"] for r in validated["rates"]][0].startswith("Any tumour")
    assert validated["confusion_matrix"] and validated["risk_coverage"]["n"] == validated["n"]
    for step in ("calibrate", "adapt"):
        assert run.step(step)["heldout"]["n"] == validated["n"]
    kaggle = run.step("adapt")["kaggle_test"]
    assert kaggle["before"]["n"] == kaggle["after"]["n"] == 12  # the synthetic Testing split: 3 per class
    assert kaggle["before"]["tta"] == kaggle["after"]["tta"]  # like with like
    adapted = run.step("adapt")["adapt"]
    assert adapted["step_seconds"] >= adapted["seconds"] > 0


@pytest.mark.parametrize("tta", [False, True])
def test_an_adapted_cards_kaggle_figures_are_stored_under_the_way_they_were_run(site_run, tta):
    """A check run with flip TTA was stored as the no-TTA figures: the Evaluation page then said "single pass"."""
    from brainclf.site.profile import site_card

    run, _ = site_run
    path = Path(run.step("adapt")["model"])
    card = read_card(path)
    stored, _ = card.stored_test_predictions(card.tta_default)
    measured = {**card.test_metrics(), "tta": tta, "predictions": stored}
    out = site_card(card, "again", path, run, run.step("adapt")["heldout"], adapted=True, target=0.9,
                    kaggle_test=measured)
    key, other = ("test_tta", "test") if tta else ("test", "test_tta")
    assert out.metrics[key]["n"] == 12 and other not in out.metrics
    assert (len(out.test_predictions_tta), len(out.test_predictions)) == ((12, 0) if tta else (0, 12))
    assert out.test_metrics(tta)["n"] == 12 and out.stored_test_predictions(tta)[1] == tta


def test_a_profile_holds_only_figures_measured_with_its_own_calibration(site_run, synthetic_dataset):
    """It kept the starting card's rows, scaled by that card's temperature and referred by its rule, and the
    Evaluation page read them with the site's thresholds (review)."""
    from brainclf.inference import Predictor

    run, models = site_run
    path = models / "st-elsewhere-smoke.keras"
    card, predictor = read_card(path), Predictor.load(path)
    assert set(card.metrics) <= {"test", "test_tta", "external"} and set(card.metrics["external"]) == {"st-elsewhere"}
    assert set(card.external_predictions) == {"st-elsewhere"}
    rows, with_tta = card.stored_test_predictions(predictor.tta)
    assert with_tta == predictor.tta and len(rows) == 12  # the synthetic Testing split, read by the profile
    for row in rows[:3]:
        now = predictor.predict(synthetic_dataset / row["path"])
        assert list(now.probabilities.values()) == pytest.approx(row["probs"], abs=1e-4)
        assert now.predicted == row["pred"]


@pytest.mark.parametrize("model", ["st-elsewhere-smoke", "st-elsewhere-smoke-adapted"])
def test_evaluating_a_site_model_on_its_site_folder_leaves_out_what_it_was_fitted_on(site_run, site_folder, model):
    """Its adaptation part (tuned, calibrated, epoch chosen on) was scored as if new: ~70 % of the folder (review)."""
    from brainclf.evaluation import evaluate_folder
    from brainclf.inference import Predictor
    from brainclf.site.own_data import learnt_from

    run, models = site_run
    card = read_card(models / f"{model}.keras")
    assert len(card.site["used"]) == len(run.split.adaptation)
    report = evaluate_folder(Predictor.load(models / f"{model}.keras"), site_folder)
    assert report["n"] == len(run.split.parts["heldout"])  # the held-out part alone
    assert (f"({len(run.split.adaptation)} named as its training or validation files were left out)"
            in report["external"]["membership"])
    every = [s for samples in run.split.parts.values() for s in samples]
    learnt = learnt_from(card, every, site_folder, None)  # a new site run of it leaves them out too
    assert learnt.sum() == len(run.split.adaptation)


def test_a_site_model_never_takes_the_name_of_a_training_that_can_still_be_resumed(site_run, smoke_run, tmp_path):
    """Another user's cancelled training SITE-MODEL: a step that took its name left that Resume refused for good."""
    from test_interrupted import interrupt

    from brainclf.site.naming import free_default_name, new_name

    run, models = site_run
    runs = tmp_path / "runs"
    interrupt(smoke_run, runs, "sub:bob", "st-elsewhere-smoke-9")  # one of its three epochs trained
    assert free_default_name(models, "st-elsewhere", "smoke", "-9") == "st-elsewhere-smoke-9"
    assert free_default_name(models, "st-elsewhere", "smoke", "-9", runs_root=runs) == "st-elsewhere-smoke-9-2"
    with pytest.raises(BrainclfError, match="unfinished training named st-elsewhere-smoke-9 can still be resumed"):
        new_name(models, "st-elsewhere-smoke-9", runs_root=runs)
    assert new_name(models, "st-elsewhere-smoke-10", runs_root=runs) == "st-elsewhere-smoke-10"


def test_the_starting_model_kaggle_figure_comes_from_its_card_only_when_measured_on_the_same_files(
        smoke_model, synthetic_dataset):
    from dataclasses import replace

    from brainclf.inference import Predictor
    from brainclf.site.own_data import kaggle_test_samples
    from brainclf.site.run import _kaggle_before

    predictor = Predictor.load(smoke_model)
    kaggle = kaggle_test_samples(synthetic_dataset)
    rows = [{"path": p.relative_to(synthetic_dataset).as_posix()} for p in (s.path for s in kaggle)]
    claimed = {"n": len(kaggle), "accuracy": 0.123, "tta": False}
    same = replace(predictor.card, metrics={**predictor.card.metrics, "test": claimed}, test_predictions=rows)
    before = _kaggle_before(type(predictor)(predictor.model, same, tta=False), kaggle, synthetic_dataset)
    assert before == {"n": len(kaggle), "accuracy": 0.123, "tta": False, "from": "the model's card"}
    with_tta = replace(predictor.card, metrics={**predictor.card.metrics, "test_tta": {**claimed, "tta": True,
                                                                                       "accuracy": 0.456}},
                       test_predictions_tta=rows)
    assert _kaggle_before(type(predictor)(predictor.model, with_tta, tta=True), kaggle, synthetic_dataset)[
        "accuracy"] == 0.456  # the card's figure for the way it is asked to run
    other = replace(same, test_predictions=rows[:-1] + [{"path": "Testing/glioma/another.png"}])
    measured = _kaggle_before(type(predictor)(predictor.model, other, tta=False), kaggle, synthetic_dataset)
    assert "from" not in measured and measured["n"] == len(kaggle) and measured["accuracy"] != 0.123


def test_a_profile_of_an_uploaded_model_keeps_its_uploader_and_says_its_figures_are_measured_here(
        tmp_path, site_folder, smoke_model):
    """Its card holds only figures the site steps measured, so they are no longer the uploader's claim."""
    from brainclf.evaluation.provenance import card_is_verified
    from brainclf.inference import Predictor
    from brainclf.model import card_path

    uploaded = copy_model(smoke_model, tmp_path / "models", "claimed")
    card = read_card(uploaded)
    card.name, card.provenance = "claimed", {"uploaded_by": "eve", "uploaded": "2026-12-06", "metrics_verified": False}
    card.save(card_path(uploaded))
    run = SiteRun.open(tmp_path / "run", site_folder, "st-elsewhere", uploaded)
    run.calibrate(Predictor.load(uploaded), target=0.9, models_dir=tmp_path / "models")
    profile = read_card(tmp_path / "models" / "st-elsewhere-claimed.keras")
    assert profile.provenance["uploaded_by"] == "eve" and card_is_verified(profile)
    assert profile.measured_site["name"] == "st-elsewhere"  # written here: its scope is no claim
    assert profile.provenance["verified_on"] == {"root_name": "st-elsewhere",
                                                 "n": len(run.split.parts["heldout"])}


def test_site_models_are_new_files_whose_cards_say_where_they_were_validated(site_run, smoke_model):
    from brainclf.inference import Predictor
    from brainclf.presentation import case_scope_line

    run, models = site_run
    assert sorted(p.name for p in models.glob("*.keras")) == ["st-elsewhere-smoke-adapted.keras",
                                                               "st-elsewhere-smoke.keras"]
    profile = read_card(models / "st-elsewhere-smoke.keras")
    adapted = read_card(models / "st-elsewhere-smoke-adapted.keras")
    base = read_card(smoke_model)
    assert profile.file_sha256 == base.file_sha256 and adapted.file_sha256 != base.file_sha256
    assert profile.site["adapted"] is False and adapted.site["adapted"] is True
    assert adapted.site["scope"].startswith("validated at st-elsewhere:")
    assert adapted.site["split"] == run.split.counts() and adapted.site["fingerprint"] == run.split.fingerprint
    assert adapted.site["base_model"]["sha256"] == base.file_sha256
    assert "st-elsewhere" in [s["name"] for s in adapted.training["sources"]]
    assert adapted.faithfulness == {} and "val" not in adapted.metrics  # stale figures of the base are gone
    assert adapted.metrics["external"]["st-elsewhere"]["n"] == run.step("adapt")["heldout"]["n"]
    assert profile.calibration["fitted_on"].startswith("the adaptation part of site st-elsewhere")
    assert adapted.calibration["fitted_on"].startswith("the calibration part of site st-elsewhere")
    predictor = Predictor.load(models / "st-elsewhere-smoke-adapted.keras")
    expected = adapted.calibration["refer_thresholds_tta" if predictor.tta else "refer_thresholds"]
    assert predictor.refer_thresholds == pytest.approx(expected)
    assert "Validated at st-elsewhere" in case_scope_line(adapted)


def test_nothing_is_overwritten(site_run, smoke_model):
    from brainclf.inference import Predictor

    run, models = site_run
    with pytest.raises(BrainclfError, match="already exists"):  # a name given is never replaced
        run.calibrate(Predictor.load(smoke_model), models_dir=models, name="st-elsewhere-smoke")
    with pytest.raises(BrainclfError, match="already exists"):  # the model it started from
        run.calibrate(Predictor.load(smoke_model), models_dir=smoke_model.parent, name="smoke")


def test_go_live_report_states_the_site_and_its_figures(site_run, tmp_path):
    run, _ = site_run
    pdf = tmp_path / "golive.pdf"
    pdf.write_bytes(site_report_pdf(run.state))
    text = subprocess.run(["pdftotext", "-layout", str(pdf), "-"], capture_output=True, text=True, check=True).stdout
    assert "Go-live report: site st-elsewhere" in text
    assert "As it came" in text and "Site calibration" in text and "Adapted" in text
    assert "Forgetting check on Kaggle Testing (12 slices)" in text
    assert "Calibrate: Refer rule fitted on the adaptation part" in text and "Adapt: Refer rule fitted on" in text
    held = run.step("adapt")["heldout"]
    from brainclf.presentation import pct

    assert pct(held["accuracy"]) in text
    flat = " ".join(text.split())
    for step, heading in (("calibrate", "Site calibration"), ("adapt", "Adapted")):  # which model it certifies
        saved = read_card(Path(run.step(step)["model"]))
        assert run.step(step)["sha256"] == saved.file_sha256 and run.step(step)["version"] == saved.version
        assert (f"{heading}: saved as {saved.name}, version {saved.version}, file SHA-256 "
                f"{saved.file_sha256[:12]}.") in flat
    info = subprocess.run(["pdfinfo", str(pdf)], capture_output=True, text=True, check=True).stdout
    assert re.search(r"^Pages:\s+1$", info, re.MULTILINE), info


def test_a_report_before_validation_is_refused():
    with pytest.raises(ConfigError, match="validate step"):
        site_report_pdf({"steps": {}})


def test_adaptation_cancels_after_a_batch_and_resumes_from_its_last_epoch(tmp_path, site_folder, smoke_model,
                                                                         synthetic_dataset):
    from brainclf.model import load_model
    from brainclf.site.adapt import fine_tune
    from brainclf.site.own_data import replay_samples

    split = split_site(site_folder, "st-elsewhere")
    model, card = load_model(smoke_model)
    replay = replay_samples(card, synthetic_dataset)
    cancel = threading.Event()

    def stop_in_second_epoch(p):
        if p.stage == "training" and p.epoch == 1 and not p.epoch_end:
            cancel.set()

    cfg = AdaptConfig(epochs=2, batch_size=16)
    args = (split.parts["tune"], split.parts["calibration"], replay, card.contract, cfg, tmp_path / "adapt")
    with pytest.raises(TrainingCancelled, match="after 1 of 2 epochs"):
        fine_tune(model, *args, progress=stop_in_second_epoch, cancel=cancel)
    assert (tmp_path / "adapt" / "last.keras").is_file()
    _, state = fine_tune(load_model(smoke_model)[0], *args)
    assert state.epoch == 2 and len(state.history["calibration_loss"]) == 2


def test_cli_runs_every_step(tmp_path, site_folder, smoke_model, synthetic_dataset, capsys):
    from brainclf.cli import main

    models = tmp_path / "models"
    models.mkdir()
    rc = main(["site", "all", "--model", str(smoke_model), "--site-data", str(site_folder), "--site", "cli-site",
               "--data", str(synthetic_dataset), "--run-dir", str(tmp_path / "run"), "--models-dir", str(models),
               "--epochs", "1", "--target", "0.9", "--confidence", "0.8"])
    out = capsys.readouterr().out
    assert rc == 0
    assert "validate: smoke" in out and "held-out:" in out and "Kaggle Testing (12)" in out
    assert (tmp_path / "run" / "go-live-report.pdf").read_bytes().startswith(b"%PDF")
    assert (models / "cli-site-smoke-adapted.keras").is_file()
    # The bound rule reaches the cards, the predictor and the words: 90 % at 80 % confidence needs 16 right.
    assert "(the rule asked that bound to reach the target)" in out
    assert "Promising 90 % at 80 % confidence takes at least 16 answered slices, all right" in out
    from brainclf.inference import Predictor

    for name in ("cli-site-smoke", "cli-site-smoke-adapted"):
        assert read_card(models / f"{name}.keras").calibration["refer_confidence"] == 0.8
        assert Predictor.load(models / f"{name}.keras").refer_confidence == 0.8


@pytest.mark.parametrize("flag,value,match", [("--confidence", "0.2", "refer confidence must be a probability"),
                                              ("--target", "1.5", "refer target must be an accepted accuracy")])
def test_cli_refuses_a_refer_rule_out_of_range_before_any_work(tmp_path, smoke_model, capsys, flag, value, match):
    from brainclf.cli import main

    rc = main(["site", "calibrate", "--model", str(smoke_model), "--site-data", str(tmp_path / "absent"),
               "--site", "x", "--run-dir", str(tmp_path / "run"), flag, value])
    assert rc == 2 and re.search(match, capsys.readouterr().err, re.IGNORECASE)
    assert not (tmp_path / "run").exists()


def _adapt_inputs(site_folder, smoke_model, synthetic_dataset):
    """(the site's split, the smoke model's replayed images, its starting trainable weights by path)."""
    from brainclf.model import load_model
    from brainclf.site.own_data import replay_samples

    split = split_site(site_folder, "st-elsewhere")
    replay = replay_samples(read_card(smoke_model), synthetic_dataset)
    return split, replay, {w.path: np.array(w) for w in load_model(smoke_model)[0].trainable_weights}


def _adapt(smoke_model, split, replay, cfg, run_dir, **kw):
    """fine_tune from a fresh load of the smoke model: (the kept model, the run's state)."""
    from brainclf.model import load_model
    from brainclf.site.adapt import fine_tune

    model, card = load_model(smoke_model)
    return fine_tune(model, split.parts["tune"], split.parts["calibration"], replay, card.contract, cfg, run_dir, **kw)


def _cancel_in_the_second_epoch_then_resume(smoke_model, split, replay, cfg, run_dir):
    """The run's state after a cancel in its second epoch and a resume from its last.keras."""
    cancel = threading.Event()
    with pytest.raises(TrainingCancelled):
        _adapt(smoke_model, split, replay, cfg, run_dir, cancel=cancel,
               progress=lambda p: p.stage == "training" and p.epoch == 1 and cancel.set())
    return _adapt(smoke_model, split, replay, cfg, run_dir)[1]


def _one_epoch_moved(smoke_model, split, replay, start, run_dir, distance, **settings):
    """One epoch of adaptation with `settings`: (the trained weights' summed distance(w - start), the model)."""
    cfg = AdaptConfig(epochs=1, batch_size=16, learning_rate=0.01, **settings)
    tuned, state = _adapt(smoke_model, split, replay, cfg, run_dir)
    assert state.epoch == 1
    return sum(float(distance(np.array(w) - start[w.path]).sum()) for w in tuned.trainable_weights
               if w.path in start), tuned


def test_a_moving_average_of_the_weights_moves_them_less_and_resumes(tmp_path, site_folder, smoke_model,
                                                                     synthetic_dataset):
    split, replay, start = _adapt_inputs(site_folder, smoke_model, synthetic_dataset)
    plain, averaged = (_one_epoch_moved(smoke_model, split, replay, start, tmp_path / f"adapt-{ema}", np.abs,
                                        ema_momentum=ema)[0] for ema in (0.0, 0.999))
    assert 0 < averaged < 0.8 * plain  # the average starts after the first step, so some movement stays
    # Cancelled in its second epoch, then resumed from last.keras (the optimizer's average with it).
    cfg = AdaptConfig(epochs=2, batch_size=16, learning_rate=0.01, ema_momentum=0.999)
    state = _cancel_in_the_second_epoch_then_resume(smoke_model, split, replay, cfg, tmp_path / "resumed")
    assert state.epoch == 2 and len(state.history["calibration_loss"]) == 2


def test_an_anchor_pulls_the_weights_towards_the_start_and_is_not_saved_with_them(tmp_path, site_folder,
                                                                                   smoke_model, synthetic_dataset,
                                                                                   monkeypatch):
    from brainclf.site import adapt

    split, replay, start = _adapt_inputs(site_folder, smoke_model, synthetic_dataset)
    (free, free_model), (anchored, anchored_model) = (
        _one_epoch_moved(smoke_model, split, replay, start, tmp_path / f"adapt-{anchor}", np.square, anchor=anchor)
        for anchor in (0.0, 1.0))
    for tuned in (free_model, anchored_model):
        assert all(w.regularizer is None for w in tuned.trainable_weights)  # the shipped model is a plain one
    assert 0 < anchored < 0.5 * free

    # Cancelled in its second epoch, then resumed from last.keras: the loaded model is anchored again.
    anchored_models, real_anchor = [], adapt._anchor

    def spy(model, base_model, strength):
        real_anchor(model, base_model, strength)
        anchored_models.append((model is base_model, sum(w.regularizer is not None for w in model.trainable_weights)))

    monkeypatch.setattr(adapt, "_anchor", spy)
    cfg = AdaptConfig(epochs=2, batch_size=16, learning_rate=0.01, anchor=1.0)
    state = _cancel_in_the_second_epoch_then_resume(smoke_model, split, replay, cfg, tmp_path / "resumed")
    assert state.epoch == 2
    (fresh_is_base, fresh_n), (resumed_is_base, resumed_n) = anchored_models
    assert fresh_is_base and not resumed_is_base and fresh_n == resumed_n > 0


def test_frozen_early_layers_and_batchnorm_keep_their_weights_and_replay_targets_mix_the_model_own_output(
        tmp_path, site_folder, smoke_model, synthetic_dataset):
    from brainclf.data import load_arrays
    from brainclf.model import load_model
    from brainclf.site.adapt import _early, _replay_targets, fine_tune
    from brainclf.site.own_data import replay_samples

    split = split_site(site_folder, "st-elsewhere")
    model, card = load_model(smoke_model)
    before = {w.path: np.array(w) for w in model.weights}
    early = {w.path for layer in model.layers if _early(layer, model) for w in layer.weights}
    assert early, "the smoke model has layers at full or half resolution"
    replay = replay_samples(card, synthetic_dataset)
    cfg = AdaptConfig(epochs=1, batch_size=16, freeze_early_layers=True, freeze_batchnorm=True, distill=0.5,
                      learning_rate=0.01)
    tuned, _ = fine_tune(model, split.parts["tune"], split.parts["calibration"], replay, card.contract, cfg,
                         tmp_path / "adapt")
    after = {w.path: np.array(w) for w in tuned.weights}
    batchnorm = {w.path for layer in tuned.layers if "BatchNormalization" in type(layer).__name__
                 for w in layer.weights}
    for path in early | batchnorm:
        np.testing.assert_array_equal(after[path], before[path], err_msg=path)
    assert any(not np.array_equal(after[p], before[p]) for p in set(after) - early - batchnorm)
    assert all(layer.trainable for layer in tuned.layers)  # what is saved can be fine-tuned again as a whole

    x, y = load_arrays(replay[:8], card.contract)[:2]
    own = np.asarray(load_model(smoke_model)[0](x, training=False))
    targets = _replay_targets(load_model(smoke_model)[0], x, y, cfg)
    np.testing.assert_allclose(targets, 0.5 * own + 0.5 * np.eye(4)[y], atol=1e-5)
    np.testing.assert_allclose(targets.sum(1), 1.0, atol=1e-5)


def test_a_kaggle_drop_beyond_half_a_point_is_said_in_words():
    from brainclf.site.summary import forgetting

    def step(before, after):
        return {"kaggle_test": {"before": {"n": 1025, "accuracy": before}, "after": {"n": 1025, "accuracy": after}}}

    text, beyond = forgetting(step(0.997, 0.952))
    assert beyond and "99.7 % before, 95.2 % after" in text and "4.5 points lower" in text
    text, beyond = forgetting(step(0.997, 0.993))
    assert not beyond and "points lower" not in text
    assert forgetting({"kaggle_test": {"before": None, "after": None}}) is None and forgetting(None) is None


def test_a_site_name_with_a_final_newline_is_refused():
    from brainclf.site.split import check_site_name

    assert check_site_name("clinic-a.2") == "clinic-a.2"
    for bad in ("clinic\n", "clinic\r\n", "", ".hidden", "a" * 49, "a/b"):
        with pytest.raises(DataError, match="A site name is"):
            check_site_name(bad)


def test_a_cancel_after_the_last_epoch_publishes_nothing_and_a_new_start_goes_to_the_checks(
        tmp_path, site_folder, smoke_model, synthetic_dataset):
    """A review found a cancel accepted after the last epoch: the checks ran on and the model was published."""
    from brainclf.inference import Predictor

    models = tmp_path / "models"
    models.mkdir()
    run = SiteRun.open(tmp_path / "run", site_folder, "st-elsewhere", smoke_model)
    run.validate(Predictor.load(smoke_model))
    cancel, stages = threading.Event(), []

    def cancel_at_the_last_epoch_end(p):
        stages.append(p.stage)
        if p.epoch_end and p.epoch == 1:
            cancel.set()

    cfg = AdaptConfig(epochs=1, batch_size=16)
    with pytest.raises(TrainingCancelled, match="after its 1 epochs, before its checks"):
        run.adapt(cfg, synthetic_dataset, models_dir=models, progress=cancel_at_the_last_epoch_end, cancel=cancel)
    assert stages[-1] == "evaluating" and not list(models.glob("*.keras")) and run.step("adapt") is None
    stages.clear()
    run.adapt(cfg, synthetic_dataset, models_dir=models, progress=lambda p: stages.append(p.stage))
    assert "training" not in stages and [p.name for p in models.glob("*.keras")] == ["st-elsewhere-smoke-adapted.keras"]


@pytest.mark.parametrize("record", ['{"site": "st-elsewhere", "mod', '{"site": "st-elsewhere", "model": {}}'])
def test_a_site_record_cut_short_or_missing_fields_is_a_clear_refusal(tmp_path, site_folder, smoke_model, record):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "site.json").write_text(record)
    with pytest.raises(DataError, match=r"record \(site.json in run\) cannot be read.*move that folder aside"):
        SiteRun.open(tmp_path / "run", site_folder, "st-elsewhere", smoke_model)


def test_saved_epochs_not_resumed_are_said_not_dropped_silently(tmp_path, site_folder, smoke_model,
                                                              synthetic_dataset):
    from brainclf.model import load_model
    from brainclf.site.adapt import fine_tune
    from brainclf.site.own_data import replay_samples

    split = split_site(site_folder, "st-elsewhere")
    model, card = load_model(smoke_model)
    args = (split.parts["tune"], split.parts["calibration"], replay_samples(card, synthetic_dataset), card.contract)
    fine_tune(model, *args, AdaptConfig(epochs=1, batch_size=16), tmp_path / "adapt")
    said = []
    fine_tune(load_model(smoke_model)[0], *args, AdaptConfig(epochs=2, batch_size=16), tmp_path / "adapt",
              progress=lambda p: said.append(p.message))
    assert any("afresh: its 1 saved epochs were run with other settings" in m for m in said)
    (tmp_path / "adapt" / "adapt.json").write_text("{cut")
    said.clear()
    _, state = fine_tune(load_model(smoke_model)[0], *args, AdaptConfig(epochs=1, batch_size=16),
                         tmp_path / "adapt", progress=lambda p: said.append(p.message))
    assert state.epoch == 1 and any("saved state (adapt.json) cannot be read" in m for m in said)


def test_adapting_needs_tumour_and_no_tumour_slices_in_the_tuning_part(site_folder):
    from brainclf import CLASS_NAMES
    from brainclf.site.split import check_adaptable

    notumor = CLASS_NAMES.index("notumor")
    check_adaptable(split_site(site_folder, "st-elsewhere"))  # the made-up site holds both
    for kept, missing in ((lambda s: s.label == notumor, "tumour"), (lambda s: s.label != notumor, "no-tumour")):
        split = split_site(site_folder, "st-elsewhere")
        split.parts["tune"] = [s for s in split.parts["tune"] if kept(s)]
        with pytest.raises(DataError, match=f"its tuning part has no {missing} slices"):
            check_adaptable(split)


def test_calibrating_needs_tumour_slices_in_the_adaptation_part(tmp_path, smoke_model):
    """A profile fitted on normals alone loosened the 'no tumour' bar (no missed tumour to set it): refused, with
    nothing saved; a site with one tumour class and normals calibrates."""
    normals = write_site(tmp_path / "normals", cases_per_class=30, classes=("notumor",))
    run = SiteRun.open(tmp_path / "run", normals, "st-normals", smoke_model)
    run.validate(Predictor.load(smoke_model))  # validate works with any classes
    (tmp_path / "models").mkdir()
    with pytest.raises(DataError, match="Calibrating needs tumour slices from the site.*has none"):
        run.calibrate(Predictor.load(smoke_model), 0.9, tmp_path / "models")
    assert not list((tmp_path / "models").iterdir())
    two = write_site(tmp_path / "two", cases_per_class=16, classes=("glioma", "notumor"))
    out = SiteRun.open(tmp_path / "run2", two, "st-two", smoke_model)
    out.validate(Predictor.load(smoke_model))
    assert Path(out.calibrate(Predictor.load(smoke_model), 0.9, tmp_path / "models")["model"]).is_file()


def test_a_run_started_with_a_relative_model_path_goes_on_from_another_folder(tmp_path, site_folder, smoke_model,
                                                                              monkeypatch):
    monkeypatch.chdir(smoke_model.parent)
    SiteRun.open(tmp_path / "run", site_folder, "st-elsewhere", smoke_model.name)
    monkeypatch.chdir(tmp_path)  # the record names the file itself, not "smoke.keras" in whatever folder
    assert Path(json.loads((tmp_path / "run" / "site.json").read_text())["model"]["path"]) == smoke_model.resolve()
    assert SiteRun.open(tmp_path / "run", site_folder, "st-elsewhere", smoke_model)._model_path() == \
        smoke_model.resolve()
    with pytest.raises(DataError, match="started for site st-elsewhere, not clinic-b: give another site name"):
        SiteRun.open(tmp_path / "run", site_folder, "clinic-b", smoke_model)


def test_the_go_live_report_wraps_a_long_site_name_and_says_the_grouping_warnings(site_run, tmp_path):
    import copy

    run, _ = site_run
    state = copy.deepcopy(run.state)
    state["site"] = "KAROLINSKA-UNIVERSITY-HOSPITAL-SOLNA-NEURO-RAD-01"
    state["split"]["warnings"] = ["168 of 168 slices share the file-name pattern 'scan_#_#'"]
    pdf = tmp_path / "golive.pdf"
    pdf.write_bytes(site_report_pdf(state))
    text = subprocess.run(["pdftotext", str(pdf), "-"], capture_output=True, text=True, check=True).stdout
    assert "SOLNA-NEURO-RAD-01" in text  # ran off the page before
    assert "Warning: 168 of 168 slices share the file-name pattern" in " ".join(text.split())
    info = subprocess.run(["pdfinfo", str(pdf)], capture_output=True, text=True, check=True).stdout
    assert re.search(r"^Pages:\s+1$", info, re.MULTILINE), info


def test_the_cli_names_the_site_files_it_left_out(tmp_path, site_folder, smoke_model, capsys):
    import shutil

    from brainclf.cli import main

    site = shutil.copytree(site_folder, tmp_path / "st-elsewhere")
    (site / "glioma" / "._glioma-x-1.png").write_bytes(b"\x00\x05\x16\x07 mac resource fork")
    assert main(["site", "validate", "--model", str(smoke_model), "--site-data", str(site), "--site", "st-elsewhere",
                 "--run-dir", str(tmp_path / "run")]) == 0
    err = capsys.readouterr().err
    assert "Left out of this site run: 1 unreadable slice." in err
    assert "left out (unreadable): glioma/._glioma-x-1.png" in err


def test_a_folder_that_changed_since_the_split_is_refused_with_a_remedy_one_can_take(tmp_path):
    from brainclf.site.split import saved_split

    site = write_site(tmp_path / "site")
    split = split_site(site, "clinic")
    (site / "glioma" / "glioma-new-1.png").write_bytes((site / "glioma" / "glioma-aaa-1.png").read_bytes())
    with pytest.raises(DataError, match=r"\(0 slices gone, 1 new\): give another site name .*--run-dir"):
        saved_split(site, "clinic", {**split.to_dict(), "groups": split.groups})


def test_epochs_saved_before_a_setting_existed_resume_at_its_default(tmp_path):
    from dataclasses import asdict

    from brainclf.site.adapt import _state

    cfg = AdaptConfig(epochs=3)
    saved = {"config": {k: v for k, v in asdict(cfg).items() if k != "ema_momentum"}, "epoch": 2, "best_epoch": 1,
             "best_loss": 0.5, "history": {}, "seconds": 10.0}
    (tmp_path / "adapt.json").write_text(json.dumps(saved))
    (tmp_path / "last.keras").write_bytes(b"model")
    state, why = _state(tmp_path, cfg, "f00d")  # nor the fingerprint of its images: saved before there was one
    assert (state.epoch, why, state.config, state.data) == (2, "", asdict(cfg), "f00d")
    state, why = _state(tmp_path, AdaptConfig(epochs=3, ema_momentum=0.99), "f00d")  # not the default it ran at
    assert state.epoch == 0 and "other settings" in why


@pytest.mark.parametrize("setting, value, words", [
    ("epochs", 0, "epochs"), ("learning_rate", 0.5, "learning rate"), ("replay_per_site_slice", -1, "Replayed"),
    ("site_weight", 0, "loss weight"), ("distill", 1.5, "distillation"), ("ema_momentum", 1.0, "moving-average"),
    ("anchor", -0.1, "starting weights"), ("anchor", 2, "starting weights"), ("seed", -1, "seed")])
def test_each_adaptation_setting_out_of_range_is_refused_by_name(setting, value, words):
    with pytest.raises(ConfigError, match=words):
        AdaptConfig(**{setting: value}).validate()
    AdaptConfig(**{setting: getattr(AdaptConfig(), setting)}).validate()  # its default passes


def test_a_site_model_keeps_the_target_its_site_chose_whatever_the_servers(site_run):
    """Its scope line says 'answered at a 98 % target' under every case: an admin's [refer] target re-read its
    thresholds, so the line was false and the site's figures were not how the app ran it."""
    import dataclasses

    from brainclf.inference import Predictor

    run, models = site_run
    loaded = Predictor.load(models / "st-elsewhere-smoke.keras")
    curve = {"n": 10, "answered": [10, 5], "correct": [8, 5], "threshold": [0.5, 0.9]}  # 80 % at 0.5, 100 % at 0.9
    block = {"curves": {"st-elsewhere": curve}, "worst_notumor_miss": 0.0}
    site_card = dataclasses.replace(loaded.card, calibration={**loaded.card.calibration, "operating": block,
                                                              "operating_tta": block})

    def predictor(card):
        made = object.__new__(Predictor)
        made.__dict__.update({**loaded.__dict__, "card": card})
        return made

    assert predictor(dataclasses.replace(site_card, site={})).with_refer_target(0.8).refer_thresholds["glioma"] == 0.5
    site_model = predictor(site_card)
    assert site_model.with_refer_target(0.8).refer_thresholds == site_model.refer_thresholds


def test_two_profiles_of_one_model_are_told_apart_by_their_version(tmp_path, site_folder, smoke_model):
    """Same file, same day: a 90 % and an 80 % profile had the same version and hash, so the go-live PDF's
    certificate could not say which rule it was about."""
    from brainclf.inference import Predictor

    models = tmp_path / "models"
    run = SiteRun.open(tmp_path / "run", site_folder, "st-elsewhere", smoke_model)
    first = run.calibrate(Predictor.load(smoke_model), target=0.9, models_dir=models)
    second = run.calibrate(Predictor.load(smoke_model), target=0.8, models_dir=models)
    a, b = read_card(first["model"]), read_card(second["model"])
    assert a.file_sha256 == b.file_sha256 and a.version != b.version
    assert a.version.split("-")[:2] == b.version.split("-")[:2] and a.version.split("-")[2].startswith("r")


def test_the_before_after_table_and_the_cli_name_each_columns_mode_and_target(site_run):
    """A column's figures move with flip TTA (re-chosen at the site) and the refer target, not only with its step."""
    from brainclf.cli.site import format_step
    from brainclf.presentation import pct
    from brainclf.site.summary import comparison_rows

    run, _ = site_run
    rows = {r["Held-out part"]: r for r in comparison_rows(run.state)}
    assert rows["Refer target"] == {"Held-out part": "Refer target", "As it came": "its card's",
                                    "Site calibration": pct(0.9), "Adapted": pct(0.9)}
    for heading, step in (("As it came", run.step("validate")), ("Adapted", run.step("adapt")["heldout"])):
        assert rows["Flip TTA"][heading] == ("on" if step["tta"] else "off")
    line = format_step("calibrate", run.step("calibrate")).splitlines()[0]
    mode = "flip TTA" if run.step("calibrate")["calibration"].get("tta_default") else "single pass"
    assert f"; {mode}, temperature " in line and "refer bar " in line and f"for {pct(0.9)} accepted" in line


def test_the_cli_states_the_refer_bars_the_saved_model_answers_by():
    """The calibrate line names the tumour bar, the stricter "no tumour" bar only where there is one, and a bar
    no cut reached as 'every answer referred'; TTA's bars when the saved model runs with TTA."""
    from brainclf.cli.site import format_step

    def line(cal):
        result = {"name": "site-m", "model": "v1 abc", "target": 0.98, "heldout": {"n": 10, "accuracy": 0.5},
                  "calibration": {"temperature": 1.5, "fitted_on": "site calibration part", **cal}}
        return format_step("calibrate", result).splitlines()[0]

    strict = {"glioma": 0.91, "meningioma": 0.91, "pituitary": 0.91, "notumor": 0.995}
    assert "refer bar 0.9100, no tumour 0.9950 for" in line({"refer_thresholds": strict})
    assert "refer bar 0.9100 for" in line({"refer_thresholds": dict.fromkeys(strict, 0.91)})
    tta = {"tta_default": True, "temperature_tta": 1.2, "refer_thresholds": strict,
           "refer_thresholds_tta": dict.fromkeys(strict, 0.8)}
    assert "flip TTA, temperature 1.200, refer bar 0.8000 for" in line(tta)
    assert "refer bar none reached: every answer referred" in line({"refer_thresholds": dict.fromkeys(strict, 1.5)})
    assert "refer bar 0.9700 for" in line({"refer_threshold": 0.97})
