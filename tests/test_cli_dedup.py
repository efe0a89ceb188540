"""python -m brainclf dedup: its flags are bounded, a linked file outside the folder is reported by its place in it,
and a report keeps a bounded number of example pairs."""

from __future__ import annotations

import json
import shutil

import pytest

from brainclf.cli import main
from brainclf.cli.datasets import MAX_THRESHOLD
from brainclf.data import dedup_report, discover
from brainclf.data.dedup import EXAMPLES_KEPT, MAX_NEAR_THRESHOLD
from brainclf.errors import ConfigError


@pytest.mark.parametrize("flags, said", [(["--threshold", "256"], "--threshold must be between 0 and 64, got 256"),
                                         (["--threshold", "-5"], "--threshold must be between 0 and 64, got -5"),
                                         (["--threshold", "x"], "--threshold must be a whole number"),
                                         (["--show", "-1"], "--show must be at least 0, got -1")])
def test_dedup_refuses_an_out_of_range_threshold_or_show_before_reading_anything(tmp_path, capsys, flags, said):
    with pytest.raises(SystemExit) as e:
        main(["dedup", "--data", str(tmp_path / "none"), *flags])
    assert e.value.code == 2
    assert said in capsys.readouterr().err


def test_the_cli_bound_is_the_librarys_and_the_library_refuses_past_it(tmp_path, make_image):
    assert MAX_THRESHOLD == MAX_NEAR_THRESHOLD
    (tmp_path / "glioma").mkdir()
    make_image("glioma").save(tmp_path / "glioma" / "a.png")
    with pytest.raises(ConfigError, match="between 0 and 64"):
        dedup_report(discover(tmp_path), threshold=65)
    assert dedup_report(discover(tmp_path), threshold=64)["threshold"] == 64


def test_dedup_names_a_linked_file_whose_target_is_outside_the_folder_by_its_place_in_it(tmp_path, make_image,
                                                                                         capsys):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    make_image("glioma", seed=1).save(outside / "target.png")
    data = tmp_path / "ds"
    for c in ("glioma", "pituitary"):
        (data / c).mkdir(parents=True)
    (data / "glioma" / "linked.png").symlink_to(outside / "target.png")
    shutil.copy(outside / "target.png", data / "pituitary" / "copy.png")
    assert main(["dedup", "--data", str(data), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    example = report["pairs"]["all"]["examples"][0]
    assert {example["a"], example["b"]} == {"glioma/linked.png", "pituitary/copy.png"}


def test_a_report_keeps_a_bounded_number_of_examples_conflicts_first(monkeypatch, tmp_path, make_image):
    import brainclf.data.dedup as dedup

    monkeypatch.setattr(dedup, "EXAMPLES_KEPT", 3)
    for c in ("glioma", "pituitary"):
        (tmp_path / c).mkdir()
    make_image("glioma").save(tmp_path / "glioma" / "0.png")
    for k in range(1, 9):  # nine copies of one image: 36 near pairs, 8 of them with the pituitary copy
        shutil.copy(tmp_path / "glioma" / "0.png", tmp_path / ("pituitary" if k == 8 else "glioma") / f"{k}.png")
    cat = dedup_report(discover(tmp_path))["pairs"]["all"]
    assert cat["exact_pairs"] == 8 and cat["near_pairs"] == 36 and cat["label_conflicts"] == 8
    assert len(cat["examples"]) == 3 and not any(e["same_label"] for e in cat["examples"])
    assert EXAMPLES_KEPT == 1000
