"""The Predict page enforces the upload limits before reading a file, and states the model's scope."""

from __future__ import annotations

from test_app import open_page

from brainclf.input import MAX_UPLOAD_FILE_MB, MAX_UPLOAD_FILES, limits
from brainclf.presentation import pct


def test_too_many_files_in_one_upload_are_refused_with_a_clear_message(png_bytes, make_image):
    data = png_bytes(make_image())
    files = [(f"slice{i}.png", data, "image/png") for i in range(MAX_UPLOAD_FILES + 1)]
    at = open_page("pages/predict.py")
    at.file_uploader[0].set_value(files).run()
    assert not at.exception
    assert any(f"at most {MAX_UPLOAD_FILES}" in e.value for e in at.error)
    assert not [m for m in at.markdown if m.value.startswith("####")]  # nothing was analysed


def test_predict_page_states_the_validated_scope():
    at = open_page("pages/predict.py")
    assert any("Validated scope of" in c.value for c in at.caption)


def test_the_model_picker_says_which_sources_each_model_learnt_from():
    at = open_page("pages/home.py")
    labels = {label.split(" ")[0]: label for label in at.selectbox(key="model_path").options}
    assert "Kaggle only" in labels["seed"] and "other source" in labels["seed"]


def test_home_leads_with_sensitivity_and_specificity_tumour_vs_no_tumour():
    at = open_page("pages/home.py")
    assert not at.exception
    tables = [t.value for t in at.table if t.value.index.name == "finding"]
    assert tables and tables[0].index[0] == "Any tumour (vs no tumour)"
    # The bundled default is a refit: its external rates are its split run's, and the column says so.
    assert "sensitivity (external, split run default\\_split)" in tables[0].columns  # Markdown-escaped header
    assert any("Licence" in w.value for w in at.warning)  # trained partly on CC BY-NC-SA images


def test_home_accuracy_follows_the_sidebar_tta_toggle():
    from pathlib import Path

    from brainclf.model import read_card

    default = Path(__file__).resolve().parent.parent / "models" / "default.keras"
    card = read_card(default)
    at = open_page("pages/home.py")
    for on in (False, True):
        at.toggle(key=f"tta::{default.stem}").set_value(on).run()
        assert not at.exception
        assert at.metric[1].value == pct(card.test_metrics(tta=on)["accuracy"])  # second: in-distribution


def test_uploaders_pass_the_per_file_limit_to_the_browser():
    """The widget states the limit itself, whatever server.maxUploadSize says (a deployment's own config)."""
    from streamlit import config

    before = config.get_option("server.maxUploadSize")
    config.set_option("server.maxUploadSize", 200)
    try:
        at = open_page("pages/predict.py")
    finally:
        config.set_option("server.maxUploadSize", before)
    assert at.file_uploader[0].proto.max_upload_size_mb == MAX_UPLOAD_FILE_MB == 50


def test_a_session_over_its_byte_budget_is_refused_before_any_file_is_read(png_bytes, make_image, monkeypatch):
    """Issue #25: the session rule must look at each UploadedFile.size, never at its bytes, before refusing."""
    from streamlit.runtime.uploaded_file_manager import UploadedFile

    data = png_bytes(make_image())
    monkeypatch.setattr(limits, "MAX_SESSION_UPLOAD_BYTES", 3 * len(data) // 2)  # one file fits, two do not
    read = []
    for method in ("getvalue", "read", "getbuffer"):
        monkeypatch.setattr(UploadedFile, method, lambda self, *a, _m=method: read.append(_m) or b"")
    at = open_page("pages/predict.py")
    at.file_uploader[0].set_value([("a.png", data, "image/png"), ("b.png", data, "image/png")]).run()
    assert not at.exception
    assert any("above the limit of" in e.value and "a session" in e.value for e in at.error)
    assert read == []  # neither file was copied


def test_results_over_the_session_budget_are_refused_with_a_message_until_a_study_is_removed(
        png_bytes, make_image, monkeypatch):
    """A session's results (model input + Grad-CAM, 200 KiB a 160 px slice) are bounded in bytes, not by what was
    uploaded: what does not fit is said, and what is shown stays."""
    from test_app import md_plain

    monkeypatch.setattr(limits, "MAX_SESSION_RESULT_BYTES", 350 * 1024)  # one slice's results, not two
    a, b = (png_bytes(make_image(c, seed=i)) for i, c in enumerate(["glioma", "meningioma"]))
    at = open_page("pages/predict.py")
    at.file_uploader[0].set_value([("a.png", a, "image/png"), ("b.png", b, "image/png")]).run()
    assert not at.exception, [e.value for e in at.exception]
    book = at.session_state["case_book"]
    first, second = at.session_state["shown_cases"]
    assert sum(m.value.startswith(f"#### Case {first[:12]}") for m in at.markdown) == 1
    assert not any(m.value.startswith(f"#### Case {second[:12]}") for m in at.markdown)
    warning = md_plain(" ".join(w.value for w in at.warning))
    assert f"Not analysed: 1 slice ({second[:12]})." in warning
    assert "at most 1 slice with this model (350 KB)" in warning and "Remove a study from the upload box" in warning
    assert book.result_bytes() <= 350 * 1024
    at.file_uploader[0].set_value([("b.png", b, "image/png")]).run()  # the user removes a.png
    assert not at.exception, [e.value for e in at.exception]
    assert not any("Not analysed" in w.value for w in at.warning)
    assert any(m.value.startswith(f"#### Case {second[:12]}") for m in at.markdown)
    assert book.result_bytes() <= 350 * 1024
    history = at.dataframe[0].value.set_index("case")
    assert history.loc[first[:12], "prediction"] and history.loc[first[:12], "status"] != "not analysed"


def test_a_session_goes_through_study_after_study_with_one_box_at_a_time(png_bytes, make_image, monkeypatch):
    """Only what the upload box holds counts towards the session's bytes: a clinician working through studies
    one at a time is never told to reload (which would lose the session's cases)."""
    a, b = (png_bytes(make_image(c, seed=i)) for i, c in enumerate(["glioma", "meningioma"]))
    monkeypatch.setattr(limits, "MAX_SESSION_UPLOAD_BYTES", 3 * max(len(a), len(b)) // 2)  # one file at a time
    at = open_page("pages/predict.py")
    at.file_uploader[0].set_value([("a.png", a, "image/png")]).run()
    at.file_uploader[0].set_value([("b.png", b, "image/png")]).run()
    assert not at.exception, [e.value for e in at.exception]
    assert not any("above the limit of" in e.value for e in at.error)
    book = at.session_state["case_book"]
    assert [c.name for c in book.cases()] == ["b.png"]  # the older study gave way to the session's byte bound
    assert at.session_state["shown_cases"] == [book.cases()[0].digest]
