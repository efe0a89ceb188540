"""A class folder (or a folder under it) that cannot be listed stops discovery with its name: rglob skipped it
silently, so a class was evaluated or trained without its images."""

from __future__ import annotations

import os

import pytest
from conftest import write_dataset

from brainclf.data import datasets
from brainclf.errors import DataError


def test_an_unreadable_folder_under_a_class_is_named_not_skipped(tmp_path, monkeypatch):
    root = write_dataset(tmp_path / "ds")
    locked = root / "Training" / "glioma"
    real_walk = os.walk

    def walk(top, onerror=None, **kw):  # what os.walk reports for a folder without read permission (root reads all)
        if os.fspath(top) == os.fspath(locked):
            onerror(PermissionError(13, "Permission denied", os.fspath(locked)))
            return iter(())
        return real_walk(top, onerror=onerror, **kw)

    monkeypatch.setattr(datasets.os, "walk", walk)
    with pytest.raises(DataError, match=f"{locked} cannot be read \\(Permission denied\\)"):
        datasets.discover(root)


def test_readable_folders_are_listed_as_before(tmp_path):
    root = write_dataset(tmp_path / "ds")
    ds = datasets.discover(root)
    assert {s.path.parent.name for s in ds.splits["Training"]} == {"glioma", "meningioma", "notumor", "pituitary"}



def test_a_dataset_too_small_to_split_is_refused_in_words(tmp_path):
    """Under 10 images in every class, scikit-learn's splitter refused with a traceback."""
    from conftest import write_dataset as write

    root = write(tmp_path / "tiny", n_train=9, n_test=1)
    ds = datasets.discover(root)
    with pytest.raises(DataError, match="Too few images to split off 10 %: no class has 10 images \\(the most is 9\\)"):
        datasets.make_splits(ds, val_fraction=0.1)
