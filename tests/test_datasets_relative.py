"""A dataset's key for a file is its place in the dataset, also when it is a link whose target lies elsewhere."""

from __future__ import annotations

from pathlib import Path

from brainclf.data import relative_path


def test_a_linked_file_keeps_its_place_in_the_dataset(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "x1.png").write_bytes(b"x")
    root = tmp_path / "ext"
    (root / "glioma").mkdir(parents=True)
    (root / "glioma" / "x1.png").symlink_to(raw / "x1.png")
    (root / "glioma" / "plain.png").write_bytes(b"y")
    assert relative_path(root / "glioma" / "x1.png", root) == "glioma/x1.png"  # was /…/raw/x1.png
    assert relative_path(root / "glioma" / "plain.png", root) == "glioma/plain.png"
    assert relative_path(raw / "x1.png", root) == (raw / "x1.png").as_posix()  # outside: as it was given


def test_a_linked_dataset_root_still_gives_relative_keys(tmp_path):
    real = tmp_path / "real"
    (real / "meningioma").mkdir(parents=True)
    (real / "meningioma" / "a.png").write_bytes(b"a")
    linked = tmp_path / "linked"
    linked.symlink_to(real, target_is_directory=True)
    assert relative_path(linked / "meningioma" / "a.png", linked) == "meningioma/a.png"
    assert relative_path(real / "meningioma" / "a.png", linked) == "meningioma/a.png"
    assert Path(relative_path(linked / "meningioma" / "a.png", real)) == Path("meningioma/a.png")


def test_a_run_state_or_card_written_with_the_old_key_of_a_linked_file_still_finds_it(tmp_path):
    """Before 2026-12-07 a linked file's key was its target's absolute path: a saved run still resumes and an old
    card's trained-on file is still left out of an evaluation."""
    from types import SimpleNamespace

    from brainclf.data import discover
    from brainclf.evaluation.evaluate import learnt_mask
    from brainclf.training.prepare import index_samples

    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "x1.png").write_bytes(b"x")
    root = tmp_path / "ds"
    for c in ("glioma", "meningioma", "notumor", "pituitary"):
        (root / c).mkdir(parents=True)
    (root / "glioma" / "x1.png").symlink_to(raw / "x1.png")
    old_key = (raw / "x1.png").resolve().as_posix()
    index = index_samples(root, [])
    assert index["glioma/x1.png"] is index[old_key]
    card = SimpleNamespace(training={"fingerprint": {"root_name": "ds"}, "files": {"train": [old_key]}}, site={},
                           measured_site={}, provenance={})
    assert learnt_mask(card, discover(root).all_samples(), root, None).tolist() == [True]
