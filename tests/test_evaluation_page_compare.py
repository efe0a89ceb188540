"""The Evaluation page's "Compare models" (AppTest on the bundled models and on copies): the test-split comparison
is labelled in-distribution and named; every external dataset both cards hold per-image rows for is compared file by
file; an uploader's claimed figures get no paired test; a folder evaluation says what it left out; and the trust
figures always say how much was answered."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

from test_app import REPO, md_plain, open_page, split_run_external
from test_sources import write_external

from brainclf import CLASS_NAMES
from brainclf.evaluation import paired_comparison, report_from_rows
from brainclf.model import read_card
from brainclf.presentation import refer_rule, wording
from brainclf.presentation.views import pct, trust_view

REFER_ALL = 1.0 + 2**-23  # brainclf.scoring.operating_point.REFER_ALL: no answer is given


def _compare_texts(at) -> list[str]:
    """The page's markdown and captions, without their Markdown escapes (the tests pick the compare section's by
    their words)."""
    texts = [md_plain(m.value) for m in at.markdown] + [md_plain(c.value) for c in at.caption]
    return [t for t in texts if t]


def _compare_on(model: Path, other: Path):
    """The Evaluation page with `model` active, compared with `other`. AppTest's switch_page runs the page without
    app.py's sidebar, whose picker would drop: its state is set before each run (as test_app's TTA test does)."""
    at = open_page("pages/evaluation.py")
    at.session_state["model_path"] = str(model)
    at.run()
    at.selectbox(key="compare").set_value(other)
    at.session_state["model_path"] = str(model)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_the_test_split_comparison_is_labelled_in_distribution_and_external_figures_stand_beside_it():
    """default vs kaggle_only used to read only 'default 98.0 %, kaggle_only 99.7 %' on the Kaggle test split,
    while on other sources' scans kaggle_only is right 36.5 % of the time."""
    at = open_page("pages/evaluation.py")
    at.selectbox(key="compare").set_value(REPO / "models" / "kaggle_only.keras").run()
    assert not at.exception, [e.value for e in at.exception]
    texts = _compare_texts(at)
    labelled = [t for t in texts if "In-distribution" in t]
    assert any("test split" in t and "brain-tumor-mri" in t for t in labelled), labelled
    # Neither card holds per-image rows on a dataset the other does (the refit default has none of its own):
    # said in a sentence, with each card's recorded other-source figure.
    (none,) = [t for t in texts if "No paired comparison on external data" in t]
    kaggle = read_card(REPO / "models" / "kaggle_only.keras").metrics["external"]["external-radiopaedia"]
    assert "kaggle_only" in none and wording.pct(kaggle["accuracy"]) in none and wording.count(kaggle["n"]) in none
    # default's recipe was measured by its split run
    assert wording.pct(split_run_external()["accuracy"]) in none and "default_split" in none


def test_external_rows_both_cards_hold_are_compared_file_by_file_over_case_groups():
    """default_split trained on part of external-radiopaedia (its 427 rows are the held-out cases); kaggle_only has
    rows for all 1,281: only the 427 files both hold are paired."""
    at = _compare_on(REPO / "models" / "default_split.keras", REPO / "models" / "kaggle_only.keras")
    a = read_card(REPO / "models" / "default_split.keras").external_predictions["external-radiopaedia"]
    b = read_card(REPO / "models" / "kaggle_only.keras").external_predictions["external-radiopaedia"]
    paired = paired_comparison(a, b)
    both = {r["path"] for r in a} & {r["path"] for r in b}
    assert len(both) == len(a) < len(b)  # every row of the split run's held-out cases, not kaggle_only's others
    assert paired["n"] == len(both) and paired["resampled"] == "case groups"
    (sentence,) = [t for t in _compare_texts(at) if "external-radiopaedia" in t and "permutation test" in t]
    assert f"{wording.count(len(both))} files both cards hold per-image rows for" in sentence, sentence
    assert wording.count(len(b)) in sentence, sentence
    assert f"**default_split {pct(paired['accuracy_a'])}**".replace("\u00a0", " ") in sentence.replace("\u00a0", " ")
    assert f"kaggle_only {pct(paired['accuracy_b'])}".replace("\u00a0", " ") in sentence.replace("\u00a0", " ")
    assert f"resampling {paired['units']} case groups" in sentence
    assert "A permutation test over case groups: p" in sentence and "McNemar" not in sentence  # slices of a case
    # default_split's held-out cases had neighbours in its training (a 12-bit split): its lead is a bound.
    assert "For default_split, the held-out cases of external-radiopaedia had neighbouring slices" in sentence
    assert "kaggle_only, the held-out" not in sentence


def _models_with_an_unverified_upload(folder: Path) -> Path:
    """default (every answer referred: its refer rule at REFER_ALL) and 'claimed', a kaggle_only copy as an upload
    whose figures were never re-measured here (its test and external rows are whatever its uploader wrote)."""
    folder.mkdir()
    for name, source in (("default", "default"), ("claimed", "kaggle_only")):
        shutil.copy(REPO / "models" / f"{source}.keras", folder / f"{name}.keras")
        card = json.loads((REPO / "models" / f"{source}.json").read_text())
        card["name"] = name
        if name == "default":
            for tta in ("", "_tta"):
                card["calibration"][f"refer_threshold{tta}"] = REFER_ALL
                card["calibration"][f"refer_thresholds{tta}"] = dict.fromkeys(CLASS_NAMES, REFER_ALL)
        else:
            card["provenance"] = {"uploaded_by": "someone", "uploaded": "2026-12-01", "metrics_verified": False}
        (folder / f"{name}.json").write_text(json.dumps(card))
    return folder


def test_an_unverified_upload_gets_no_paired_test_and_a_refer_everything_rule_says_none_was_answered(
        tmp_path, monkeypatch):
    monkeypatch.setenv("BRAINCLF_MODELS", str(_models_with_an_unverified_upload(tmp_path / "models")))
    at = open_page("pages/evaluation.py")
    at.selectbox(key="compare").set_value(tmp_path / "models" / "claimed.keras").run()
    assert not at.exception, [e.value for e in at.exception]
    texts = _compare_texts(at)
    assert not [t for t in texts if "McNemar" in t and "claimed" in t], "a p-value on an uploader's claim"
    assert not any("**claimed " in t for t in texts), "a bold accuracy for an uploader's claim"
    assert any("No paired test" in t and "claimed by its uploader" in t for t in texts), texts
    assert any("claimed by its uploader" in c for c in at.table[-1].value.columns), at.table[-1].value.columns
    # The refer rule answers nothing: the trust row still says so.
    answered = [m for m in at.metric if m.label.startswith("Answered")]
    assert answered and answered[0].value.startswith("0.0"), [m.label for m in at.metric]
    assert any("all 1,025 images referred" in md_plain(c.value) for c in at.caption)


def test_trust_view_shows_the_answered_share_when_everything_is_referred():
    rows = [{"path": f"{c}{i}.png", "true": c, "pred": c,
             "probs": [0.97 if k == c else 0.01 for k in CLASS_NAMES]} for c in CLASS_NAMES for i in range(2)]
    predictor = SimpleNamespace(temperature=1.0, refer_target_accuracy=0.98, refer_confidence=None)
    everything = dict.fromkeys(CLASS_NAMES, REFER_ALL)
    rule = refer_rule(everything, {"refer_thresholds": everything})
    report = report_from_rows(rows, rule.thresholds)
    assert report["refer"]["accepted_accuracy"] is None
    (answered,) = [t for t in trust_view(SimpleNamespace(calibration={}, ood=None), predictor, report, rule)
                   if t["label"].startswith("Answered")]
    assert answered["value"] == pct(0.0) and "all 8 images referred" in answered["caption"]


def test_a_folder_evaluation_says_what_it_could_not_check(tmp_path, monkeypatch):
    """evaluate_folder's clean_note (no clean subset without the training images) and its count of images left
    out used to be dropped by the page."""
    folder = write_external(tmp_path / "other-hospital", cases=2)
    monkeypatch.setenv("BRAINCLF_DATA", str(folder))
    at = open_page("pages/evaluation.py")
    at.radio(key="eval_source").set_value("Re-evaluate on a folder").run()
    at.selectbox(key="eval_folder").set_value("other-hospital").run()
    at.button(key="eval_run").click().run()
    assert not at.exception, [e.value for e in at.exception]
    captions = [md_plain(c.value) for c in at.caption]
    assert any("Clean subset" in c and "training images not found" in c for c in captions), captions[:3]


def test_folder_notes_count_the_images_left_out():
    from brainclf.presentation.views import folder_notes

    words = folder_notes({"clean_note": "an uploaded model's *training* images are not known here",
                          "excluded_trained_on": 5})
    assert "5 images the model trained or validated on were left out" in words
    assert "\\*training\\*" in words  # escaped: rendered as Markdown by st.caption
    assert folder_notes({"clean": {"n": 3}, "excluded_trained_on": 0}) is None


def _cards(**provenance):
    """default_split and kaggle_only as read from models/, the latter as an upload with `provenance` if given."""
    from dataclasses import replace

    a, b = (read_card(REPO / "models" / f"{n}.keras") for n in ("default_split", "kaggle_only"))
    return a, (replace(b, provenance=provenance) if provenance else b)


def test_an_uploaders_claimed_rows_are_marked_and_get_no_paired_test_on_either_split():
    from brainclf.presentation.comparison import compare_cards

    verified, claimed = _cards(uploaded_by="someone", uploaded="2026-12-01", metrics_verified=False)
    cmp = compare_cards(verified, claimed, False, "kaggle_only")
    test, (external,) = cmp["test"], cmp["external"]
    assert test["paired"] is None and "McNemar" not in test["sentence"]
    assert test["sentence"].startswith("No paired test: kaggle\\_only's test predictions are claimed by its uploader")
    assert {"default_split", "kaggle_only (claimed by its uploader)"} <= set(test["table"][0])
    assert "McNemar" not in external and "**default" not in external and "**kaggle" not in external
    rows = [{r["path"] for r in card.external_predictions["external-radiopaedia"]} for card in (verified, claimed)]
    assert f"{wording.count(len(rows[0] & rows[1]))} files both cards hold per-image rows for" in md_plain(external)
    assert "No paired test: kaggle_only's rows on external-radiopaedia are claimed" in md_plain(external)
    # Re-measured on this server, the test split is the server's own figure; its external rows still are not.
    remeasured = compare_cards(verified, _cards(uploaded="2026-12-01", metrics_verified=True)[1], False, "k")
    assert "McNemar" in remeasured["test"]["sentence"] and "McNemar" not in remeasured["external"][0]


def test_external_datasets_held_by_one_card_only_or_with_no_file_in_common_are_said_so():
    from dataclasses import replace

    from brainclf.presentation.comparison import external_comparison

    a, b = _cards()
    rows = a.external_predictions["external-radiopaedia"]
    a = replace(a, external_predictions={"external-radiopaedia": rows, "hospital-x": rows[:3]})
    paired, alone = external_comparison(a, b)
    assert "permutation test over case groups" in paired
    assert md_plain(alone) == "Not paired, per-image rows in one card only: hospital-x."
    moved = replace(b, external_predictions={"external-radiopaedia": [dict(r, path="elsewhere/" + r["path"])
                                                                      for r in rows]})
    (none,) = external_comparison(_cards()[0], moved)
    assert "for no file in common: nothing to pair" in none and "permutation" not in none
