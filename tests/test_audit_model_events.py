"""Model changes in the audit log: who uploaded, removed, restored or deleted which model (with its file hash where
its card is there), and who started a training or site step; only while the log is on."""

from __future__ import annotations

import json

import pytest
from test_access_pages import app_as, run_page, signed_in
from test_removed_models import admin_settings

from brainclf.serving import model_event_record


def test_a_model_event_names_who_what_and_which_file():
    rec = model_event_record("model removed", "email:a@b.org", "spare\n**x**", "ab" * 32)
    assert rec["event"] == "model removed" and rec["user"] == "email:a@b.org" and rec["model_sha256"] == "ab" * 32
    assert "\n" not in rec["model"] and rec["timestamp"].endswith("Z")
    assert "model_sha256" not in model_event_record("training started", "local", "new_model")
    with pytest.raises(ValueError, match="not a model event"):
        model_event_record("model renamed", "local", "x")


def _admin_server(tmp_path, monkeypatch, smoke_model, audit: bool):
    return admin_settings(tmp_path, monkeypatch, smoke_model, f"[audit]\nenabled = {str(audit).lower()}\n")


def _remove_spare(models):
    at = run_page(app_as({**signed_in("admin"), "email": "admin@clinic.example"}), "model")
    at.selectbox(key="remove_pick").select(models / "spare.keras").run()
    at.button(key="remove_model").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert not (models / "spare.keras").exists()


def _lines(tmp_path) -> list[dict]:
    log = tmp_path / "audit" / "brainclf-audit.jsonl"
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def test_an_admins_removal_is_in_the_audit_log_with_the_models_hash(tmp_path, monkeypatch, smoke_model):
    models = _admin_server(tmp_path, monkeypatch, smoke_model, audit=True)
    sha = json.loads((models / "spare.json").read_text())["file_sha256"]
    _remove_spare(models)
    [line] = [r for r in _lines(tmp_path) if r.get("event") == "model removed"]
    assert (line["model"], line["model_sha256"]) == ("spare", sha)
    assert line["user"] == f"sub:{signed_in('admin')['sub']}"  # the account, as prediction lines name it


def test_nothing_is_written_while_the_audit_log_is_off(tmp_path, monkeypatch, smoke_model):
    models = _admin_server(tmp_path, monkeypatch, smoke_model, audit=False)
    _remove_spare(models)
    assert _lines(tmp_path) == []


def test_deleting_a_removed_model_for_good_names_its_own_hash_not_a_new_models(tmp_path, monkeypatch, smoke_model):
    from brainclf.model import removed_models

    models = _admin_server(tmp_path, monkeypatch, smoke_model, audit=True)
    sha = json.loads((models / "spare.json").read_text())["file_sha256"]
    _remove_spare(models)
    (models / "spare.json").write_text(json.dumps({"file_sha256": "f" * 64}))  # another "spare"'s card since
    at = run_page(app_as({**signed_in("admin"), "email": "admin@clinic.example"}), "model")
    [entry] = removed_models(models)
    at.checkbox(key=f"removed_sure_{entry.folder}").check().run()
    at.button(key="removed_delete").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    [line] = [r for r in _lines(tmp_path) if r.get("event") == "model deleted for good"]
    assert (line["model"], line["model_sha256"]) == ("spare", sha)
