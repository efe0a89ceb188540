"""The adapt step's guards: images that would not fit in memory are refused before decoding, and a resume never
mixes epochs that learnt from other images."""

from __future__ import annotations

import pytest
from test_site import write_site

from brainclf.errors import ConfigError
from brainclf.site import AdaptConfig, split_site


@pytest.fixture(scope="module")
def site_parts(tmp_path_factory):
    return split_site(write_site(tmp_path_factory.mktemp("site") / "st-guard"), "st-guard").parts


def _fine_tune(smoke_model, tune, calibration, replay, run_dir, **kw):
    from brainclf.model import load_model
    from brainclf.site.adapt import fine_tune

    model, card = load_model(smoke_model)
    return fine_tune(model, tune, calibration, replay, card.contract, AdaptConfig(epochs=1, batch_size=16), run_dir,
                     **kw)


def test_images_beyond_what_a_job_may_hold_are_refused_before_any_is_read(site_parts, smoke_model, tmp_path,
                                                                         monkeypatch):
    from brainclf.site import adapt
    from brainclf.training import prepare

    monkeypatch.setattr(prepare, "physical_memory", lambda: 2**20)  # a 1 MiB machine
    monkeypatch.setattr(adapt, "load_arrays", lambda *a, **k: pytest.fail("an image was decoded"))
    with pytest.raises(ConfigError, match=r"would hold about .* GiB in memory"):
        _fine_tune(smoke_model, site_parts["tune"], site_parts["calibration"], [], tmp_path / "adapt")
    assert not (tmp_path / "adapt").exists()


def test_saved_epochs_that_learnt_from_other_images_are_not_resumed(site_parts, smoke_model, synthetic_dataset,
                                                                   tmp_path):
    from brainclf.model import read_card
    from brainclf.site.own_data import replay_samples

    replay = replay_samples(read_card(smoke_model), synthetic_dataset)
    tune, calibration = site_parts["tune"], site_parts["calibration"]
    _, first = _fine_tune(smoke_model, tune, calibration, replay, tmp_path / "adapt")
    assert first.epoch == 1 and first.data
    said = []
    _, again = _fine_tune(smoke_model, tune, calibration, replay[:-1], tmp_path / "adapt",
                          progress=lambda p: said.append(p.message))
    assert again.epoch == 1 and again.data != first.data
    assert any("afresh: its 1 saved epochs learnt from other images" in m for m in said)
    said.clear()
    _, same = _fine_tune(smoke_model, tune, calibration, replay[:-1], tmp_path / "adapt",
                         progress=lambda p: said.append(p.message))
    assert same.epoch == 1 and same.data == again.data and not any("afresh" in m for m in said)
