"""brainclf.model.card: model cards and the refusal of anything missing, corrupt or mismatched."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest

from brainclf import CLASS_NAMES
from brainclf.errors import ModelError
from brainclf.model import ModelCard, card_path, file_sha256, list_models, load_model, read_card


def copy_model(smoke_model, dest_dir, name="m", card_changes=None, model_bytes=None):
    """Copy smoke.keras + card into dest_dir as <name>.keras, optionally editing the card or the file."""
    dest = dest_dir / f"{name}.keras"
    if model_bytes is None:
        shutil.copy(smoke_model, dest)
    else:
        dest.write_bytes(model_bytes)
    card = json.loads(card_path(smoke_model).read_text())
    card.update(card_changes or {})
    card_path(dest).write_text(json.dumps(card))
    return dest


def test_load_model_ok(smoke_model, tmp_path):
    model, card = load_model(copy_model(smoke_model, tmp_path))
    assert card.name == "smoke"
    assert model.input_shape == (None, *card.contract.shape)
    assert model.output_shape == (None, len(CLASS_NAMES))


def test_missing_file(tmp_path):
    with pytest.raises(ModelError, match="does not exist"):
        load_model(tmp_path / "ghost.keras")


@pytest.mark.parametrize("name", ["model.h5", "model.json", "model"])
def test_wrong_suffix(smoke_model, tmp_path, name):
    shutil.copy(smoke_model, tmp_path / name)
    with pytest.raises(ModelError, match=r"\.keras"):
        load_model(tmp_path / name)


def test_missing_card(smoke_model, tmp_path):
    shutil.copy(smoke_model, tmp_path / "lonely.keras")
    with pytest.raises(ModelError, match=r"no model card \(lonely\.json is missing\)"):
        load_model(tmp_path / "lonely.keras")


def test_card_not_json(smoke_model, tmp_path):
    shutil.copy(smoke_model, tmp_path / "m.keras")
    (tmp_path / "m.json").write_text("{not json")
    with pytest.raises(ModelError, match="not valid JSON"):
        load_model(tmp_path / "m.keras")


def test_corrupt_keras_file(smoke_model, tmp_path):
    junk = os.urandom(4096)
    path = copy_model(smoke_model, tmp_path, model_bytes=junk)
    with pytest.raises(ModelError, match="could not be loaded"):
        load_model(path, check_hash=False)


def test_corrupt_keras_file_with_its_own_hash_in_card(smoke_model, tmp_path):
    """Even when the card's hash matches the junk, Keras' failure surfaces as ModelError."""
    junk = b"PK\x03\x04" + os.urandom(2000)
    path = copy_model(smoke_model, tmp_path, model_bytes=junk)
    card = json.loads(card_path(path).read_text())
    card["file_sha256"] = file_sha256(path)
    card_path(path).write_text(json.dumps(card))
    with pytest.raises(ModelError, match="could not be loaded"):
        load_model(path)


def test_card_with_different_hash(smoke_model, tmp_path):
    path = copy_model(smoke_model, tmp_path, card_changes={"file_sha256": "0" * 64})
    with pytest.raises(ModelError, match="file hash differs"):
        load_model(path)
    model, card = load_model(path, check_hash=False)  # the explicit opt-out still loads it
    assert card.file_sha256 == "0" * 64  # with the card beside it, as it stands
    original, _ = load_model(smoke_model)
    assert model.count_params() == original.count_params() == card.params
    x = np.random.default_rng(0).random((2, *card.contract.shape), np.float32)
    np.testing.assert_allclose(np.asarray(model(x)), np.asarray(original(x)), atol=1e-6)  # the same network


def test_card_with_wrong_class_names(smoke_model, tmp_path):
    path = copy_model(smoke_model, tmp_path, card_changes={"class_names": ["cat", "dog", "bird", "fish"]})
    with pytest.raises(ModelError, match="lists classes"):
        load_model(path)
    reordered = list(reversed(CLASS_NAMES))
    with pytest.raises(ModelError, match="lists classes"):
        load_model(copy_model(smoke_model, tmp_path, name="r", card_changes={"class_names": reordered}))


@pytest.mark.parametrize("contract", [{"size": 64, "channels": 1}, {"size": 32, "channels": 3}])
def test_card_contract_does_not_match_model(smoke_model, tmp_path, contract):
    path = copy_model(smoke_model, tmp_path, card_changes={"input_contract": contract})
    with pytest.raises(ModelError, match="does not belong to this model"):
        load_model(path)


def test_list_models_only_lists_models_with_cards(smoke_model, tmp_path):
    copy_model(smoke_model, tmp_path, name="b")
    copy_model(smoke_model, tmp_path, name="a")
    shutil.copy(smoke_model, tmp_path / "no_card.keras")
    (tmp_path / "stray.json").write_text("{}")
    assert [p.name for p in list_models(tmp_path)] == ["a.keras", "b.keras"]
    assert list_models(tmp_path / "missing") == []


def test_card_roundtrip_and_label(tmp_path):
    card = ModelCard(name="default", architecture="seed", input_contract={"size": 120, "channels": 3},
                     version="20260101-abcdef12", file_sha256="ab" * 32)
    assert card.label == "default 20260101-abcdef12 · abababababab"
    assert ModelCard(name="x", architecture="seed", input_contract={}).label == "x · no hash"
    card.save(tmp_path / "c.json")
    assert not list(tmp_path.glob("*.tmp"))
    d = json.loads((tmp_path / "c.json").read_text())
    d["some_future_field"] = 1  # unknown keys from newer versions are ignored
    (tmp_path / "c.json").write_text(json.dumps(d))
    back = read_card(tmp_path / "c.keras")
    assert back == card
    assert back.contract.shape == (120, 120, 3)


def test_add_model_checks_before_adding(smoke_model, tmp_path):
    from brainclf.model import add_model

    model_bytes, card_bytes = smoke_model.read_bytes(), smoke_model.with_suffix(".json").read_bytes()
    dest = tmp_path / "models"
    added = add_model("uploaded", model_bytes, card_bytes, dest)
    assert added == dest / "uploaded.keras" and (dest / "uploaded.json").exists()
    with pytest.raises(ModelError, match="already exists"):
        add_model("uploaded", model_bytes, card_bytes, dest)
    with pytest.raises(ModelError):
        add_model("broken", b"not a zip", card_bytes, dest)
    with pytest.raises(ModelError, match="not valid JSON"):
        add_model("nocard", model_bytes, b"{", dest)
    with pytest.raises(ModelError, match="letters, digits"):
        add_model("../evil", model_bytes, card_bytes, dest)
    # Nothing else, but the uploads' lock file (brainclf.model.uploads.UPLOAD_LOCK).
    assert sorted(p.name for p in dest.iterdir() if p.name != ".uploads.lock") == ["uploaded.json", "uploaded.keras"]
