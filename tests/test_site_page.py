"""The Model page's site section (AppTest): each step's refusals, a validation's figures, and a site model's
scope on the Predict page. The steps run as the app's background job; the test waits for it."""

from __future__ import annotations

import pytest
from conftest import copy_model
from streamlit.testing.v1 import AppTest
from test_access_pages import APP, run_page
from test_app import image_captions, open_page
from test_site import write_site


@pytest.fixture
def site_server(tmp_path, monkeypatch, synthetic_dataset, smoke_model):
    """Local mode with three data folders (the smoke model's dataset first: replay and the Kaggle check), a
    models folder holding only the smoke model, runs and audit in tmp."""
    tiny = write_site(tmp_path / "tiny-site", cases_per_class=3)
    site = write_site(tmp_path / "st-elsewhere")
    toml = tmp_path / "brainclf.toml"
    toml.write_text(f'[data]\nbrain-mri = "{synthetic_dataset}"\ntiny-site = "{tiny}"\nst-elsewhere = "{site}"\n')
    monkeypatch.setenv("BRAINCLF_SETTINGS", str(toml))
    monkeypatch.delenv("BRAINCLF_DATA", raising=False)
    models = tmp_path / "models"
    copy_model(smoke_model, models, "smoke")
    for env, path in (("BRAINCLF_MODELS", models), ("BRAINCLF_RUNS", tmp_path / "runs"),
                      ("BRAINCLF_AUDIT_DIR", tmp_path / "audit")):
        monkeypatch.setenv(env, str(path))
    return models


def model_page() -> AppTest:
    return run_page(AppTest.from_file(APP, default_timeout=180), "model")


def run_step(at: AppTest, step: str) -> AppTest:
    """Click the step's button, wait for the background job, and show the page again."""
    from pages.common import training_jobs

    at.button(key=f"site_{step}").click().run()
    assert not at.exception, [e.value for e in at.exception]
    status = training_jobs().wait(300)
    assert status is not None and not status.active, texts(at)
    return at.run()


def steps_table(at: AppTest):
    return next(t.value for t in at.table if list(t.value.columns)[0] == "Held-out part")


def texts(at: AppTest) -> str:
    return " ".join(str(e.value) for kind in (at.error, at.warning, at.success, at.caption, at.markdown) for e in kind)


def test_a_site_too_small_to_validate_is_refused_saying_what_is_needed(site_server):
    at = model_page()
    at.selectbox(key="site_root").set_value("tiny-site").run()
    assert at.text_input(key="site_name").value == "tiny-site"
    assert at.button(key="site_calibrate").disabled and at.button(key="site_adapt").disabled  # validate first
    at = run_step(at, "validate")
    assert "at least 60 labelled slices" in texts(at) and "18 slices" in texts(at)
    assert "Held-out part, after each step" not in [h.value for h in at.subheader]  # nothing measured


def test_a_bad_site_name_is_refused_before_any_work(site_server):
    at = model_page()
    at.text_input(key="site_name").set_value("[x](http://evil)").run()
    assert any("A site name is" in e.value for e in at.error)
    assert not [b for b in at.button if b.key == "site_validate"]


def test_validate_then_calibrate_show_their_figures_and_the_site_model_states_its_scope(site_server):
    at = model_page()
    at.selectbox(key="site_root").set_value("st-elsewhere").run()
    at = run_step(at, "validate")
    assert list(steps_table(at).columns) == ["Held-out part", "As it came"]
    assert not at.button(key="site_calibrate").disabled
    # A misclassified held-out slice, with the Grad-CAM of the class the model gave it.
    wrong = at.selectbox(key="site_wrong")
    wrong.set_value(wrong.options[0]).run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("Grad-CAM of" in c for c in image_captions(at))
    at.checkbox(key="site_bound").check().run()  # the site's promise asks its 95 % lower bound
    at = run_step(at, "calibrate")
    assert list(steps_table(at).columns) == ["Held-out part", "As it came", "Site calibration"]
    assert (site_server / "st-elsewhere-smoke.keras").is_file()
    said = texts(at).replace("\\", "")  # the page escapes markdown in what it quotes
    assert "Calibrate: Refer rule fitted on the adaptation part" in said
    assert "(the rule asked that bound to reach the target)" in said
    assert "Site calibration: saved as st-elsewhere-smoke, version " in said  # which model the column is
    assert "selectable in the sidebar" in texts(at)
    # The site profile, picked in the sidebar, says on the Predict page where it was validated.
    predict = open_page("pages/predict.py")
    predict.selectbox(key="model_path").set_value(str(site_server / "st-elsewhere-smoke.keras")).run()
    assert not predict.exception, [e.value for e in predict.exception]
    assert "Validated at st-elsewhere:" in texts(predict).replace("\\", "")
    # An admin removes the site model: its misclassified slices say so instead of failing.
    (site_server / "st-elsewhere-smoke.keras").unlink()
    wrong = at.selectbox(key="site_wrong")
    wrong.set_value(wrong.options[-1]).run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("st-elsewhere-smoke.keras is no longer installed" in e.value.replace("\\", "") for e in at.error)


def test_a_validation_that_failed_leaves_the_section_usable(site_server):
    from pages.common.session import training_jobs

    # A manifest without a sequence column fails the validate step after the run was opened.
    (site_server.parent / "st-elsewhere" / "manifest.csv").write_text("file,class\n")
    try:
        at = model_page()
        at.selectbox(key="site_root").set_value("st-elsewhere").run()
        at = run_step(at, "validate")
        assert not at.exception, [e.value for e in at.exception]
        assert "manifest" in texts(at).lower()
        assert "Held-out part, after each step" not in [h.value for h in at.subheader]
        at.run()  # and every later render
        assert not at.exception, [e.value for e in at.exception]
    finally:  # the failed job is process-wide: a later test file's Model page would show its error
        training_jobs.clear()


def test_a_kept_site_run_is_deleted_after_a_yes_and_its_site_name_may_then_take_another_folder(site_server):
    at = model_page()
    at.selectbox(key="site_root").set_value("st-elsewhere").run()
    at = run_step(at, "validate")
    assert any(e.label.startswith("Your site runs (1,") for e in at.expander)
    at.selectbox(key="site_root").set_value("tiny-site").run()
    at.text_input(key="site_name").set_value("st-elsewhere").run()  # the run's name, on another folder
    assert "was run on another folder" in texts(at) and "delete that run under Your site runs" in texts(at)
    assert at.button(key="site_kept_delete").disabled  # not without a yes
    at.checkbox(key="site_kept_sure_st-elsewhere/smoke").check().run()
    at.button(key="site_kept_delete").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert not list((site_server.parent / "runs" / "site").rglob("site.json"))
    assert "was run on another folder" not in texts(at)
    assert not any(e.label.startswith("Your site runs") for e in at.expander)
    assert at.button(key="site_validate")  # the name is free for this folder now
