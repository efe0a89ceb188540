"""`evaluate` on awkward folders: clear messages instead of tracebacks. No readable image is a DataError; a clean
subset left empty says so; a training image listed in the card but gone from disk does not stop the evaluation."""

import shutil

import pytest

from brainclf.cli import main
from brainclf.cli.evaluation import format_report
from brainclf.errors import DataError
from brainclf.evaluation.evaluate import evaluate_folder


def test_a_folder_of_unreadable_files_is_refused_in_words(smoke_predictor, tmp_path, capsys):
    for cls in ("glioma", "notumor"):
        (tmp_path / "bad" / cls).mkdir(parents=True)
        (tmp_path / "bad" / cls / "x.jpg").write_text("not an image")
    with pytest.raises(DataError, match="None of the 2 images of bad could be read"):
        evaluate_folder(smoke_predictor, tmp_path / "bad")


def test_an_empty_clean_subset_is_said_not_crashed(smoke_predictor, synthetic_dataset, tmp_path):
    # The model's own training images, evaluated as a folder: every one has a twin in training.
    card_files = [f for f in smoke_predictor.card.training["files"]["train"] if "::" not in f][:4]
    for rel in card_files:
        dest = tmp_path / "dup" / rel.split("/")[-2] / rel.split("/")[-1]
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(synthetic_dataset / rel, dest)
    report = evaluate_folder(smoke_predictor, tmp_path / "dup", training_root=synthetic_dataset)
    assert report["clean"]["n"] == 0
    assert "clean subset: n=0 (every image has an exact or near duplicate" in format_report(report)


def test_a_training_image_gone_from_disk_leaves_the_clean_subset_computed(smoke_model, synthetic_dataset, tmp_path,
                                                                           capsys):
    data = tmp_path / "kaggle"
    shutil.copytree(synthetic_dataset, data)
    from brainclf.model import read_card

    gone = [f for f in read_card(smoke_model).training["files"]["train"] if "::" not in f][1]
    (data / gone).unlink()
    assert main(["evaluate", "--model", str(smoke_model), "--data", str(data / "Testing"),
                 "--train-data", str(data)]) == 0
    assert "clean subset (no near-duplicate in training): n=" in capsys.readouterr().out


def test_fewer_than_five_case_groups_get_no_interval_rather_than_a_zero_width_one():
    import numpy as np

    from brainclf.evaluation.external import MIN_INTERVAL_GROUPS, cluster_bootstrap

    y = np.array([0] * 6 + [2] * 6)
    pred = np.array([0] * 4 + [2] * 2 + [2] * 6)
    caught = np.zeros(12, bool)
    one = cluster_bootstrap(y, pred, caught, np.zeros(12, int))
    assert one["accuracy"] is None and one["groups"] == 1 and "fewer than the 5" in one["method"]
    many = cluster_bootstrap(y, pred, caught, np.arange(12))
    assert many["groups"] == 12 >= MIN_INTERVAL_GROUPS and many["accuracy"][0] < 0.8333 < many["accuracy"][1]
