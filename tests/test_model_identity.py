"""A model's identity is its file's hash, not the name and version its card claims: every result, CSV row, PDF,
audit line and session cache names the model by name, version and file hash; an upload's figures are marked as
its uploader's claim wherever the picker shows them."""

from __future__ import annotations

import csv
import dataclasses
import json
import os

import pytest

from brainclf.errors import ConfigError
from brainclf.inference import CSV_FIELDS, predict_folder
from brainclf.model import card_path, read_card
from brainclf.presentation import model_label, pct
from brainclf.serving import audit_record


def twin(card, sha: str):
    """The same card for another file: an upload claiming this model's name and version."""
    return dataclasses.replace(card, file_sha256=sha)


def test_results_carry_the_model_files_hash(smoke_predictor, make_image, tmp_path):
    card = smoke_predictor.card
    pred = smoke_predictor.predict(make_image(), name="a.png")
    assert pred.model_sha256 == card.file_sha256 and pred.model_hash == card.file_sha256[:12]
    assert pred.as_row()["model_sha256"] == card.file_sha256[:12]
    assert audit_record(b"x", pred)["model_sha256"] == card.file_sha256
    assert audit_record(b"x", error="empty", model=card.name, version=card.version,
                        model_sha256=card.file_sha256)["model_sha256"] == card.file_sha256
    assert card.label == f"{card.name} {card.version} · {card.file_sha256[:12]}"
    assert twin(card, "0" * 64).label != card.label  # caches keyed by label tell the two files apart


def test_session_results_are_keyed_by_the_file_hash_too():
    """A cached result of an upload claiming 'default 2026…' was shown after switching to the real default."""
    real, upload = model_label("default", "20261127-2251ef4c", False, "2251ef4c63b4"), model_label(
        "default", "20261127-2251ef4c", False, "0123456789ab")
    assert real != upload and "2251ef4c63b4" in real


def test_folder_csv_rows_name_the_hash_and_an_older_csv_is_not_extended(smoke_predictor, make_image, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    make_image().save(folder / "a.png")
    (folder / "b.png").write_bytes(b"not an image")
    out = tmp_path / "out.csv"
    predict_folder(smoke_predictor, folder, out)
    with open(out, newline="") as f:
        rows = list(csv.DictReader(f))
    assert {r["model_sha256"] for r in rows} == {smoke_predictor.card.file_sha256[:12]} and len(rows) == 2
    old = tmp_path / "old.csv"
    old.write_text(",".join(c for c in CSV_FIELDS if c != "model_sha256") + "\nx.png,notumor\n")
    with pytest.raises(ConfigError, match="not a CSV with the columns this version writes.*nothing in it was changed"):
        predict_folder(smoke_predictor, folder, old)


def test_a_folder_csv_is_resumed_only_by_the_same_model_and_tta(smoke_predictor, make_image, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    make_image().save(folder / "a.png")
    out = tmp_path / "out.csv"
    predict_folder(smoke_predictor.with_tta(False), folder, out)
    make_image().save(folder / "b.png")
    with pytest.raises(ConfigError, match=r"holds rows by model smoke .*TTA False.*TTA True.*new CSV file"):
        predict_folder(smoke_predictor.with_tta(True), folder, out)
    assert predict_folder(smoke_predictor.with_tta(False), folder, out) == {"predicted": 1, "failed": 0, "skipped": 1,
                                                                             "failed_before": 0}
    with open(out, newline="") as f:
        assert [r["tta"] for r in csv.DictReader(f)] == ["False", "False"]


def test_the_picker_marks_an_uploads_figures_as_claimed(smoke_model, tmp_path):
    from conftest import copy_model

    from pages.common import model_listing

    path = copy_model(smoke_model, tmp_path, "upload")
    assert "claimed" not in model_listing(path)["label"] and model_listing(path)["verified"]
    raw = json.loads(card_path(path).read_text())
    raw["provenance"] = {"uploaded_by": "eve", "uploaded": "2026-12-01", "metrics_verified": False}
    card_path(path).write_text(json.dumps(raw))
    os.utime(card_path(path), (1, 1))  # another file version, whatever the clock's resolution
    accuracy = pct(read_card(path).test_metrics()["accuracy"])  # wording.pct, like every percentage
    listing = model_listing(path)
    assert f"Kaggle test {accuracy} (in-distribution) claimed, not verified" in listing["label"]
    assert not listing["verified"]
    assert listing["row"]["model"] == "upload"


def test_listing_many_models_reads_each_card_once(smoke_model, tmp_path, monkeypatch):
    """With more models than a card cache holds (32), every page run re-read every card (0.4 s each for a shipped
    one): the listing keeps each model's few hundred bytes for far more models."""
    from conftest import copy_model

    import pages.common.models as models

    paths = [copy_model(smoke_model, tmp_path, f"m{k:02d}") for k in range(40)]
    reads = []
    monkeypatch.setattr(models, "read_card", lambda p: reads.append(p) or read_card(p))
    for _ in range(2):  # two page runs
        labels = [models.model_listing(p)["label"] for p in paths]
    assert len(reads) == 40 and labels[0].startswith("m00 (")
    (tmp_path / "gone.keras").write_bytes(b"")
    assert models.model_listing(tmp_path / "gone.keras") == {"label": "gone (card unreadable)", "verified": False,
                                                             "card": False, "row": None}


def test_a_folder_csv_of_an_older_version_with_a_flagged_row_not_referred_is_not_resumed(smoke_predictor, make_image,
                                                                                        tmp_path):
    """Rows of two meanings of refer in one file: an older version wrote a flagged slice as refer False."""
    folder = tmp_path / "in"
    folder.mkdir()
    make_image().save(folder / "a.png")
    out = tmp_path / "out.csv"
    predict_folder(smoke_predictor.with_tta(False), folder, out)
    with open(out, newline="") as f:
        rows = list(csv.DictReader(f))
    rows[0].update(out_of_distribution="True", refer="False")
    with open(out, "w", newline="") as f:
        writer = csv.DictWriter(f, CSV_FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    make_image().save(folder / "b.png")
    with pytest.raises(ConfigError, match="written before a flagged slice's row said refer"):
        predict_folder(smoke_predictor.with_tta(False), folder, out)


def test_a_folder_csv_is_not_resumed_by_a_profile_of_the_same_file(smoke_predictor, make_image, tmp_path):
    """A site profile keeps its starting model's file, and so its hash, with another temperature and rule."""
    import dataclasses

    folder = tmp_path / "in"
    folder.mkdir()
    make_image().save(folder / "a.png")
    out = tmp_path / "out.csv"
    base = smoke_predictor.with_tta(False)
    predict_folder(base, folder, out)
    profile = object.__new__(type(base))
    profile.__dict__.update({**base.__dict__, "card": dataclasses.replace(base.card, version="20261207-x-r1")})
    make_image().save(folder / "b.png")
    with pytest.raises(ConfigError, match="holds rows by model"):
        predict_folder(profile, folder, out)
