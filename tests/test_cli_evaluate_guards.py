"""evaluate's flags are checked before the work: a --train-data that is not a folder is refused (it was ignored and
the report said "pass --train-data"), and --record on a folder that would get no external block stops before any
image is predicted (it evaluated everything, then refused)."""

from __future__ import annotations

import shutil

import pytest

import brainclf.evaluation.evaluate as evaluate
from brainclf.cli import main


@pytest.fixture
def hospital(synthetic_dataset, tmp_path):
    """A folder of all four classes, no manifest.csv, that the smoke model never trained on."""
    shutil.copytree(synthetic_dataset / "Testing", tmp_path / "hospital")
    return tmp_path / "hospital"


def test_a_train_data_that_is_not_a_folder_is_refused(smoke_model, hospital, tmp_path, capsys):
    rc = main(["evaluate", "--model", str(smoke_model), "--data", str(hospital), "--train-data",
               str(tmp_path / "nonexistent")])
    err = capsys.readouterr().err
    assert rc == 2 and f"error: --train-data {tmp_path / 'nonexistent'} is not a folder" in err


def test_record_without_the_external_block_stops_before_any_image_is_predicted(smoke_model, hospital, capsys,
                                                                               monkeypatch):
    def predicted(*args, **kwargs):
        raise AssertionError("an image was predicted")

    monkeypatch.setattr(evaluate, "predict_samples_and_features", predicted)
    rc = main(["evaluate", "--model", str(smoke_model), "--data", str(hospital), "--record"])
    err = capsys.readouterr().err
    assert rc == 2 and "pass --external (nothing was evaluated)" in err and "Traceback" not in err


def test_a_train_data_folder_without_the_training_images_is_named_in_the_note(smoke_predictor, hospital, tmp_path):
    (tmp_path / "other").mkdir()
    report = evaluate.evaluate_folder(smoke_predictor, hospital, training_root=tmp_path / "other")
    assert report["clean"] is None and f"not found in {tmp_path / 'other'}" in report["clean_note"]
