"""brainclf.data.datasets: dataset discovery, data root resolution, leakage-aware splits, fingerprint, loading."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from brainclf import CLASS_NAMES
from brainclf.data import (
    DATA_ENV,
    Dataset,
    discover,
    fingerprint,
    load_arrays,
    make_splits,
    resolve_data_root,
)
from brainclf.errors import DataError
from brainclf.input import InputContract


def test_discover_split_layout(synthetic_dataset):
    ds = discover(synthetic_dataset)
    assert set(ds.splits) == {"Training", "Testing"}
    assert not ds.pooled
    assert len(ds.splits["Training"]) == 48 and len(ds.splits["Testing"]) == 12
    for samples, per_class in ((ds.splits["Training"], 12), (ds.splits["Testing"], 3)):
        labels = [s.label for s in samples]
        assert [labels.count(i) for i in range(4)] == [per_class] * 4
        assert all(s.path.parent.name == s.class_name for s in samples)
    assert ds.split(("train", "Training")) is ds.splits["Training"]
    assert ds.split(("nope",)) is None
    assert len(ds.all_samples()) == 60


def test_discover_pooled_layout(synthetic_dataset):
    ds = discover(synthetic_dataset / "Testing")
    assert ds.pooled and list(ds.splits) == [""]
    assert len(ds.all_samples()) == 12
    assert sorted({s.class_name for s in ds.all_samples()}) == list(CLASS_NAMES)


def test_discover_ignores_other_files_and_folders(tmp_path, make_image):
    (tmp_path / "glioma" / "sub").mkdir(parents=True)
    (tmp_path / "unrelated").mkdir()
    make_image("glioma").save(tmp_path / "glioma" / "a.PNG")
    make_image("glioma", 1).save(tmp_path / "glioma" / "sub" / "b.jpg")
    (tmp_path / "glioma" / "notes.txt").write_text("x")
    make_image("glioma", 2).save(tmp_path / "unrelated" / "c.png")
    ds = discover(tmp_path)
    assert sorted(s.path.name for s in ds.all_samples()) == ["a.PNG", "b.jpg"]
    assert {s.label for s in ds.all_samples()} == {0}


def test_discover_missing_folder(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        discover(tmp_path / "missing")


def test_discover_file_instead_of_folder(tmp_path):
    f = tmp_path / "data.zip"
    f.write_bytes(b"PK")
    with pytest.raises(DataError, match="not a folder"):
        discover(f)


def test_discover_empty_folder(tmp_path):
    with pytest.raises(DataError, match="no class sub-folders"):
        discover(tmp_path)


def test_discover_folder_without_class_subfolders(tmp_path, make_image):
    (tmp_path / "cats").mkdir()
    make_image().save(tmp_path / "cats" / "x.png")
    make_image().save(tmp_path / "y.png")
    with pytest.raises(DataError, match="glioma, meningioma, notumor, pituitary"):
        discover(tmp_path)


def test_discover_class_folders_without_images(tmp_path):
    for c in CLASS_NAMES:
        (tmp_path / c).mkdir()
        (tmp_path / c / "readme.txt").write_text("no images here")
    with pytest.raises(DataError, match="No JPEG/PNG images"):
        discover(tmp_path)


def test_resolve_data_root(monkeypatch, tmp_path):
    monkeypatch.setenv(DATA_ENV, str(tmp_path / "from_env"))
    assert resolve_data_root(tmp_path / "arg") == tmp_path / "arg"
    assert resolve_data_root(None) == tmp_path / "from_env"
    monkeypatch.delenv(DATA_ENV)
    with pytest.raises(DataError, match=DATA_ENV):
        resolve_data_root(None)
    with pytest.raises(DataError, match="--data"):
        resolve_data_root("")


def make_dataset_with_duplicates(root: Path, make_image, pooled: bool) -> list[tuple[str, str]]:
    """Per class 10 originals; 3 of them get an exact copy and a re-encoded, slightly resized JPEG copy.
    Returns the (original, copy) file-name pairs."""
    base = root if pooled else root / "Training"
    pairs = []
    for ci, cls in enumerate(CLASS_NAMES):
        folder = base / cls
        folder.mkdir(parents=True)
        for i in range(10):
            img = make_image(cls, seed=100 * ci + i)
            name = f"{cls}_{i}.png"
            img.save(folder / name)
            if i < 3:
                shutil.copy(folder / name, folder / f"{cls}_{i}_copy.png")
                img.resize((60, 60), Image.Resampling.BILINEAR).save(folder / f"{cls}_{i}_small.jpg", quality=90)
                pairs += [(name, f"{cls}_{i}_copy.png"), (name, f"{cls}_{i}_small.jpg")]
    if not pooled:
        for ci, cls in enumerate(CLASS_NAMES):
            (root / "Testing" / cls).mkdir(parents=True)
            make_image(cls, seed=9000 + ci).save(root / "Testing" / cls / f"t_{cls}.png")
    return pairs


def split_of(splits) -> dict[str, str]:
    return {s.path.name: name for name in ("train", "val", "test") for s in getattr(splits, name)}


@pytest.mark.parametrize("seed", [0, 1, 2, 42])
def test_near_duplicates_never_straddle_train_and_val(tmp_path, make_image, seed):
    pairs = make_dataset_with_duplicates(tmp_path, make_image, pooled=False)
    splits = make_splits(discover(tmp_path), val_fraction=0.2, seed=seed)
    where = split_of(splits)
    assert {where[a] for a, _ in pairs} >= {"train"}
    for a, b in pairs:
        assert where[a] == where[b], (a, b)
    assert {s.path.name for s in splits.test} == {f"t_{c}.png" for c in CLASS_NAMES}


@pytest.mark.parametrize("seed", [0, 7])
def test_pooled_splits_keep_duplicate_groups_whole(tmp_path, make_image, seed):
    pairs = make_dataset_with_duplicates(tmp_path, make_image, pooled=True)
    ds = discover(tmp_path)
    splits = make_splits(ds, val_fraction=0.1, test_fraction=0.15, seed=seed)
    where = split_of(splits)
    for a, b in pairs:
        assert where[a] == where[b], (a, b)
    names = [s.path.name for s in splits.train + splits.val + splits.test]
    assert sorted(names) == sorted(s.path.name for s in ds.all_samples())  # a partition: nothing lost or doubled
    assert splits.test and splits.val


def test_split_sizes_are_stratified(synthetic_dataset):
    ds = discover(synthetic_dataset)
    splits = make_splits(ds, val_fraction=0.25, seed=3)
    assert splits.test == ds.splits["Testing"]
    assert len(splits.train) + len(splits.val) == 48
    assert 8 <= len(splits.val) <= 16  # ~25 % of 48
    for i in range(4):
        n_val = sum(s.label == i for s in splits.val)
        assert 1 <= n_val <= 5  # every class in validation, roughly a quarter of its 12
    assert not {s.path for s in splits.train} & {s.path for s in splits.val}


def test_make_splits_is_repeatable_for_a_seed(synthetic_dataset):
    ds = discover(synthetic_dataset)
    a, b = make_splits(ds, seed=5), make_splits(ds, seed=5)
    assert [s.path for s in a.val] == [s.path for s in b.val]


def test_make_splits_rejects_bad_val_fraction(synthetic_dataset):
    with pytest.raises(DataError, match="val_fraction"):
        make_splits(discover(synthetic_dataset), val_fraction=0.7)


def test_make_splits_needs_a_training_split(tmp_path, make_image):
    for c in CLASS_NAMES:
        (tmp_path / "Validation" / c).mkdir(parents=True)
        make_image(c).save(tmp_path / "Validation" / c / "x.png")
    with pytest.raises(DataError, match="no Training split"):
        make_splits(discover(tmp_path))


def test_fingerprint_stable_and_sensitive(tmp_path, make_image):
    for i, c in enumerate(CLASS_NAMES):
        (tmp_path / c).mkdir()
        for k in range(2):
            make_image(c, seed=10 * i + k).save(tmp_path / c / f"{k}.png")
    ds = discover(tmp_path)
    fp1 = fingerprint(tmp_path, ds.splits)
    fp2 = fingerprint(tmp_path, discover(tmp_path).splits)
    assert fp1 == fp2
    assert fp1["counts"][""] == dict.fromkeys(CLASS_NAMES, 2)
    assert fp1["root_name"] == tmp_path.name
    assert len(fp1["file_list_sha256"]) == 64
    make_image("notumor", seed=99).save(tmp_path / "notumor" / "extra.png")
    fp3 = fingerprint(tmp_path, discover(tmp_path).splits)
    assert fp3["file_list_sha256"] != fp1["file_list_sha256"]
    assert fp3["counts"][""]["notumor"] == 3


def test_load_arrays_skips_and_reports_unreadable_files(tmp_path, make_image):
    for c in CLASS_NAMES:
        (tmp_path / c).mkdir()
        make_image(c, seed=3).save(tmp_path / c / "ok.png")
    (tmp_path / "glioma" / "broken.png").write_bytes(b"not a png at all")
    (tmp_path / "pituitary" / "empty.jpg").write_bytes(b"")
    samples = discover(tmp_path).all_samples()
    assert len(samples) == 6
    calls = []
    contract = InputContract(size=32, channels=1)
    x, y, kept, errors = load_arrays(samples, contract, progress=lambda d, t: calls.append((d, t)), workers=2)
    assert x.shape == (4, 32, 32, 1) and x.dtype == np.float32
    assert sorted(y.tolist()) == [0, 1, 2, 3]
    assert [s.path.name for s in kept] == ["ok.png"] * 4
    assert len(errors) == 2
    assert any("broken.png" in e for e in errors) and any("empty.jpg" in e and "empty" in e for e in errors)
    assert calls[-1] == (6, 6) and len(calls) == 6


def test_load_arrays_all_unreadable_gives_empty_array(tmp_path):
    (tmp_path / "glioma").mkdir()
    (tmp_path / "glioma" / "bad.png").write_bytes(b"xx")
    x, y, kept, errors = load_arrays(discover(tmp_path).all_samples(), InputContract(32, 3))
    assert x.shape == (0, 32, 32, 3) and len(y) == 0 and kept == [] and len(errors) == 1


def test_dataset_pooled_flag():
    assert Dataset(Path("."), {"": []}).pooled
    assert not Dataset(Path("."), {"Training": [], "Testing": []}).pooled


def test_tiny_dataset_split_is_a_data_error(tmp_path, make_image):
    for split, n in (("Training", 2), ("Testing", 1)):
        for i, c in enumerate(CLASS_NAMES):
            (tmp_path / split / c).mkdir(parents=True)
            for k in range(n):
                make_image(c, seed=50 * i + k + (0 if split == "Training" else 1000)).save(
                    tmp_path / split / c / f"{k}.png")
    with pytest.raises(DataError):
        make_splits(discover(tmp_path))
