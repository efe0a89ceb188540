"""brainclf.serving.warmup: the model process starts loading a model once per file version, handed over once."""

import asyncio
from pathlib import Path

import pytest
from conftest import copy_model

from brainclf.errors import ModelError
from brainclf.inference import ProcessPredictor
from brainclf.model import default_model
from brainclf.serving import warmup


def test_started_model_is_handed_over_once_and_never_warmed_again(smoke_model, tmp_path):
    path = copy_model(smoke_model, tmp_path, "warm")
    assert warmup.start(path) is True
    assert warmup.start(path) is False  # loading already
    predictor = warmup.take(path)
    assert isinstance(predictor, ProcessPredictor)
    assert predictor.wait_ready().card.name == "smoke"
    assert warmup.take(path) is None  # handed over: the caller's cache owns it now
    assert warmup.start(path) is False


def test_nothing_to_take_for_a_model_that_was_not_started(smoke_model, tmp_path):
    assert warmup.take(copy_model(smoke_model, tmp_path, "cold")) is None
    assert warmup.start(None) is False
    assert warmup.start(tmp_path / "missing.keras") is False


def test_a_model_without_a_readable_card_is_not_warmed(tmp_path):
    bad = tmp_path / "broken.keras"
    bad.write_bytes(b"not a model")
    assert warmup.start(bad) is False
    assert warmup.take(bad) is None  # the page then loads it itself and shows the error


def test_a_broken_model_is_reported_when_it_is_first_used(smoke_model, tmp_path):
    bad = copy_model(smoke_model, tmp_path, "broken")
    bad.write_bytes(b"not a model")
    assert warmup.start(bad) is True
    with pytest.raises(ModelError):
        warmup.take(bad).wait_ready()


def test_server_start_hook_warms_the_default_model_of_the_models_folder(smoke_model, tmp_path, monkeypatch):
    models = tmp_path / "models"
    copy_model(smoke_model, models, "other")
    default = copy_model(smoke_model, models, "default")
    assert default_model(models) == default
    monkeypatch.setenv("BRAINCLF_MODELS", str(models))

    async def serve_once():
        async with warmup.warm_default_model(None):
            pass

    asyncio.run(serve_once())
    assert [Path(k[0]).name for k in warmup._warming] == ["default.keras"]  # only the default is warmed
    assert isinstance(warmup.take(default), ProcessPredictor)
    assert warmup._warming == {}  # handed over: nothing left parked
