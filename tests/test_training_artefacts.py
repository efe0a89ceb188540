"""The artefacts of a training run keep their shape: the smoke run's card and state.json hold exactly the keys
recorded from brainclf/train.py before it was split into brainclf.training (issue #15). A key added or lost
in a card section, or in state.json (which old runs resume from), fails here."""

from __future__ import annotations

import json

# Recorded from the smoke run (tests/conftest.py's smoke_run) of the code before the split.
CARD_KEYS = (
    "architecture calibration class_names created description display_names external_predictions extra faithfulness "
    "file_sha256 gradcam_layer input_contract libraries machine metrics name ood params provenance schema_version "
    "test_predictions test_predictions_tta training version"
).split()
SECTION_KEYS = {
    "input_contract": "channels crop intensity padding resample size".split(),
    "display_names": "glioma meningioma notumor pituitary".split(),
    "libraries": "brainclf keras numpy python scikit-learn tensorflow".split(),
    "training": (
        "backend best_epoch config distribution epochs_run files fingerprint finished history sizes sources started "
        "stopped_early stopped_reason train_seconds"
    ).split(),
    "metrics": "test test_tta val".split(),
    "calibration": (
        "fitted_on operating operating_tta refer_confidence refer_target_accuracy refer_threshold refer_threshold_tta "
        "refer_thresholds refer_thresholds_tta "
        "temperature temperature_tta tta_default val_accuracy val_accuracy_tta val_ece_after val_ece_after_tta "
        "val_ece_before val_ece_before_tta val_nll val_nll_tta"
    ).split(),
    "ood": ("colour_threshold features fitted_on layers means measured precision quantile threshold "
            "threshold_from").split(),
    "faithfulness": "deletion randomisation".split(),
    "external_predictions": [],
    "extra": [],
    "provenance": [],
}
NESTED_KEYS = {
    "training.config": (
        "architecture augment augment_contrast augment_intensity batch_size channels crop early_stopping_patience "
        "epochs extra_sources "
        "extra_test_fraction extra_train_fraction extra_val_fold extra_val_fraction image_size intensity "
        "label_smoothing learning_rate "
        "max_train_images mixup optimizer precision refit seed split_seed style_reweight val_fraction warmup_fraction "
        "weight_decay"
    ).split(),
    "training.fingerprint": "counts file_list_sha256 root_name".split(),
    "training.history": "accuracy loss lr val_accuracy val_loss val_loss_calibrated".split(),
    "training.sizes": "test train val".split(),
    "training.distribution": "replicas strategy workers".split(),
    "training.files": "train val".split(),
    "metrics.val": (
        "accuracy bootstrap confusion_matrix ece ece_uncalibrated loss macro_auc model n per_class refer "
        "temperature tta unreadable"
    ).split(),
    "metrics.test": (
        "accuracy bootstrap clean confusion_matrix ece ece_uncalibrated loss macro_auc misclassified model n "
        "per_class refer temperature tta unreadable"
    ).split(),
    "metrics.test_tta": (
        "accuracy bootstrap clean confusion_matrix ece ece_uncalibrated loss macro_auc misclassified model n "
        "per_class refer temperature tta unreadable"
    ).split(),
    "calibration.operating": "curves worst_notumor_miss".split(),
    "calibration.operating_tta": "curves worst_notumor_miss".split(),
    "calibration.refer_thresholds": "glioma meningioma notumor pituitary".split(),
    "calibration.refer_thresholds_tta": "glioma meningioma notumor pituitary".split(),
    "ood.measured": "non_mri_flagged non_mri_missed non_mri_n test_flagged test_n".split(),
    "faithfulness.deletion": ("fractions gradcam_auc gradcam_curve n random_auc random_curve "
                              "share_gradcam_lower").split(),
    "faithfulness.randomisation": "max_spearman mean_spearman n".split(),
}
STATE_KEYS = (
    "best_epoch best_val_loss config content_sha256 contract distribution epoch external_test_files fingerprint "
    "history patience published sources started stopped_early test_files train_files train_seconds val_files"
).split()


def structure(card: dict) -> tuple[list, dict, dict]:
    sections = {k: sorted(v) for k, v in card.items() if isinstance(v, dict)}
    nested = {f"{k}.{k2}": sorted(v2) for k, v in card.items() if isinstance(v, dict)
              for k2, v2 in v.items() if isinstance(v2, dict)}
    return sorted(card), sections, nested


def test_card_has_the_recorded_structure(smoke_run):
    model_path, _, _ = smoke_run
    keys, sections, nested = structure(json.loads(model_path.with_suffix(".json").read_text()))
    assert keys == CARD_KEYS
    assert sections == SECTION_KEYS
    assert nested == NESTED_KEYS


def test_state_json_has_the_recorded_keys(smoke_run):
    _, run_dir, _ = smoke_run
    assert sorted(json.loads((run_dir / "state.json").read_text())) == STATE_KEYS


def test_test_files_gone_from_the_folder_are_counted_on_the_card(tmp_path):
    """They were dropped from the test figures without a word: a card's n then disagreed with its split."""
    from conftest import write_dataset

    from brainclf.model import read_card
    from brainclf.training import TrainConfig, TrainRequest, train

    data = write_dataset(tmp_path / "brain-mri")
    config = TrainConfig(architecture="seed", image_size=32, epochs=1, batch_size=8)
    request = TrainRequest(config, data=data, name="gone", models_dir=tmp_path / "models", run_dir=tmp_path / "run")
    train(TrainRequest(**{**request.__dict__, "finalize": False}))
    testing = sorted((data / "Testing").rglob("*.png"))
    testing[0].unlink()
    card = read_card(train(request))  # resumes the finished run: straight to finalising
    assert card.metrics["test"]["missing_files"] == card.metrics["test_tta"]["missing_files"] == 1
    assert card.metrics["test"]["n"] == len(testing) - 1
