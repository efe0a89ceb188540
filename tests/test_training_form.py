"""The Model page's training form can train the default's recipe: the dataset plus other labelled sources with a
loss weight, and intensity augmentation. What reaches the training job is checked (the job's thread is replaced by a
recorder: no training runs here), and so are its refusals."""

from __future__ import annotations

import pytest
from test_access_pages import app_as, run_page, signed_in
from test_sources import write_external

from brainclf.serving.jobs import TrainingJobs


@pytest.fixture
def two_sources(tmp_path, monkeypatch, synthetic_dataset):
    """A server offering the synthetic dataset and an external-like folder, and a recorder of started trainings."""
    ext = write_external(tmp_path / "ext-src", cases=4)
    toml = tmp_path / "brainclf.toml"
    toml.write_text(f'[data]\nbrain-mri = "{synthetic_dataset}"\nother-hospital = "{ext}"\n\n'
                    '[roles.researcher]\nemails = ["res@clinic.example"]\n\n'
                    f'[paths]\nmodels = "{tmp_path / "models"}"\nruns = "{tmp_path / "runs"}"\n')
    monkeypatch.setenv("BRAINCLF_SETTINGS", str(toml))
    monkeypatch.setenv("BRAINCLF_AUDIT_DIR", str(tmp_path / "audit"))
    started = []

    def record(self, name, work, owner="", owner_label="", run_dir=None, request=None):
        # Only the thread is replaced: TrainingJobs.start's own checks run before it, as in the app.
        started.append({"config": request["config"], "data": request["data"], "name": name,
                        "extra_data": request["extra_data"]})

    monkeypatch.setattr(TrainingJobs, "start_task", record)
    return synthetic_dataset, ext, started


def _model_page():
    return run_page(app_as(signed_in("researcher")), "model")


def test_a_researcher_trains_on_the_dataset_and_another_source_with_its_weight(two_sources):
    data, ext, started = two_sources
    at = _model_page()
    assert at.multiselect(key="train_extra").options == ["brain-mri", "other-hospital"]
    assert at.checkbox(key="train_intensity").value is True
    at.text_input[0].set_value("two_source_model")
    at.multiselect(key="train_extra").set_value(["other-hospital"])
    at.number_input(key="train_extra_weight").set_value(3.0)
    at.button[[b.label for b in at.button].index("Start training")].click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    [job] = started
    assert job["name"] == "two_source_model" and job["data"] == data
    [source] = job["extra_data"]
    assert (source.name, source.root.resolve(), source.weight) == ("ext-src", ext.resolve(), 3.0)
    assert job["config"].extra_sources == [{"name": "ext-src", "weight": 3.0}]
    assert job["config"].augment_intensity is True


def test_the_dataset_itself_is_not_another_source(two_sources):
    _, _, started = two_sources
    at = _model_page()
    at.multiselect(key="train_extra").set_value(["brain-mri"])
    at.checkbox(key="train_intensity").uncheck()
    at.button[[b.label for b in at.button].index("Start training")].click().run()
    assert not started
    assert any("is the dataset itself" in e.value for e in at.error)


def test_without_other_sources_it_trains_on_the_dataset_alone(two_sources):
    _, _, started = two_sources
    at = _model_page()
    at.checkbox(key="train_intensity").uncheck()
    at.button[[b.label for b in at.button].index("Start training")].click().run()
    [job] = started
    assert job["extra_data"] == () and job["config"].extra_sources == []
    assert job["config"].augment_intensity is False


def test_the_form_sets_early_stopping_patience(two_sources):
    _, _, started = two_sources
    at = _model_page()
    at.text_input[0].set_value("patient_model")
    at.number_input(key="train_patience").set_value(40)
    at.button[[b.label for b in at.button].index("Start training")].click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert started[0]["config"].early_stopping_patience == 40
