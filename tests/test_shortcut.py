"""The style-only baseline: it must find a style shortcut where there is one, and not where there is none."""

from __future__ import annotations

import numpy as np
from conftest import synthetic_image

from brainclf.evaluation import FEATURE_NAMES, run_study, style_features


def write(root, style_by_class: dict, n: int, seed: int):
    rng = np.random.default_rng(seed)
    for split in ("Training", "Testing"):
        for cls, (size, gain) in style_by_class.items():
            (root / split / cls).mkdir(parents=True, exist_ok=True)
            for i in range(n if split == "Training" else n // 3):
                img = synthetic_image("notumor", rng, size=size)  # same anatomy in every class
                img = img.point(lambda v, g=gain: min(255, int(v * g)))
                img.save(root / split / cls / f"{cls}_{i}.png")


def test_features_have_one_value_per_name(tmp_path):
    synthetic_image("glioma", np.random.default_rng(0)).save(tmp_path / "a.png")
    assert style_features(tmp_path / "a.png").shape == (len(FEATURE_NAMES),)


def test_style_predicts_the_class_when_each_class_has_its_own_style(tmp_path):
    styles = {"glioma": (48, 1.0), "meningioma": (64, 1.0), "notumor": (64, 2.0), "pituitary": (80, 0.6)}
    write(tmp_path / "confounded", styles, n=15, seed=0)
    other = {c: (64, 1.0) for c in ("glioma", "meningioma", "notumor")}
    write(tmp_path / "external", other, n=9, seed=1)
    study = run_study(tmp_path / "confounded", [tmp_path / "external" / "Training"])
    assert study["cv"]["accuracy"] > 0.9 and study["testing"]["accuracy"] > 0.9
    ext = study["external"]["Training"]
    assert ext["n"] == 27 and ext["accuracy"] < 0.7


def test_no_shortcut_when_style_is_shared(tmp_path):
    styles = {c: (64, 1.0) for c in ("glioma", "meningioma", "notumor", "pituitary")}
    write(tmp_path / "fair", styles, n=15, seed=2)
    study = run_study(tmp_path / "fair")
    assert study["cv"]["accuracy"] < 0.5  # chance is 25 %: style carries no class here


def test_an_unreadable_training_file_keeps_every_image_in_its_own_duplicate_group(tmp_path, monkeypatch):
    import shutil

    import pytest

    from brainclf.errors import DataError
    from brainclf.evaluation import shortcut

    styles = {c: (64, 1.0) for c in ("glioma", "meningioma", "notumor", "pituitary")}
    write(tmp_path / "ds", styles, n=15, seed=3)
    glioma = tmp_path / "ds" / "Training" / "glioma"
    (glioma / "0_corrupt.png").write_bytes(b"not an image")  # listed first: it shifted every later group by one
    shutil.copy(glioma / "glioma_3.png", glioma / "glioma_3_copy.png")
    seen = {}

    def record(estimator, x, y, groups, cv):
        seen["groups"], seen["y"] = groups, y
        return np.zeros(len(y), int)

    monkeypatch.setattr("sklearn.model_selection.cross_val_predict", record)
    shortcut.run_study(tmp_path / "ds")
    train = shortcut.discover(tmp_path / "ds").split(shortcut.TRAIN_SPLIT_NAMES)
    readable = [s for s in train if s.path.name != "0_corrupt.png"]
    index = {s.path.name: k for k, s in enumerate(readable)}
    assert len(seen["groups"]) == len(seen["y"]) == len(readable)
    assert seen["groups"][index["glioma_3.png"]] == seen["groups"][index["glioma_3_copy.png"]]
    with pytest.raises(DataError, match="no Training split"):
        shortcut.run_study(tmp_path / "ds" / "Testing")


def test_too_few_images_of_a_class_in_training_is_refused_saying_how_many(tmp_path):
    import pytest

    from brainclf.errors import DataError

    write(tmp_path / "few", {"glioma": (48, 1.0), "meningioma": (64, 1.0)}, n=4, seed=0)  # sklearn's n_splits traceback
    with pytest.raises(DataError, match="each with at least 5 different readable images .*glioma 4, meningioma 4"):
        run_study(tmp_path / "few")
    write(tmp_path / "five", {"glioma": (48, 1.0), "meningioma": (64, 1.0)}, n=5, seed=0)
    assert run_study(tmp_path / "five")["cv"]["n"] == 10  # five of each: enough
