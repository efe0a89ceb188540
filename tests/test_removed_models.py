"""Removed models (brainclf.model.removed): listed with when and how big, restored under their own name while it is
free, deleted for good to make room; and the Model page's admin section that offers both."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from conftest import copy_model
from test_access_pages import app_as, run_page, signed_in

from brainclf.errors import ModelError
from brainclf.model import delete_removed, list_models, remove_model, removed_models, restore_model


def _models(tmp_path, *names: str):
    models = tmp_path / "models"
    models.mkdir(exist_ok=True)
    for name in names:
        (models / f"{name}.keras").write_bytes(b"zip" * 100)
        (models / f"{name}.json").write_text("{}")
    return models


def test_a_removed_model_is_listed_restored_and_back_in_the_picker(tmp_path):
    models = _models(tmp_path, "keep", "gone")
    remove_model(models / "gone.keras", models)
    [entry] = removed_models(models)
    assert (entry.name, entry.size_bytes, entry.has_card) == ("gone", 302, True)
    assert abs(time.mktime(entry.removed_at.timetuple()) - time.time()) < 120
    assert restore_model(models, entry.folder) == models / "gone.keras"
    assert [p.stem for p in list_models(models)] == ["gone", "keep"]
    assert removed_models(models) == [] and not any((models / ".removed").iterdir())


def test_a_restore_never_overwrites_a_model_of_the_same_name(tmp_path):
    models = _models(tmp_path, "same")
    remove_model(models / "same.keras", models)
    (models / "same.keras").write_bytes(b"newer")
    (models / "same.json").write_text('{"newer": true}')
    [entry] = removed_models(models)
    with pytest.raises(ModelError, match="already exists"):
        restore_model(models, entry.folder)
    assert (models / "same.keras").read_bytes() == b"newer" and removed_models(models) == [entry]


def test_a_name_held_by_a_training_to_come_is_not_restored_into(tmp_path):
    models = _models(tmp_path, "x")
    remove_model(models / "x.keras", models)
    [entry] = removed_models(models)
    held = {"x": "a training named x is running or can be resumed, and its model will take that name"}
    with pytest.raises(ModelError, match="cannot be restored now: a training named x is running"):
        restore_model(models, entry.folder, name_held=held.get)
    assert removed_models(models) == [entry] and not (models / "x.keras").exists()
    assert restore_model(models, entry.folder, name_held={}.get) == models / "x.keras"


def test_a_folder_removed_before_the_token_was_added_is_listed_too(tmp_path):
    models = _models(tmp_path)
    old = models / ".removed" / "old-20261130-101010"
    old.mkdir(parents=True)
    (old / "old.keras").write_bytes(b"zip")
    (old / "old.json").write_text("{}")
    [entry] = removed_models(models)
    assert (entry.name, entry.folder, entry.removed_at.day) == ("old", "old-20261130-101010", 30)
    assert restore_model(models, entry.folder).is_file()


def test_deleting_for_good_frees_its_bytes_and_only_its_folder(tmp_path):
    models = _models(tmp_path, "a", "b")
    for name in ("a", "b"):
        remove_model(models / f"{name}.keras", models)
    newest, older = removed_models(models)
    assert newest.removed_at >= older.removed_at
    assert delete_removed(models, older.folder) == older.size_bytes
    assert removed_models(models) == [newest]
    with pytest.raises(ModelError, match="no longer there"):
        delete_removed(models, older.folder)


@pytest.mark.parametrize("folder", ["..", "../models", "/etc", "a-20261206-223000-zzzzzz", "", "stray"])
def test_only_a_listed_removed_model_can_be_restored_or_deleted(tmp_path, folder):
    models = _models(tmp_path, "a")
    remove_model(models / "a.keras", models)
    (models / ".removed" / "stray").mkdir()
    (models / ".removed" / "stray" / "stray.keras").write_bytes(b"x")
    (models / ".removed" / "a-20261206-223000-zzzzzz").mkdir()  # not a token remove_model writes
    for action in (restore_model, delete_removed):
        with pytest.raises(ModelError, match="no longer there"):
            action(models, folder)
    assert [e.name for e in removed_models(models)] == ["a"] and (models / ".removed" / "stray").is_dir()


def test_a_removed_model_without_its_card_is_listed_but_not_restored(tmp_path):
    models = _models(tmp_path, "a")
    dest = remove_model(models / "a.keras", models)
    (dest / "a.json").unlink()
    [entry] = removed_models(models)
    assert entry.has_card is False
    with pytest.raises(ModelError, match="card is missing"):
        restore_model(models, entry.folder)
    assert list_models(models) == []


def admin_settings(tmp_path, monkeypatch, smoke_model, tables: str = "") -> Path:
    """models/{active,spare} and a settings file making admin@clinic.example an admin, plus `tables` (TOML)."""
    models = tmp_path / "models"
    for name in ("active", "spare"):
        copy_model(smoke_model, models, name)
    toml = tmp_path / "brainclf.toml"
    toml.write_text(f'{tables}\n[roles.admin]\nemails = ["admin@clinic.example"]\n'
                    f'\n[paths]\nmodels = "{models}"\nruns = "{tmp_path / "runs"}"\n')
    monkeypatch.setenv("BRAINCLF_SETTINGS", str(toml))
    monkeypatch.setenv("BRAINCLF_AUDIT_DIR", str(tmp_path / "audit"))
    return models


@pytest.fixture
def admin_server(tmp_path, monkeypatch, synthetic_dataset, smoke_model):
    return admin_settings(tmp_path, monkeypatch, smoke_model, f'[data]\nbrain-mri = "{synthetic_dataset}"\n')


def _admin_page():
    user = {**signed_in("admin"), "email": "admin@clinic.example"}
    return run_page(app_as(user), "model")


def test_an_admin_restores_a_removed_model_and_deletes_one_only_once_sure(admin_server):
    models = admin_server
    remove_model(models / "spare.keras", models)
    at = _admin_page()
    assert any(e.label.startswith("Removed models (1,") for e in at.expander)
    assert at.button(key="removed_delete").disabled  # not until "yes, for good" is ticked
    at.button(key="removed_restore").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert (models / "spare.keras").is_file() and removed_models(models) == []
    remove_model(models / "spare.keras", models)
    at = _admin_page()
    [entry] = removed_models(models)
    at.checkbox(key=f"removed_sure_{entry.folder}").check().run()
    at.button(key="removed_delete").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert removed_models(models) == [] and not (models / "spare.keras").exists()
