"""A site run measures the model only on slices it never learnt from, uses only readable slices, keeps every
class in every part, stays with its folder, and names its models within the limits: the refusals and the
slices left out, each said in words."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from PIL import Image
from test_site import write_site

from brainclf.data import Sample, discover, relative_path
from brainclf.errors import BrainclfError, ConfigError, DataError
from brainclf.model import read_card
from brainclf.site import SiteRun, learnt_from, split_site
from brainclf.site.split import check_parts, left_out_words, saved_split


def _own_files(card) -> set[str]:
    files = card.training["files"]
    return {str(f) for part in ("train", "val") for f in files[part]}


def test_the_models_own_slices_are_found_by_path_and_copies_by_content(tmp_path, smoke_model, synthetic_dataset):
    card = read_card(smoke_model)
    samples = discover(synthetic_dataset).all_samples()
    mask = learnt_from(card, samples, synthetic_dataset, None)  # the site folder is the model's data folder
    expected = [relative_path(s.path, synthetic_dataset) in _own_files(card) for s in samples]
    assert mask.tolist() == expected and any(expected) and not all(expected)  # Testing is not the model's

    copy = write_site(tmp_path / "clinic", cases_per_class=12)
    own = sorted(_own_files(card))[:5]
    for k, rel in enumerate(own):  # the model's training images, renamed, inside another site's folder
        cls = rel.split("/")[-2]
        if (copy / cls).is_dir():
            shutil.copy(synthetic_dataset / rel, copy / cls / f"renamed-{k}.png")
    site_samples = discover(copy).all_samples()
    copied = [s.path.name.startswith("renamed-") for s in site_samples]
    assert learnt_from(card, site_samples, copy, None).sum() == 0  # without the data folder: names only
    assert learnt_from(card, site_samples, copy, synthetic_dataset).tolist() == copied


def test_a_site_split_leaves_out_learnt_and_unreadable_slices_says_so_and_reads_back(tmp_path):
    site = write_site(tmp_path / "clinic")
    (site / "glioma" / "broken.png").write_bytes(b"not an image")
    learnt_name = sorted((site / "meningioma").iterdir())[0].name  # slice 1 of a two-slice case
    sibling = learnt_name.replace("-1.png", "-2.png")
    split = split_site(site, "clinic", exclude=lambda s: np.array([p.path.name == learnt_name for p in s]))
    # The rest of a case the model learnt from is no new patient: it is left out too, not held out.
    assert split.left_out == {"learnt": [f"meningioma/{learnt_name}"], "same_case": [f"meningioma/{sibling}"],
                              "unreadable": ["glioma/broken.png"]}
    assert left_out_words(split.left_out) == (" (Left out of this site run: 1 the model trained or validated on, "
                                              "1 more of cases the model learnt from and 1 unreadable slices.)")
    used = {s.path.name for samples in split.parts.values() for s in samples}
    assert not used & {"broken.png", learnt_name, sibling}
    again = saved_split(site, "clinic", {**split.to_dict(), "groups": split.groups})  # not "the folder changed"
    assert again.to_dict() == split.to_dict()


def test_a_site_of_only_the_models_own_slices_is_refused_saying_why(tmp_path):
    site = write_site(tmp_path / "clinic")
    with pytest.raises(DataError, match=r"this one has 0 slices.*Left out of this site run: 72 the model trained"):
        split_site(site, "clinic", exclude=lambda s: np.ones(len(s), bool))


def test_unreadable_files_do_not_count_towards_the_size_a_site_needs(tmp_path):
    site = write_site(tmp_path / "clinic", cases_per_class=4)  # 24 real slices: too few
    for k in range(60):
        (site / "glioma" / f"junk{k}.png").write_bytes(b"junk")
    with pytest.raises(DataError, match=r"this one has 24 slices.*60 unreadable"):
        split_site(site, "clinic")


def test_a_class_missing_from_a_part_is_refused_naming_it():
    parts = {"tune": [Sample("a", 0), Sample("b", 1)], "calibration": [Sample("c", 0)],
             "heldout": [Sample("d", 0), Sample("e", 1)]}
    with pytest.raises(DataError, match=r"Meningioma \(none in the calibration part\)"):
        check_parts(parts)
    check_parts({**parts, "calibration": [Sample("c", 0), Sample("f", 1)]})


def test_a_site_run_stays_with_its_folder(tmp_path, smoke_model):
    site = write_site(tmp_path / "clinic-2024")
    SiteRun.open(tmp_path / "run", site, "clinic", smoke_model)
    other = shutil.copytree(site, tmp_path / "clinic-2025")  # the same file names, another folder
    with pytest.raises(DataError, match=r"for folder clinic-2024, not clinic-2025: give another site name"):
        SiteRun.open(tmp_path / "run", other, "clinic", smoke_model)


@pytest.mark.parametrize("site,model", [("s" * 48, "m" * 64), ("clinic.eu", "m" * 60), ("ab", "default")])
def test_default_site_model_names_stay_valid_and_keep_their_suffix(site, model):
    from brainclf.input.limits import validate_model_name
    from brainclf.site.naming import default_name

    for suffix in ("", "-adapted", "-adapted-2"):
        name = default_name(site, model, suffix)
        assert validate_model_name(name) == name and name.endswith(suffix)
    assert default_name("ab", "default", "-adapted") == "ab-default-adapted"


def test_a_card_left_without_its_model_takes_its_name(tmp_path):
    from brainclf.site.naming import free_default_name, new_name

    (tmp_path / "clinic-smoke.json").write_text("{}")
    assert free_default_name(tmp_path, "clinic", "smoke", "") == "clinic-smoke-2"
    with pytest.raises(BrainclfError, match="A model named clinic-smoke already exists; nothing is overwritten"):
        new_name(tmp_path, "clinic-smoke")


def test_cli_refuses_bad_adapt_settings_before_any_step(tmp_path, smoke_model):
    from brainclf.cli.site import _adapt_config

    class Args:
        epochs, lr, replay, site_weight, distill, freeze_early, freeze_batchnorm, ema, anchor, seed = (0, *[None] * 9)

    with pytest.raises(ConfigError, match="epochs"):
        _adapt_config(Args())
    Args.epochs, Args.seed = None, -1
    with pytest.raises(ConfigError, match="seed"):
        _adapt_config(Args())
    Args.seed, Args.ema = 7, 1.0
    with pytest.raises(ConfigError, match="moving-average"):
        _adapt_config(Args())
    Args.ema, Args.anchor = 0.99, -1e-4
    with pytest.raises(ConfigError, match="starting weights"):
        _adapt_config(Args())
    Args.anchor = 1e-4
    assert (_adapt_config(Args()).seed, _adapt_config(Args()).ema_momentum, _adapt_config(Args()).anchor) == \
        (7, 0.99, 1e-4)


def test_a_malformed_manifest_is_a_data_error_naming_its_line(tmp_path):
    from brainclf.evaluation.external import read_manifest

    (tmp_path / "manifest.csv").write_text("file,sequence,subtype\nglioma/a.png,T1,x\nglioma/b.png,T2,"
                                           + "y" * 200_000 + "\n")  # over the csv module's field limit
    with pytest.raises(DataError, match=r"manifest\.csv line \d+ cannot be read as CSV"):
        read_manifest(tmp_path)


def test_files_that_only_share_names_with_the_models_own_are_not_left_out(tmp_path, smoke_model):
    """Another hospital's folder laid out like the model's data folder holds files of the same names that the model
    never saw: neither a site run nor an evaluation may drop them."""
    from brainclf.evaluation.evaluate import training_paths_for

    card = read_card(smoke_model)
    other = tmp_path / "other-hospital"
    rng = np.random.default_rng(5)
    for rel in sorted(_own_files(card))[:8]:
        (other / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (48, 48), dtype=np.uint8)).save(other / rel)
    samples = discover(other).all_samples()
    assert len(samples) == 8 and not learnt_from(card, samples, other, None).any()
    assert training_paths_for(card, other / "Training") is None  # not taken for the model's training folder


def test_an_older_flat_site_run_folder_is_still_found(tmp_path):
    from brainclf.site import site_run_dir

    assert site_run_dir(tmp_path, "clinic", "models/default.keras") == tmp_path / "clinic" / "default"
    (tmp_path / "clinic-default").mkdir()
    (tmp_path / "clinic-default" / "site.json").write_text("{}")
    assert site_run_dir(tmp_path, "clinic", "models/default.keras") == tmp_path / "clinic-default"


def test_a_folder_named_like_the_models_data_folder_is_checked_by_name_whatever_data_root_says(
        tmp_path, smoke_model, synthetic_dataset, monkeypatch):
    """A site folder named like the model's training folder, holding a few of its training files (not the first
    one the card lists), with --data pointing elsewhere: those files are still the model's own."""
    from brainclf.evaluation.evaluate import training_paths_for

    monkeypatch.delenv("BRAINCLF_DATA", raising=False)
    card = read_card(smoke_model)
    site = tmp_path / card.training["fingerprint"]["root_name"]
    kept = sorted(_own_files(card))[1:6]
    for rel in kept:
        (site / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(synthetic_dataset / rel, site / rel)
    samples = discover(site).all_samples()
    assert learnt_from(card, samples, site, tmp_path / "elsewhere").sum() == len(kept)
    # An explicit training folder that lacks the files is not silently replaced by $BRAINCLF_DATA.
    monkeypatch.setenv("BRAINCLF_DATA", str(synthetic_dataset))
    assert training_paths_for(card, tmp_path / "x" / "Testing", tmp_path / "typo") is None
    assert training_paths_for(card, tmp_path / "x" / "Testing") is not None  # without one, it is used


def test_a_site_whose_manifest_cannot_be_read_is_refused_before_any_step_works(tmp_path, smoke_model):
    """It was read after a step's predictions (validate), or after every epoch (adapt), and failed there."""
    site = write_site(tmp_path / "clinic")
    (site / "manifest.csv").write_bytes("file,sequence\nglioma/x.png,T1\n".encode("utf-16"))
    with pytest.raises(DataError, match="UTF-16"):
        SiteRun.open(tmp_path / "run", site, "clinic", smoke_model)
    assert not (tmp_path / "run").exists()


def test_a_resumed_site_run_whose_manifest_broke_since_is_refused_at_once(tmp_path, smoke_model):
    site = write_site(tmp_path / "clinic")
    SiteRun.open(tmp_path / "run", site, "clinic", smoke_model)
    (site / "manifest.csv").write_bytes("file,sequence\nglioma/x.png,T1\n".encode("utf-16"))
    with pytest.raises(DataError, match="UTF-16"):
        SiteRun.open(tmp_path / "run", site, "clinic", smoke_model)
