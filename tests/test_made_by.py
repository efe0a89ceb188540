"""Who made a model on this server: the person who started its training or site step in the app is recorded in
its card (training.started_by, site.made_by) and shown on the Home page and in the models table."""

from __future__ import annotations

import json
import threading
from dataclasses import replace

import pytest
from test_site import write_site

from brainclf.errors import DataError
from brainclf.evaluation import made_here_note, maker_words
from brainclf.model import ModelCard, maker_record, read_card
from brainclf.model.card_schema import CardSchemaError, validate_card
from brainclf.serving import TrainingJobs
from brainclf.site import saved_state
from brainclf.site.steps import run_step
from brainclf.site.summary import saved_models
from brainclf.training import TrainConfig
from brainclf.training.state import RunState

ALICE = {"name": "Alice", "account": "sub:alice"}


def test_the_record_keeps_plain_labels_and_drops_what_is_unknown():
    assert maker_record("Alice", "sub:alice") == ALICE
    assert maker_record(None, "") == {}  # a CLI run: nobody to name
    assert maker_record("", "email:b@x.org") == {"account": "email:b@x.org"}
    long = maker_record("A" * 500 + "\n\x00", None)
    assert len(long["name"]) == 128 and "\n" not in long["name"] and "\x00" not in long["name"]


def test_a_run_state_keeps_who_started_it_and_an_older_state_reads_as_before(smoke_run):
    state = RunState.load(smoke_run[1])
    assert state.started_by == {} and "started_by" not in state.to_dict()  # saved before (or without) a person
    kept = RunState.from_dict({**state.to_dict(), "started_by": ALICE})
    assert kept.started_by == ALICE and kept.to_dict()["started_by"] == ALICE
    with pytest.raises(DataError, match="started_by"):
        RunState.from_dict({**state.to_dict(), "started_by": "Alice"})


def test_an_apps_training_names_who_started_it_in_its_card(synthetic_dataset, tmp_path, monkeypatch):
    monkeypatch.setenv("BRAINCLF_RUNS", str(tmp_path / "runs"))
    jobs = TrainingJobs()
    jobs.start(TrainConfig(image_size=32, epochs=1, batch_size=8), synthetic_dataset, "alices",
               models_dir=tmp_path / "models", owner="sub:alice", owner_label="Alice")
    status = jobs.wait(timeout=600)
    assert status.state == "done", status.error
    card = read_card(status.result)
    assert card.training["started_by"] == ALICE
    started = card.training["started"][:10]
    assert maker_words(card) == f"trained on this server by Alice (account sub:alice), started {started}"
    assert made_here_note(card).startswith("Trained on this server by Alice (account sub:alice)")


def test_a_cli_training_and_a_bundled_model_name_nobody(smoke_model):
    card = read_card(smoke_model)
    assert "started_by" not in card.training
    assert maker_words(card) == "not recorded" and made_here_note(card) is None


def test_a_site_step_names_who_ran_it_and_keeps_the_trainer_of_its_weights(tmp_path, smoke_model):
    site = write_site(tmp_path / "site" / "st-made")
    models = tmp_path / "models"
    models.mkdir()
    args = ("st-made", smoke_model, 0.9, models, None, None, None, {"name": "Bob", "account": "sub:bob"})
    run_step("validate", tmp_path / "run", site, *args, hook=lambda p: None, cancel=threading.Event())
    made = run_step("calibrate", tmp_path / "run", site, *args, hook=lambda p: None, cancel=threading.Event())
    card = read_card(made)
    assert card.site["made_by"] == {"name": "Bob", "account": "sub:bob"}
    assert maker_words(card) == "Calibrated for site st-made by Bob (account sub:bob)"
    on_disk = json.loads(made.with_suffix(".json").read_text())
    with pytest.raises(CardSchemaError, match="site.made_by"):  # validated as the site's record, not stored blind
        validate_card({**on_disk, "site": {**on_disk["site"], "made_by": {"name": 5}}})
    saved = saved_models(saved_state(tmp_path / "run"))  # the go-live report's lines
    assert len(saved) == 1 and saved[0].endswith(", by Bob (account sub:bob).")
    trained = replace(card, training={**card.training, "started_by": ALICE})
    assert maker_words(trained).startswith("Calibrated for site st-made by Bob (account sub:bob); trained on this "
                                           "server by Alice (account sub:alice)")


def test_an_upload_names_its_uploader_and_never_a_trainer_its_card_claims(smoke_model):
    card = read_card(smoke_model)
    upload = replace(card, training={**card.training, "started_by": {"name": "Mallory"}},
                     provenance={"uploaded_by": "Eve", "uploaded_by_id": "sub:eve", "uploaded": "2026-12-07T10:00",
                                 "metrics_verified": False})
    assert maker_words(upload) == "uploaded by Eve (account sub:eve)"  # its card's own trainer is Eve's say
    assert made_here_note(upload) is None


def test_the_card_schema_takes_the_record_and_refuses_a_wrong_one(smoke_model):
    card = json.loads(smoke_model.with_suffix(".json").read_text())
    validate_card({**card, "training": {**card["training"], "started_by": ALICE}})
    with pytest.raises(CardSchemaError, match="started_by"):
        validate_card({**card, "training": {**card["training"], "started_by": {"name": 5}}})


def test_the_words_are_plain_text_however_the_name_reads(smoke_model):
    card: ModelCard = read_card(smoke_model)
    odd = replace(card, training={**card.training, "started_by": {"name": "**x**\n<b>$y$</b>" + "z" * 200}})
    words = maker_words(odd)
    assert "\n" not in words and "z" * 65 not in words  # one line, the name cut to 64 characters
