"""The Evaluation page's external-validation section (AppTest on the bundled models)."""

from __future__ import annotations

from test_app import open_page
from test_sources import write_external


def test_card_external_validation_is_shown_beside_testing():
    at = open_page("pages/evaluation.py")
    assert not at.exception, [e.value for e in at.exception]
    assert "External validation" in [s.value for s in at.subheader]
    labels = [m.label for m in at.metric]
    assert "Tumours called 'no tumour'" in labels and "…not referred or flagged" in labels
    assert any("in-distribution" in c.value for c in at.caption)


def _re_evaluate(choice: str):
    at = open_page("pages/evaluation.py")
    at.radio(key="eval_source").set_value("Re-evaluate on a folder").run()
    at.selectbox(key="eval_folder").set_value(choice).run()
    at.button(key="eval_run").click().run()
    return at


def test_re_evaluating_a_folder_without_pituitary_shows_its_sequences(tmp_path, monkeypatch):
    folder = write_external(tmp_path / "other-hospital", cases=3)
    monkeypatch.setenv("BRAINCLF_DATA", str(folder))  # a folder is picked by name among the server's datasets
    at = _re_evaluate("other-hospital")
    assert not at.exception, [e.value for e in at.exception]  # used to crash: pituitary has no interval
    text = " ".join(m.value for m in at.markdown)
    assert "other-hospital (just evaluated)" in text
    assert "not among the model's training sources" in text
    seq_tables = [d.value for d in at.dataframe if "sequence" in d.value.columns]
    assert seq_tables and set(seq_tables[0]["sequence"]) == {"T1", "T2"}


def test_a_manifest_naming_a_path_outside_its_folder_is_refused_without_a_server_path(tmp_path, monkeypatch):
    folder = write_external(tmp_path / "other-hospital", cases=2)
    (folder / "manifest.csv").write_text("file,sequence\n../../etc/passwd,T1\n")
    monkeypatch.setenv("BRAINCLF_DATA", str(folder))
    at = _re_evaluate("other-hospital")
    assert not at.exception
    errors = " ".join(e.value for e in at.error)
    assert "may only name files inside its folder" in errors and str(tmp_path) not in errors
    assert not [m for m in at.metric if m.label == "Accuracy"]  # nothing was evaluated


def test_evaluation_errors_name_the_dataset_not_the_server_path(tmp_path, monkeypatch):
    """Errors from brainclf.data name the folder by its absolute path: the page shows the dataset's name."""
    empty = tmp_path / "empty-hospital"
    (empty / "glioma").mkdir(parents=True)
    monkeypatch.setenv("BRAINCLF_DATA", str(empty))
    at = _re_evaluate("empty-hospital")
    assert not at.exception
    (error,) = [e.value for e in at.error]
    assert "No JPEG/PNG images found in empty-hospital" in error and str(tmp_path) not in error
