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


def test_re_evaluating_a_folder_without_pituitary_shows_its_sequences(tmp_path):
    folder = write_external(tmp_path / "other-hospital", cases=3)
    at = open_page("pages/evaluation.py")
    at.radio(key="eval_source").set_value("Re-evaluate on a folder").run()
    at.text_input(key="eval_folder").set_value(str(folder)).run()
    at.button(key="eval_run").click().run()
    assert not at.exception, [e.value for e in at.exception]  # used to crash: pituitary has no interval
    text = " ".join(m.value for m in at.markdown)
    assert "other-hospital (just evaluated)" in text
    assert "not among the model's training sources" in text
    seq_tables = [d.value for d in at.dataframe if "sequence" in d.value.columns]
    assert seq_tables and set(seq_tables[0]["sequence"]) == {"T1", "T2"}
