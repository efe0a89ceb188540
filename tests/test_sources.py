"""Multi-source training: source names and weights, file-name series, case groups and grouped splits."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import synthetic_image

from brainclf.data import (
    Sample,
    discover,
    extra_val_folds,
    is_non_commercial,
    licence_of,
    parse_extra_data,
    sample_key,
    series_key,
    split_extra_source,
    split_key,
)
from brainclf.data.sources import case_grouping
from brainclf.errors import ConfigError, DataError
from brainclf.training import TrainConfig


def write_external(root: Path, classes=("glioma", "meningioma", "notumor"), cases: int = 8, slices: int = 3,
                   seed: int = 1, manifest: bool = True) -> Path:
    """A partial-class external folder: `cases` cases per class, each `slices` numbered slices (a file-name
    series), sequences T1/T2 alternating, with manifest.csv."""
    rng = np.random.default_rng(seed)
    lines = ["file,class,subtype,sequence"]
    for cls in classes:
        (root / cls).mkdir(parents=True, exist_ok=True)
        for case in range(cases):
            seq = ("T1", "T2")[case % 2]
            for k in range(slices):
                rel = f"{cls}/{cls.title()}_{seq}__case{chr(97 + case)}_{k}_.png"
                synthetic_image(cls, rng).save(root / rel)
                lines.append(f"{rel},{cls},{cls.title()},{seq}")
    if manifest:
        (root / "manifest.csv").write_text("\n".join(lines) + "\n")
    return root


def test_parse_extra_data_reads_weight_and_names_the_source(tmp_path):
    folder = tmp_path / "other-source"
    folder.mkdir()
    src = parse_extra_data(f"{folder}:2.5")
    assert (src.name, src.root, src.weight) == ("other-source", folder, 2.5)
    assert parse_extra_data(str(folder)).weight == 1.0
    with pytest.raises(ConfigError, match="weight"):
        parse_extra_data(f"{folder}:0")
    with pytest.raises(ConfigError, match="cannot name a data source"):
        parse_extra_data(str(tmp_path / "bad name!"))
    with pytest.raises(ConfigError, match="--extra-data weight must be a number, got 'abc'"):
        parse_extra_data(f"{folder}:abc")  # was called a bad folder name


def test_sample_keys_round_trip():
    assert sample_key("", "Training/glioma/a.jpg") == "Training/glioma/a.jpg"
    assert split_key(sample_key("ext", "glioma/a.jpg")) == ("ext", "glioma/a.jpg")
    assert split_key("Training/glioma/a.jpg") == ("", "Training/glioma/a.jpg")


@pytest.mark.parametrize("a, b, same", [
    ("Astrocitoma_T1C+__astro_infraT__13_.jpg", "Astrocitoma_T2__astro_infraT__14_.jpg", True),
    ("Meningioma_T1__2022-05-28_10_58_17-Meningioma___Radiology_Case.jpg",
     "Meningioma_T1C+__2022-05-28_11_02_40-Meningioma___Radiology_Case.jpg", True),
    ("Meningioma_T1__2022-05-28_10_58_17-Meningioma.jpg", "Meningioma_T1__2022-05-29_10_58_17-Meningioma.jpg",
     False),
    ("Glioblastoma_T1C+__IMG-0009-00014_big_gallery.jpeg", "Glioblastoma_T1C+__IMG-0009-00015_big_gallery.jpeg",
     True),
])
def test_series_key_links_slices_of_one_case(a, b, same):
    assert (series_key(a) == series_key(b)) is same
    assert series_key(a) is not None


def test_names_ending_in_a_hash_or_without_digits_form_no_series():
    assert series_key("Astrocitoma_T1__02df132a56dfb89ece42ee8d195a16_big_gallery.jpeg") is None
    assert series_key("NORMAL_T2__ff.jpg") is None


def test_case_groups_join_series_and_near_duplicates_but_not_naming_schemes():
    paths = [Path(f"case_a_{i}.png") for i in range(3)] + [Path("x1.png"), Path("y1.png")]
    dup = np.array([0, 1, 2, 3, 3])  # x1 and y1 are near duplicates of each other
    g = case_grouping(paths, dup).groups
    assert g[0] == g[1] == g[2] and g[3] == g[4] and g[0] != g[3]
    # A "series" holding every file of a large source is a naming scheme (Tr-gl_0001 ...), not one case.
    many = [Path(f"Tr-gl_{i:04d}.jpg") for i in range(120)]
    assert len(set(case_grouping(many, np.arange(120)).groups.tolist())) == 120


def test_extra_source_split_keeps_cases_whole_and_covers_every_class(tmp_path):
    root = write_external(tmp_path / "ext", cases=10)
    samples = discover(root, source="ext").all_samples()
    assert {s.source for s in samples} == {"ext"} and {s.label for s in samples} == {0, 1, 2}  # no pituitary
    sp = split_extra_source(samples, 0.15, 0.3, seed=0)
    parts = {"train": sp.train, "val": sp.val, "test": sp.test}
    assert sum(len(v) for v in parts.values()) == len(samples)
    case_of = {}
    for name, part in parts.items():
        assert part, name
        for s in part:
            case = s.path.parent.name + s.path.name.split("__")[1].split("_")[0]
            assert case_of.setdefault(case, name) == name, f"{case} straddles {case_of[case]} and {name}"


def test_a_training_fraction_keeps_whole_cases_and_leaves_validation_and_test_alone(tmp_path):
    samples = discover(write_external(tmp_path / "ext", cases=12), source="ext").all_samples()
    full = split_extra_source(samples, 0.15, 0.3, seed=0)
    half = split_extra_source(samples, 0.15, 0.3, seed=0, train_fraction=0.5)
    assert half.val == full.val and half.test == full.test
    assert set(half.train) < set(full.train) and 0.3 < len(half.train) / len(full.train) < 0.7
    quarter = split_extra_source(samples, 0.15, 0.3, seed=0, train_fraction=0.25)
    three_quarters = split_extra_source(samples, 0.15, 0.3, seed=0, train_fraction=0.75)
    assert 0.1 < len(quarter.train) / len(full.train) < 0.4 < 0.6 < len(three_quarters.train) / len(full.train) < 0.9
    assert quarter.test == full.test and set(quarter.train) < set(full.train)

    def case(s):
        return s.path.parent.name + s.path.name.split("__")[1].split("_")[0]
    kept = {case(s) for s in half.train}
    assert all(s in half.train for s in full.train if case(s) in kept)  # a case is kept or dropped whole
    with pytest.raises(ConfigError, match="training fraction"):
        TrainConfig(extra_train_fraction=0).validate()


def test_validation_folds_partition_the_development_cases_and_keep_the_test_part(tmp_path):
    samples = discover(write_external(tmp_path / "ext", cases=20), source="ext").all_samples()
    folds = extra_val_folds(0.15, 0.3)
    assert folds == 5
    usual = split_extra_source(samples, 0.15, 0.3, seed=0)
    splits = [split_extra_source(samples, 0.15, 0.3, seed=0, val_fold=k) for k in range(folds)]
    assert splits[0] == usual  # fold 0 is the split every earlier run made
    development = set(usual.train) | set(usual.val)
    for sp in splits:
        assert sp.test == usual.test and set(sp.train) | set(sp.val) == development
        assert not set(sp.train) & set(sp.val)
    vals = [set(sp.val) for sp in splits]
    assert set().union(*vals) == development and sum(map(len, vals)) == len(development)  # each once

    def case(s):
        return s.path.parent.name + s.path.name.split("__")[1].split("_")[0]
    for sp in splits:
        assert not {case(s) for s in sp.train} & {case(s) for s in sp.val}
    with pytest.raises(DataError, match="Fold 5 does not exist"):
        split_extra_source(samples, 0.15, 0.3, seed=0, val_fold=5)
    with pytest.raises(ConfigError, match="validation fold must be 0 to 4"):
        TrainConfig(extra_val_fold=5).validate()


def test_licences_flag_non_commercial_sources(tmp_path):
    assert is_non_commercial(licence_of(Path("/nowhere/external-radiopaedia")))
    assert not is_non_commercial(licence_of(Path("/nowhere/brain-tumor-mri")))
    own = tmp_path / "mine"
    own.mkdir()
    (own / "LICENSE").write_text("CC BY 4.0")
    assert licence_of(own) == "CC BY 4.0"
    assert licence_of(tmp_path).startswith("unknown")


@pytest.fixture(scope="module")
def multi_run(tmp_path_factory, synthetic_dataset):
    from brainclf.data import Source
    from brainclf.training import TrainConfig, TrainRequest, train

    base = tmp_path_factory.mktemp("multi")
    ext = write_external(base / "ext-src", cases=8)
    config = TrainConfig(architecture="seed", image_size=32, epochs=1, batch_size=8, augment_intensity=True,
                         augment_contrast=True, extra_sources=[{"name": "ext-src", "weight": 2.0}])
    out = train(TrainRequest(config, synthetic_dataset, "multi", models_dir=base / "models", run_dir=base / "run",
                extra_data=[Source("ext-src", ext, 2.0)]))
    return Path(out), base / "run", ext


def test_multi_source_run_puts_every_source_in_validation_and_holds_out_external_cases(multi_run):
    out, run_dir, ext = multi_run
    state = json.loads((run_dir / "state.json").read_text())
    sources_in = {part: {split_key(k)[0] for k in state[f"{part}_files"]} for part in ("train", "val")}
    assert sources_in["train"] == sources_in["val"] == {"", "ext-src"}
    held = state["external_test_files"]["ext-src"]
    assert held and not set(held) & set(state["train_files"] + state["val_files"])
    cases = {part: {split_key(k)[1].split("__")[1].split("_")[0] + split_key(k)[1].split("/")[0]
                    for k in keys if split_key(k)[0] == "ext-src"}
             for part, keys in (("train", state["train_files"]), ("val", state["val_files"]), ("test", held))}
    assert all(cases.values())
    assert not cases["train"] & cases["test"] and not cases["val"] & cases["test"]
    assert not cases["train"] & cases["val"]
    assert "val_loss[ext-src]" in state["history"] and "val_loss[primary]" in state["history"]


def test_multi_source_card_records_sources_licences_and_external_validation(multi_run):
    from brainclf.model import read_card

    out, run_dir, ext = multi_run
    card = read_card(out)
    names = [s["name"] for s in card.training["sources"]]
    assert names[1] == "ext-src" and card.training["sources"][0]["primary"]
    assert card.training["sources"][1]["weight"] == 2.0
    assert card.training["config"]["augment_contrast"] is True  # the recipe's augmentation is on the card
    assert card.training["sources"][1]["fingerprint"]["counts"]["test"]["pituitary"] == 0
    report = card.metrics["external"]["ext-src"]
    rows = card.external_predictions["ext-src"]
    state = json.loads((run_dir / "state.json").read_text())
    assert report["n"] == len(rows) == len(state["external_test_files"]["ext-src"])
    assert "not trained or validated on" in report["membership"]
    assert report["case_grouping_bits"] == 25  # split by whole cases: no "upper estimate" on Home
    from brainclf.presentation import grouping_caveat

    assert grouping_caveat(card) == ""
    old = {k: v for k, v in report.items() if k != "case_grouping_bits"}  # a card split before 2026-12-06
    assert grouping_caveat(type(card).from_dict({**card.to_dict(),
                                                 "metrics": {**card.metrics, "external": {"ext-src": old}}}))
    assert set(report["by_sequence"]) == {"T1", "T2"}
    assert set(card.calibration["refer_thresholds"]) == {"glioma", "meningioma", "notumor", "pituitary"}
    # The card round-trips through JSON with its sources and external rows.
    again = type(card).from_dict(card.to_dict())
    assert again.training["sources"] == card.training["sources"]
    assert again.external_predictions == card.external_predictions


def test_resume_with_other_extra_sources_is_refused(multi_run, synthetic_dataset):
    from brainclf.data import Source
    from brainclf.training import TrainConfig, TrainRequest, train

    out, run_dir, ext = multi_run
    config = TrainConfig(architecture="seed", image_size=32, epochs=1, batch_size=8, augment_intensity=True,
                         extra_sources=[{"name": "ext-src", "weight": 1.0}])
    with pytest.raises(ConfigError, match="different config"):
        train(TrainRequest(config, synthetic_dataset, "multi", models_dir=out.parent, run_dir=run_dir,
              extra_data=[Source("ext-src", ext, 1.0)]))
    with pytest.raises(ConfigError, match="do not match"):
        train(TrainRequest(config, synthetic_dataset, "multi", models_dir=out.parent, run_dir=run_dir, extra_data=[]))


def test_sample_has_a_source_tag_by_default_empty():
    assert Sample(Path("a.png"), 0).source == ""


def test_a_refit_trains_on_the_held_out_cases_and_keeps_the_same_validation(tmp_path, synthetic_dataset):
    """The model that ships (--refit) learns from every case of the extra source but its validation part,
    which stays exactly the split run's (early stopping, calibration and the refer rule are fitted there)."""
    from brainclf.data import Source
    from brainclf.training.prepare import Preparation, new_run

    ext = write_external(tmp_path / "ext-src", cases=8)
    sources = [Source("ext-src", ext, 2.0)]
    base = TrainConfig(architecture="seed", image_size=32, extra_sources=[{"name": "ext-src", "weight": 2.0}])
    split, _ = new_run(base, synthetic_dataset, sources, Preparation(None))
    refit, _ = new_run(TrainConfig(**{**base.to_dict(), "refit": True}), synthetic_dataset, sources,
                       Preparation(None))
    held = split.external_test_files["ext-src"]
    assert held and refit.external_test_files["ext-src"] == []
    assert refit.val_files == split.val_files and refit.test_files == split.test_files
    assert sorted(refit.train_files) == sorted(split.train_files + held)
    counts = refit.sources[1]["fingerprint"]["counts"]
    assert sum(counts["test"].values()) == 0
    assert sum(counts["train"].values()) == len(held) + sum(1 for k in split.train_files if k.startswith("ext-src"))


def test_neighbouring_slices_of_one_case_share_a_case_group(tmp_path):
    """Two slices of one case a slice apart differ by more than a re-encoding (dedup's 12 bits) but by at most
    SAME_CASE_THRESHOLD: hash-named files (no file-name series) must still stay on one side of a split."""
    import numpy as np
    from PIL import Image

    from brainclf.data.dedup import hamming_matrix, hash_files
    from brainclf.data.sources import SAME_CASE_THRESHOLD, file_case_groups

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:128, :128]
    base = 120 + 80 * np.sin(xx / 9.0) * np.cos(yy / 13.0) + rng.normal(0, 4, (128, 128))
    Image.fromarray(np.clip(base, 0, 255).astype(np.uint8)).save(tmp_path / "3f9a0c1d2e4b5a6c7d8e9f0a1b2c3d4e.png")
    for k, shift in enumerate(np.linspace(0.2, 6, 30)):  # the "next slice": the pattern moved a little
        moved = 120 + 80 * np.sin((xx + shift) / 9.0) * np.cos((yy - shift / 2) / 13.0) + rng.normal(0, 4, (128, 128))
        path = tmp_path / f"b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e{k:02d}.png"
        Image.fromarray(np.clip(moved, 0, 255).astype(np.uint8)).save(path)
        pair = [tmp_path / "3f9a0c1d2e4b5a6c7d8e9f0a1b2c3d4e.png", path]
        h = hash_files(pair)
        bits = int(hamming_matrix(h.dhash[:1], h.dhash[1:])[0, 0])
        path.unlink()
        if 12 < bits <= SAME_CASE_THRESHOLD:
            Image.fromarray(np.clip(moved, 0, 255).astype(np.uint8)).save(path)
            break
    else:
        raise AssertionError("no neighbouring slice between 12 and SAME_CASE_THRESHOLD bits was made")
    groups, re_encodings_only = file_case_groups(pair), file_case_groups(pair, threshold=12)
    assert groups[0] == groups[1] and re_encodings_only[0] != re_encodings_only[1]


def test_the_clean_subset_leaves_out_near_twins_of_every_sources_training_images(multi_run):
    """An extra source may hold copies of the primary's test images (web sources share Br35H and SARTAJ slices):
    the clean subset compared the test images with the primary source's training images only."""
    from brainclf.model import read_card

    card = read_card(multi_run[0])
    files = card.training["files"]
    every = len(files["train"]) + len(files["val"])
    assert any("::" in f for f in files["train"])  # the extra source's training slices are among them
    assert card.metrics["test"]["clean"]["definition"].endswith(f"among {every} training images of every source")
