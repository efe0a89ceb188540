"""The Evaluation page (AppTest on the bundled models): external validation, the feature map that stays, titled
figures, numbers in words, the model comparison."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from conftest import synthetic_image
from test_app import REPO, md_plain, open_page, split_run_external
from test_sources import write_external

from brainclf.presentation import chart_title, count, pct


def test_card_external_validation_is_shown_beside_testing():
    at = open_page("pages/home.py")  # the model picker lives on Home
    at.selectbox(key="model_path").set_value(str(REPO / "models" / "default_split.keras")).run()
    at.switch_page("pages/evaluation.py")
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert "External validation" in [s.value for s in at.subheader]
    measures = [m for t in at.table if "measure" in t.value.columns for m in t.value["measure"]]
    assert "Tumours called 'no tumour'" in measures and "…not referred or flagged" in measures
    assert any("in-distribution" in c.value for c in at.caption)


def test_the_refit_default_points_to_the_split_run_that_measured_its_recipe():
    at = open_page("pages/evaluation.py")
    assert not at.exception, [e.value for e in at.exception]
    notes = [md_plain(i.value) for i in at.info]
    ext = split_run_external()  # the figure the split run's card recorded
    figure = f"{pct(ext['accuracy'])} right on {count(ext['n'])} slices of external-radiopaedia"
    assert any("refit on its recipe's external held-out cases" in n and "split run default_split" in n
               and figure in n for n in notes), notes


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
    text = md_plain(" ".join(m.value for m in at.markdown))
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
    assert not at.table  # nothing was evaluated: no headline


def test_evaluation_errors_name_the_dataset_not_the_server_path(tmp_path, monkeypatch):
    """Errors from brainclf.data.datasets name the folder by its absolute path: the page shows the dataset's name."""
    empty = tmp_path / "empty-hospital"
    (empty / "glioma").mkdir(parents=True)
    monkeypatch.setenv("BRAINCLF_DATA", str(empty))
    at = _re_evaluate("empty-hospital")
    assert not at.exception
    (error,) = [md_plain(e.value) for e in at.error]
    assert "No JPEG/PNG images found in empty-hospital" in error and str(tmp_path) not in error


def _figures(at) -> list[dict]:
    return [json.loads(c.proto.spec) for c in at.get("plotly_chart")]


def _titles(at) -> list[str]:
    return [(f.get("layout", {}).get("title") or {}).get("text") for f in _figures(at)]


@pytest.fixture
def small_dataset(tmp_path, monkeypatch):
    """Six of the default card's glioma/meningioma test images (synthetic stand-ins at the card's paths) as the
    server's dataset: the feature map has something to map in seconds."""
    card = json.loads((REPO / "models" / "default.json").read_text())
    rng = np.random.default_rng(0)
    root = tmp_path / "mini-mri"
    for cls in ("glioma", "meningioma"):
        for r in [r for r in card["test_predictions"] if r["true"] == cls][:3]:
            (root / r["path"]).parent.mkdir(parents=True, exist_ok=True)
            synthetic_image(cls, rng).save(root / r["path"])
    monkeypatch.setenv("BRAINCLF_DATA", str(root))
    return root


def test_the_feature_map_stays_until_the_model_mode_changes(small_dataset):
    """It used to vanish at the next interaction: it was drawn only in the run where its button was pressed."""
    def mapped(at) -> bool:
        return any((t or "").startswith("Penultimate-layer features") for t in _titles(at))

    at = open_page("pages/evaluation.py")
    assert not mapped(at)
    at.button(key="fmap").click().run()
    assert not at.exception and mapped(at)
    assert chart_title("Penultimate-layer features (PCA)",
                       "6 glioma and meningioma images, the test split (in-distribution)") in _titles(at)
    at.toggle(key="cm_norm").set_value(True).run()  # another widget: the map stays
    assert not at.exception and mapped(at)
    at.selectbox(key="cell_true").set_value("pituitary").run()
    assert mapped(at)
    from brainclf.model import read_card

    # The other TTA mode shows other predictions: the map drawn for the first is not shown for them.
    at.session_state["tta::default"] = not read_card(REPO / "models" / "default.keras").tta_default
    at.run()
    assert not at.exception and not mapped(at)


def test_every_figure_has_a_title_saying_on_which_data():
    at = open_page("pages/evaluation.py")
    titles = _titles(at)
    assert len(titles) >= 10 and all(titles), titles
    for name in ("Confusion matrix", "ROC (one-vs-rest)", "Precision-recall", "Calibration", "Coverage vs accuracy"):
        assert chart_title(name, "the test split (in-distribution), 1,025 images") in titles, name  # on which data
    # The headline names the dataset and says the figures are in-distribution (not the product's accuracy).
    assert md_plain(at.caption[0].value).startswith(
        "1,025 images from the test split of brain-tumor-mri recorded in the default card (in-distribution)")
    calibration = next(f for f in _figures(at) if f["layout"]["title"]["text"].startswith("Calibration<br>"))
    counts = next(t for t in calibration["data"] if t.get("name") == "images per bin")
    assert sum(counts["y"]) == 1025  # every test image sits in one bin


def test_numbers_read_in_words_and_one_percent_format():
    at = open_page("pages/evaluation.py")
    texts = [m.value for m in at.markdown] + [c.value for c in at.caption] + [i.value for i in at.info]
    texts += [t.value.to_string() for t in at.table] + [d.value.to_string() for d in at.dataframe]
    text = " ".join(texts)
    assert not re.search(r"\b1 images\b", text)
    assert not re.search(r"\d%", text), re.findall(r".{30}\d%", text)[:3]  # wording.pct: '93.1 %'
    words = " ".join(w for w in text.split() if "/" not in w)  # file paths name their folders
    assert not re.search(r"\b(p_)?notumor\b|out_of_distribution", words)
    assert "1,025 images" in text  # thousands separators


def test_comparing_two_models_gives_the_difference_its_interval_and_mcnemar():
    at = open_page("pages/evaluation.py")
    other = at.selectbox(key="compare").value.stem
    (sentence,) = [md_plain(m.value) for m in at.markdown if "both were tested on" in m.value]
    assert "On the 1,025 images both were tested on" in sentence and f"**{other} " in sentence
    assert re.search(r"difference \*\*[+−]\d+\.\d points\*\* \(95 % paired bootstrap interval [+−]\d+\.\d points "
                     r"to [+−]\d+\.\d points, resampling [\d,]+ images\)", sentence), sentence
    assert re.search(r"McNemar's exact test: p [<=] 0\.\d+", sentence)


def test_a_third_evaluation_at_once_is_refused_with_a_message_and_the_slots_come_back(tmp_path, monkeypatch):
    """Evaluations run inside pages and share the model process with every clinician's predictions: two at once."""
    from pages.common.session import page_work

    folder = write_external(tmp_path / "other-hospital", cases=2)
    monkeypatch.setenv("BRAINCLF_DATA", str(folder))
    slots = page_work()
    with slots.hold("one"), slots.hold("two"):
        at = _re_evaluate("other-hospital")
        assert not at.exception
        assert "2 evaluations are already running on this server" in " ".join(e.value for e in at.error)
        assert not at.table  # nothing was evaluated
    with pytest.raises(RuntimeError), slots.hold("three"):
        raise RuntimeError("an evaluation that failed")
    with slots.hold("four"), slots.hold("five"):  # both slots were given back, the failed one's too
        pass


def test_re_evaluated_figures_keep_the_tta_they_were_measured_with_when_the_sidebar_switches(tmp_path, monkeypatch):
    from brainclf.model import read_card

    folder = write_external(tmp_path / "other-hospital", cases=3)
    monkeypatch.setenv("BRAINCLF_DATA", str(folder))
    measured = read_card(REPO / "models" / "default.keras").tta_default  # the sidebar starts as the card says
    at = _re_evaluate("other-hospital")
    at.session_state["tta::default"] = not measured  # the sidebar's toggle switched after the evaluation
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert any(f"measured with flip TTA {'on' if measured else 'off'}" in i.value for i in at.info)
    caption = md_plain(at.caption[0].value)
    assert caption.startswith("27 images from other-hospital") and ("(flip TTA on)" in caption) is measured



def test_an_evaluation_kept_in_another_form_asks_for_a_new_one(tmp_path, monkeypatch):
    """A session holding a folder result in a form this page no longer writes (a tuple, as before) is asked to
    evaluate again, not crashed."""
    folder = write_external(tmp_path / "other-hospital", cases=3)
    monkeypatch.setenv("BRAINCLF_DATA", str(folder))
    at = _re_evaluate("other-hospital")
    kept = at.session_state["eval_result"]
    assert md_plain(at.caption[0].value).startswith("27 images from other-hospital")
    at.session_state["eval_result"] = tuple(kept.values())[:5]
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("Choose a folder and press Evaluate" in i.value for i in at.info)


def test_each_direction_of_the_glioma_meningioma_confusion_has_its_own_pages(small_dataset):
    """One gallery of both directions cut at 8 hid the other direction whenever the first had 8 or more."""
    card = json.loads((REPO / "models" / "default.json").read_text())
    rows = card["test_predictions_tta" if card.get("tta_default") else "test_predictions"]
    g_m = sum(r["true"] == "glioma" and r["pred"] == "meningioma" for r in rows)
    assert g_m > 8  # the card has more than one page of them: the picker is there
    at = open_page("pages/evaluation.py")
    assert not at.exception
    assert any(m.value == f"**Glioma called meningioma: {g_m} images**" for m in at.markdown)
    picker = at.number_input(key="gm_g_m_page")
    assert picker.max == -(-g_m // 8)
    picker.set_value(2).run()
    assert not at.exception
    assert f"Images 9–{min(g_m, 16)} of {g_m}." in [c.value for c in at.caption]


def test_the_view_a_researcher_left_is_there_when_they_come_back(tmp_path, monkeypatch):
    """Streamlit drops a widget's value on a run that does not draw it: back from Home, the page had gone back
    to the card's results and the first folder."""
    folder = write_external(tmp_path / "other-hospital", cases=3)
    monkeypatch.setenv("BRAINCLF_DATA", str(folder))
    at = open_page("pages/evaluation.py")
    at.radio(key="eval_source").set_value("Re-evaluate on a folder").run()
    assert not at.exception
    at.switch_page("pages/home.py").run()
    assert "eval_source" not in at.session_state  # what Streamlit does to a widget no run drew
    at.switch_page("pages/evaluation.py").run()
    assert not at.exception
    assert at.radio(key="eval_source").value == "Re-evaluate on a folder"


def test_glioma_and_meningioma_can_be_explored_on_another_sources_slices(tmp_path, monkeypatch):
    """Where the two are confused most is another source: kaggle_only calls external gliomas meningioma and
    meningiomas glioma by the dozen, which the section, reading the test split only, never showed. (kaggle_only
    alone in a models folder: AppTest runs a switched-to page without the sidebar's picker.)"""
    import shutil

    from brainclf.model import read_card

    for suffix in (".keras", ".json"):
        shutil.copy(REPO / "models" / f"kaggle_only{suffix}", tmp_path / f"kaggle_only{suffix}")
    monkeypatch.setenv("BRAINCLF_MODELS", str(tmp_path))
    rows = read_card(tmp_path / "kaggle_only.keras").external_predictions["external-radiopaedia"]
    m_g = sum(r["true"] == "meningioma" and r["pred"] == "glioma" for r in rows)
    at = open_page("pages/evaluation.py")
    assert not at.exception
    pick = at.radio(key="gm_source")
    assert [md_plain(o) for o in pick.options] == ["the test split (in-distribution)",
                                                   "external-radiopaedia (another source)"]  # card names: literal
    pick.set_value("external-radiopaedia (another source)").run()
    assert not at.exception
    assert any(m.value == f"**Meningioma called glioma: {m_g} images**" for m in at.markdown)
