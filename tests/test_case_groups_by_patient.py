"""Case groups from what a path says of its patient: a patient sub-folder below the class folder, a leading
patient id in the file name; a naming scheme left unused is reported; other names group as before."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
from conftest import synthetic_image

import brainclf.data.sources as sources
from brainclf.data import discover, split_extra_source
from brainclf.errors import ConfigError

CLASSES = ("glioma", "meningioma", "notumor")


def write_patients(root: Path, name_of, patients: int = 14, slices: int = 4) -> Path:
    """`patients` patients per class, `slices` unalike slices each, at root/<class>/<name_of(pid, k)>."""
    rng = np.random.default_rng(3)
    for c, cls in enumerate(CLASSES):
        for i in range(patients):
            for k in range(1, slices + 1):
                path = root / cls / name_of(100 * c + i, k)
                path.parent.mkdir(parents=True, exist_ok=True)
                synthetic_image(cls, rng, size=32).save(path)
    return root


def patients_straddling(root: Path, patient_of) -> list[str]:
    """Patients with slices in more than one part of split_extra_source's split of the folder."""
    split = split_extra_source(discover(root, source="site").all_samples(), 0.15, 0.3, seed=0)
    parts = defaultdict(set)
    for part, samples in {"train": split.train, "val": split.val, "test": split.test}.items():
        for s in samples:
            parts[patient_of(s.path)].add(part)
    return [p for p, seen in parts.items() if len(seen) > 1]


def test_slices_in_a_patient_sub_folder_are_one_case_group(tmp_path):
    root = write_patients(tmp_path / "site", lambda pid, k: f"P{pid:03d}/slice{k}.png")
    paths = [s.path for s in discover(root).all_samples()]
    groups = sources.file_case_groups(paths)
    assert len(set(groups.tolist())) == 42  # one per patient: 'slice#' does not join the patients either
    assert patients_straddling(root, lambda p: p.parent.name) == []


def test_a_few_patient_folders_are_not_joined_by_their_slice_names():
    paths = [Path(f"glioma/P{pid}/slice{k}.png") for pid in range(3) for k in range(3)]
    groups = sources.case_grouping(paths, np.arange(len(paths))).groups
    assert groups.tolist() == [0, 0, 0, 3, 3, 3, 6, 6, 6]


def test_a_slice_directly_in_its_class_folder_has_no_patient_folder():
    paths = [Path("site/glioma/a1.png"), Path("site/glioma/b1.png")]
    assert sources.case_grouping(paths, np.arange(2)).groups.tolist() == [0, 1]


def test_slices_named_after_their_patient_are_one_case_group(tmp_path):
    root = write_patients(tmp_path / "site", lambda pid, k: f"P{pid:03d}_s{k}.png")
    groups = sources.file_case_groups([s.path for s in discover(root).all_samples()])
    assert len(set(groups.tolist())) == 42
    assert patients_straddling(root, lambda p: p.stem.split("_")[0]) == []


@pytest.mark.parametrize("a, b", [
    ("P012_s3.png", "p12_s4.png"),
    ("case-07_slice12.png", "case-07_slice13.png"),
    ("sub-003_T1_12.png", "sub-003_T2_7.png"),
    ("pat0042_T1C+_004.jpg", "pat0042-flair-5.jpg"),
    ("P012_T1_MPRAGE_s3.png", "P012_T2_TSE_s9.png"),
    ("Patient 12 slice 3.png", "patient 12 slice 4.png"),
    ("sub-01_ses-02_T1w_slice3.png", "sub-01_ses-01_acq-ax_T2w_slice10.png"),
])
def test_a_leading_patient_id_names_the_case(a, b):
    assert sources.series_key(a) == sources.series_key(b)
    assert "#" not in sources.series_key(a)
    assert sources.series_key("P012_s3.png") != sources.series_key("P137_s3.png")
    assert sources.series_key("Patient 12 slice 3.png") != sources.series_key("Patient 13 slice 3.png")


@pytest.mark.parametrize("name", ["P12_report_final.png", "patient 12 notes.png", "sub-01_ses-02_T1w_mask.png"])
def test_a_word_after_the_id_is_not_a_slice_of_that_case(name):
    from brainclf.data.case_names import case_id

    assert case_id(name) is None


# Made-up names of the shapes the Kaggle set (Tr-gl_0012.jpg) and the external Radiopaedia source use, and generic
# prefixes, with the keys they had before patient ids were read: the external source's published case groups rest
# on them, so they must not change.
UNCHANGED = {
    "Tr-gl_0012.jpg": "tr-gl_#", "Te-me_0001.jpg": "te-me_#", "Tr-no_0450.jpg": "tr-no_#",
    "image_12.png": "image_#", "image_12_3.png": "image_#_#", "glioma-aab-1.png": "glioma-aab-#",
    "Astrocitoma_T1__005_big_gallery.jpeg": "astrocitoma__#",
    "Astrocitoma_T1C+__IM0012_big_gallery.jpeg": "astrocitoma__im#",
    "Astrocitoma_T1__export--3_big_gallery.jpeg": "astrocitoma__export--#",
    "Astrocitoma_T1__astro_infraT__13_.jpg": "astrocitoma__astro_infrat__#_",
    "Glioblastoma_T1C+__IMG-0009-00014_big_gallery.jpeg": "glioblastoma__img-#-#",
    "Oligodendroglioma_T1C+__12._big_gallery.jpeg": "oligodendroglioma__#.",
    "Oligodendroglioma_T2__Anonymize.Seq3.Ser4.Img12_big_gallery.jpeg": "oligodendroglioma__anonymize.seq#.ser#.img#",
    "Meningioma_T1__12._big_gallery__2_.jpeg": "meningioma__#._big_gallery__#_",
    "Meningioma_T1__2022-05-28_10_58_17-Meningioma___Radiology_Case___Radiopaedia.org_-_Opera.jpg":
        "meningioma__2022-05-28-meningioma___radiology_case___radiopaedia.org_-_opera",
    "Astrocitoma_T2__02df132a56dfb89ece42ee8d195a16_big_gallery.jpeg": None,
}


@pytest.mark.parametrize("name", sorted(UNCHANGED))
def test_names_without_a_patient_id_keep_their_series_key(name):
    assert sources.series_key(name) == UNCHANGED[name]


def test_an_external_like_flat_folder_groups_as_before():
    """Flat class folders as external-radiopaedia's manifest.csv lists them (class/<name>): the old groups."""
    names = ["glioma/Astrocitoma_T1__005_big_gallery.jpeg", "glioma/Astrocitoma_T2__006_big_gallery.jpeg",
             "glioma/Astrocitoma_T1__astro_infraT__13_.jpg", "glioma/Astrocitoma_T2__astro_infraT__14_.jpg",
             "glioma/Astrocitoma_T1__02df132a56dfb89ece42ee8d195a16_big_gallery.jpeg",
             "meningioma/Meningioma_T1__2022-05-28_10_58_17-Meningioma.jpg",
             "meningioma/Meningioma_T1C+__2022-05-28_11_02_40-Meningioma.jpg", "notumor/Tr-no_0001.jpg",
             "notumor/Te-no_0002.jpg", "notumor/Tr-no_0003.jpg"]
    groups = sources.case_grouping([Path(n) for n in names], np.arange(len(names))).groups
    assert groups.tolist() == [0, 0, 2, 2, 4, 5, 5, 7, 8, 7]


def test_kaggle_names_stay_apart_when_their_pattern_is_a_naming_scheme():
    paths = [Path(f"glioma/Tr-gl_{i:04d}.jpg") for i in range(120)] + [Path("meningioma/Te-me_0001.jpg")]
    assert len(set(sources.case_grouping(paths, np.arange(len(paths))).groups.tolist())) == 121


def test_a_pattern_too_common_to_be_one_case_is_reported_not_silently_dropped():
    paths = [Path(f"glioma/{i:03d}_{k}.png") for i in range(40) for k in range(3)]  # ids without letters
    grouping = sources.case_grouping(paths, np.arange(len(paths)))
    assert len(set(grouping.groups.tolist())) == 120
    assert len(grouping.warnings) == 1
    assert "'#_#'" in grouping.warnings[0] and "120 of 120" in grouping.warnings[0]
    assert "glioma/P012/" in grouping.warnings[0]  # says how to name patients so they group
    named = [Path(f"glioma/P{i:03d}_s{k}.png") for i in range(40) for k in range(3)]
    assert sources.case_grouping(named, np.arange(len(named))).warnings == ()


def test_a_source_name_may_not_end_in_a_newline(tmp_path):
    assert sources.source_at(tmp_path / "clinic").name == "clinic"
    with pytest.raises(ConfigError, match="cannot name a data source"):
        sources.source_at(tmp_path / "clinic\n")


def test_a_site_split_keeps_the_naming_scheme_warning_and_the_cli_prints_it(tmp_path, capsys):
    from brainclf.site.split import saved_split, split_site

    root = write_patients(tmp_path / "site", lambda pid, k: f"scan_{pid:03d}_{k}.png", patients=14, slices=4)
    split = split_site(root, "clinic")
    assert split.warnings and "share the file-name pattern" in split.warnings[0]
    assert saved_split(root, "clinic", {**split.to_dict(), "groups": split.groups}).warnings == split.warnings
    named = write_patients(tmp_path / "named", lambda pid, k: f"P{pid:03d}_s{k}.png", patients=14, slices=4)
    assert split_site(named, "clinic").warnings == []


def test_a_sequence_folder_or_a_dataset_prefix_is_no_patient(tmp_path):
    """A review: 'glioma/T1/P012_s3.png' made 'glioma/T1' one patient, and 'BraTS2021_00012.png' made every slice
    one case; no one case holds more than the cap, and a sequence folder is not a case folder."""
    from brainclf.data.case_names import case_folder

    assert case_folder(Path("/s/glioma/T1/P012/s3.png")) == Path("/s/glioma/T1/P012")
    assert case_folder(Path("/s/glioma/T1/s3.png")) is None and case_folder(Path("/s/glioma/png/x.png")) is None
    seq = [Path(f"/s/{c}/{q}/P{c[0]}{i:03d}_s{k}.png") for c in CLASSES for q in ("T1", "T2")
           for i in range(30) for k in (1, 2)]
    grouping = sources.case_grouping(seq, np.arange(len(seq)))
    assert len(set(grouping.groups.tolist())) == 90  # one group per patient, T1 and T2 together
    brats = [Path(f"/s/glioma/BraTS2021_{i:05d}.png") for i in range(80)]
    capped = sources.case_grouping(brats, np.arange(80))
    assert len(set(capped.groups.tolist())) == 80 and "leading id 'brats2021'" in capped.warnings[0]
    assert len(capped.warnings) == 1  # not again as the file-name pattern of the same files
    folders = [Path(f"/s/{c}/T1/P001/x{k}.png") for c in ("glioma", "meningioma") for k in (1, 2)]
    assert len(set(sources.case_grouping(folders, np.arange(4)).groups.tolist())) == 2  # a folder per class
