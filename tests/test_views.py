"""brainclf.presentation.views: what the Evaluation page lays out, in words and short numbers, and the cached
galleries."""

from __future__ import annotations

import json
import re
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from brainclf import CLASS_NAMES
from brainclf.evaluation import report_from_rows
from brainclf.input import InputContract
from brainclf.presentation import OVERLAYS, gallery, probability_text
from brainclf.presentation.views import (
    cell_heading,
    clean_view,
    clicked_cell,
    comparison,
    count,
    external_view,
    glioma_meningioma,
    headline_rows,
    per_class_rows,
)


def _row(path, true, pred, conf=0.9, clean=True):
    probs = [(1 - conf) / 3] * 4
    probs[CLASS_NAMES.index(pred)] = conf
    return {"path": path, "true": true, "pred": pred, "probs": probs, "clean": clean}


@pytest.fixture
def rows():
    out = [_row(f"Testing/{c}/{c}{i}.png", c, c, 0.95, clean=i != 0) for c in CLASS_NAMES for i in range(3)]
    out += [_row("Testing/glioma/g9.png", "glioma", "meningioma", 0.7),
            _row("Testing/meningioma/m9.png", "meningioma", "glioma", 0.8),
            _row("Testing/meningioma/m8.png", "meningioma", "glioma", 0.6)]
    return out


def test_counts_read_as_words():
    assert count(1) == "1 image" and count(0) == "0 images" and count(1234) == "1,234 images"
    assert count(1, "case group") == "1 case group" and count(3, "case group") == "3 case groups"


@pytest.mark.parametrize("event,expected", [
    # What st.plotly_chart(on_select="rerun") returns after a click on the markers layer (customdata).
    ({"selection": {"points": [{"curve_number": 1, "point_index": 6, "x": "No tumour", "y": "Meningioma",
                                "customdata": ["meningioma", "notumor"]}], "box": [], "lasso": []}},
     ("meningioma", "notumor")),
    # Without customdata (an older figure): the axis labels name the cell.
    ({"selection": {"points": [{"x": "Glioma", "y": "Pituitary"}]}}, ("pituitary", "glioma")),
    # An attribute-style event object, as Streamlit also returns.
    (SimpleNamespace(selection=SimpleNamespace(points=[{"customdata": ["glioma", "glioma"]}])), ("glioma", "glioma")),
    ({"selection": {"points": []}}, None),
    (None, None),
    ({}, None),
    ({"selection": {"points": [{"x": 0.3, "y": "nonsense", "customdata": ["x", "y"]}]}}, None),
])
def test_clicked_cell_from_a_plotly_event(event, expected):
    assert clicked_cell(event) == expected


def test_cell_heading_and_glioma_meningioma_counts(rows):
    assert cell_heading(rows, "meningioma", "glioma") == "True Meningioma, predicted Glioma: 2 images"
    assert cell_heading(rows, "glioma", "meningioma") == "True Glioma, predicted Meningioma: 1 image"
    assert cell_heading(rows, "notumor", "glioma") == "True No tumour, predicted Glioma: 0 images"
    gm = glioma_meningioma(rows)
    (m_g_heading, m_g), (g_m_heading, g_m) = gm["directions"]  # each direction its own gallery
    assert (m_g_heading, g_m_heading) == ("Meningioma called glioma: 2 images", "Glioma called meningioma: 1 image")
    assert {(r["true"], r["pred"]) for r in m_g} == {("meningioma", "glioma")} and len(m_g) == 2
    assert [(r["true"], r["pred"]) for r in g_m] == [("glioma", "meningioma")]
    assert gm["sentence"].startswith("3 images confused") and "2 meningioma → glioma, 1 glioma → meningioma" in \
        gm["sentence"]


def test_headline_and_tables_use_one_probability_format_and_class_names(rows):
    report = report_from_rows(rows)
    head = {r["measure"]: r for r in headline_rows(report)}
    assert head["Accuracy"]["value"] == "80.0\u00a0%"  # 12 of 15
    lo, hi = report["bootstrap"]["accuracy"]
    assert head["Accuracy"]["95 % interval (images as units)"] == f"{100 * lo:.1f}\u00a0% – {100 * hi:.1f}\u00a0%"
    assert head["Errors"]["value"] == "3 of 15"
    classes = per_class_rows(report)
    assert [r["class"] for r in classes] == ["Glioma", "Meningioma", "No tumour", "Pituitary"]
    assert classes[1]["recall (sensitivity)"] == "60.0\u00a0%" and classes[1]["images"] == "5"
    clean = clean_view(report)
    assert "4 of these 15 images have an exact or near duplicate" in clean["sentence"]
    assert "**clean subset** of 11 images" in clean["sentence"] and "**72.7\u00a0%**" in clean["sentence"]
    assert [r["class"] for r in clean["rows"]] == ["Glioma", "Meningioma", "No tumour", "Pituitary"]
    for r in rows:
        r.pop("clean")
    assert clean_view(report_from_rows(rows)) is None
    text = json.dumps([headline_rows(report), classes, clean], ensure_ascii=False)
    assert "notumor" not in text and not re.search(r"\d%", text)  # no '93.1%' style left


def test_external_view_in_words():
    ext = {"n": 1, "accuracy": 0.5, "membership": "held-out case groups", "case_grouping_bits": 25,
           "called_notumor_rate": None,
           "called_notumor": 0, "tumour_images": 1, "coverage": 1.0, "accepted_accuracy": 0.5,
           "intervals": {"accuracy": [0.25, 0.75], "groups": 1},
           "by_sequence": {"T1": {"n": 1234, "accuracy": 0.91234, "coverage": 0.75, "called_notumor_rate": 0.1}}}
    view = external_view("other", ext)
    rows = {r["measure"]: r for r in view["rows"]}
    assert rows["Accuracy"]["detail"] == "95 % interval 25.0\u00a0% – 75.0\u00a0% (over 1 case group)"
    assert rows["Tumours called 'no tumour'"]["value"] == "—"
    assert rows["Tumours called 'no tumour'"]["detail"] == "0 of 1 tumour image"
    (seq,) = view["sequences"]
    assert seq["images"] == "1,234" and seq["accuracy"] == "91.2\u00a0%" and seq["referred or flagged"] == "25.0\u00a0%"
    assert seq["…and not referred or flagged"] == "—" and view["core"] is None


def test_comparison_table_and_paired_sentence(rows):
    other = [dict(r, pred=r["true"], probs=[0.97 if c == r["true"] else 0.01 for c in CLASS_NAMES]) for r in rows]
    cmp = comparison("a", report_from_rows(rows), 1200, rows, "b", report_from_rows(other), None, other)
    table = {r["measure"]: r for r in cmp["table"]}
    assert table["accuracy"]["a"] == "80.0\u00a0%" and table["accuracy"]["b"] == "100.0\u00a0%"
    assert table["parameters"]["a"] == "1,200" and table["parameters"]["b"] == "—"
    assert "recall No tumour" in table
    assert cmp["paired"]["difference"] == pytest.approx(-0.2)
    s = cmp["sentence"]
    assert "On the 15 images both were tested on" in s and "difference **−20.0 points**" in s
    assert "p = 0.25" in s  # 0 vs 3 discordant: 2 / 8
    assert "0 images only a got right, 3 images only b" in s
    none = comparison("a", report_from_rows(rows), 1, rows, "b", report_from_rows(other), 1,
                      [dict(r, path="elsewhere/" + r["path"]) for r in other])
    assert none["sentence"] == "The two models share no test images to compare."


def test_probability_text_lists_likely_classes_first():
    text = probability_text([0.15, 0.8, 0.005, 0.045])
    assert text == "Meningioma 80.0\u00a0%, Glioma 15.0\u00a0%, Pituitary 4.5\u00a0%"  # '%' stays with its number


class _FakePredictor:
    """Counts Grad-CAM computations; a heat map that depends on the class asked for."""

    def __init__(self, version="v1"):
        self.card = SimpleNamespace(label=f"fake {version}", file_sha256="abc", input_contract={"size": 16})
        self.contract = InputContract(size=16, channels=1)
        self.calls = 0

    def gradcam(self, x, class_index):
        self.calls += 1
        return np.full(x.shape[:2], class_index / 4, np.float32)


def test_gallery_overlays_are_cached_by_model_version_and_image_content(tmp_path):
    root = tmp_path / "data"
    (root / "Testing" / "glioma").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 255, (24, 24), dtype=np.uint8)).save(root / "Testing" / "glioma" / f"{i}.png")
    rows = [_row(f"Testing/glioma/{i}.png", "glioma", "meningioma") for i in range(3)]
    rows.append(_row("Testing/glioma/missing.png", "glioma", "meningioma"))
    fake = _FakePredictor()
    first = gallery(fake, rows, root, allowed=[root], limit=3)
    assert fake.calls == 3 and len(first.items) == 3 and first.more == "Images 1–3 of 4."
    assert first.items[0].image.shape == (16, 16, 3) and first.items[0].image.dtype == np.uint8
    assert first.items[0].caption.startswith("0.png: Meningioma 90.0\u00a0%")
    last_page = gallery(fake, rows, root, allowed=[root], limit=3, start=3)
    assert [i.caption for i in last_page.items] == ["missing.png: not found in the dataset"]
    assert last_page.more == "Image 4 of 4."
    again = gallery(fake, rows, root, allowed=[root], limit=3)  # a rerun of the page
    assert fake.calls == 3
    assert all(np.array_equal(a.image, b.image) for a, b in zip(first.items, again.items))
    (root / "Testing" / "glioma" / "0.png").write_bytes((root / "Testing" / "glioma" / "1.png").read_bytes())
    gallery(fake, rows, root, allowed=[root], limit=3)  # a changed file is recomputed (the copy shares 1's key)
    assert fake.calls == 3
    new_version = _FakePredictor("v2")
    gallery(new_version, rows, root, allowed=[root], limit=3)
    assert new_version.calls == 2  # another model version: recomputed (0.png and 1.png now have equal content)
    shown = gallery(fake, rows[3:], root, allowed=[root])
    assert shown.items[0].image is None and shown.items[0].caption == "missing.png: not found in the dataset"
    assert OVERLAYS.size >= 100


def test_a_gallery_image_the_model_cannot_explain_just_now_keeps_its_caption(tmp_path):
    from brainclf.errors import ModelError

    class _Stopped(_FakePredictor):
        def gradcam(self, x, class_index=None):
            self.calls += 1
            raise ModelError("the model process stopped; it starts again on the next request.")

    folder = tmp_path / "data" / "Testing" / "glioma"
    folder.mkdir(parents=True)
    Image.fromarray(np.zeros((24, 24), np.uint8)).save(folder / "a.png")
    Image.fromarray(np.ones((24, 24), np.uint8)).save(folder / "b.png")
    (folder / "broken.png").write_bytes(b"not an image")
    rows = [_row("Testing/glioma/broken.png", "glioma", "glioma"), _row("Testing/glioma/a.png", "glioma", "meningioma"),
            _row("Testing/glioma/b.png", "glioma", "glioma")]
    stopped = _Stopped("stopped")
    shown = gallery(stopped, rows, tmp_path / "data", allowed=[tmp_path / "data"])
    assert [i.image for i in shown.items] == [None, None, None]
    assert stopped.calls == 1  # a stopped model is asked once per gallery, not once per image
    assert shown.items[2].caption.endswith(" (no Grad-CAM just now)")
    assert shown.items[0].caption == "broken.png: the image could not be read"
    assert shown.items[1].caption.startswith("a.png: Meningioma 90.0\u00a0%,")
    assert shown.items[1].caption.endswith(" (no Grad-CAM just now)")


def test_gallery_without_a_dataset_is_a_table_in_words():
    g = gallery(_FakePredictor(), [_row("Testing/glioma/a.png", "glioma", "notumor", 0.7)], None, allowed=[])
    assert g.items == [] and g.table == [{"file": "Testing/glioma/a.png", "Glioma": "10.0\u00a0%",
                                          "Meningioma": "10.0\u00a0%", "No tumour": "70.0\u00a0%",
                                          "Pituitary": "10.0\u00a0%"}]
    assert gallery(_FakePredictor(), [], None, allowed=[]).table is None


def test_progress_and_unreadable_messages():
    from brainclf.presentation import progress, unreadable_message

    assert progress(250, 1000) == (0.25, "Evaluating 250 of 1,000 images")
    assert progress(0, 0)[0] == 0.0
    assert unreadable_message(["a.jpg: broken"]) == "1 unreadable file skipped: a.jpg: broken"
    many = unreadable_message([f"{i}.jpg: broken" for i in range(7)])
    assert many.startswith("7 unreadable files skipped: 0.jpg: broken;") and many.endswith("; … and 2 more")
    assert "5.jpg" not in many


def test_a_class_without_images_reads_dash_not_zero_recall(rows):
    no_pituitary = [r for r in rows if r["true"] != "pituitary"]
    by_class = {r["class"]: r for r in per_class_rows(report_from_rows(no_pituitary))}
    pituitary = next(r for k, r in by_class.items() if "ituitary" in k)
    assert pituitary["recall (sensitivity)"] == "—" and pituitary["F1"] == "—"
    assert all(r["recall (sensitivity)"] != "—" for k, r in by_class.items() if "ituitary" not in k)


def test_faithfulness_words_follow_the_measurement():
    from brainclf.presentation.views import faithfulness_caption

    good = {"deletion": {"n": 20, "gradcam_auc": 0.30, "random_auc": 0.45, "share_gradcam_lower": 0.8},
            "randomisation": {"mean_spearman": 0.12}}
    assert "faster than deleting" in faithfulness_caption(good) and "0.12" in faithfulness_caption(good)
    bad = {"deletion": {"n": 20, "gradcam_auc": 0.59, "random_auc": 0.35, "share_gradcam_lower": 0.29}}
    words = faithfulness_caption(bad)
    assert "no faster" in words and "do not point at" in words and "sanity check was not run" in words
    assert "Spearman" not in words


def test_the_trust_caption_says_when_no_refer_rule_was_fitted(rows):
    from brainclf.presentation import refer_rule
    from brainclf.presentation.views import trust_view

    predictor = SimpleNamespace(temperature=1.0, refer_thresholds={c: 0.0 for c in CLASS_NAMES},
                                refer_target_accuracy=0.98, refer_confidence=None)
    card = SimpleNamespace(calibration={}, ood=None)
    rule = refer_rule(predictor.refer_thresholds, None, 0.9)
    report = report_from_rows(rows, rule.thresholds)
    (answered,) = [t for t in trust_view(card, predictor, report, rule) if t["label"].startswith("Answered")]
    assert "no refer rule fitted" in answered["caption"] and "90.0\xa0%" in answered["caption"]
    assert "'no tumour'" not in answered["caption"]
    assert report["refer"]["referred"] == sum(max(r["probs"]) < 0.9 for r in rows) > 0  # the Predict page's bar


def test_risk_coverage_points_skip_a_cut_that_answers_nothing():
    from brainclf.evaluation.analysis import curve_points

    points = curve_points({"n": 10, "answered": [0, 4, 10], "correct": [0, 4, 8], "threshold": [1.0, 0.9, 0.0]})
    assert points == {"coverage": [0.4, 1.0], "accuracy": [1.0, 0.8], "threshold": [0.9, 0.0]}


def test_undefined_figures_read_dash_and_the_macro_auc_says_over_how_many_classes(rows):
    """Precision of a class never predicted, and recall of a class absent from the clean subset, are undefined
    (scikit-learn reports 0); a macro AUC over the classes present does not compare with a four-class one."""
    assert headline_rows(report_from_rows(rows))[2]["measure"] == "Macro AUC"
    no_pituitary = [r for r in rows if "pituitary" not in (r["true"], r["pred"])]
    report = report_from_rows(no_pituitary)
    assert headline_rows(report)[2]["measure"] == "Macro AUC (3 classes present)"
    assert next(r for r in per_class_rows(report) if "ituitary" in r["class"])["precision"] == "—"
    assert next(r for r in per_class_rows(report) if r["class"] == "Glioma")["precision"] != "—"
    only_glioma_clean = [{**r, "clean": r["true"] == "glioma"} for r in rows]
    clean_rows = {r["class"]: r for r in clean_view(report_from_rows(only_glioma_clean))["rows"]}
    assert clean_rows["Meningioma"]["recall (clean)"] == "—" and clean_rows["Glioma"]["recall (clean)"] != "—"


def test_an_external_figure_of_a_split_with_loose_case_groups_reads_as_an_upper_estimate():
    from brainclf.presentation.views import UPPER_ESTIMATE_NOTE, external_view

    ext = {"n": 427, "accuracy": 0.7494, "membership": "held-out case groups (not trained or validated on)",
           "confusion_matrix": [[0] * 4] * 4, "called_notumor_rate": 0.13}
    loose = external_view("external-radiopaedia", ext)
    assert loose["rows"][0]["value"].startswith("≤ 74.9") and loose["caveat"] == UPPER_ESTIMATE_NOTE
    # Its miss rate is a lower estimate; a rate not recorded stays a plain "—".
    assert loose["rows"][1]["value"].startswith("≥ 13.0") and loose["rows"][2]["value"] == "—"
    assert "accuracies are upper estimates" in UPPER_ESTIMATE_NOTE and "can go either way" in UPPER_ESTIMATE_NOTE
    whole_cases = external_view("external-radiopaedia", dict(ext, case_grouping_bits=25))
    assert whole_cases["rows"][0]["value"].startswith("74.9") and whole_cases["caveat"] is None
    assert whole_cases["rows"][1]["value"].startswith("13.0")
    by_sequence = {"T1": {"n": 10, "accuracy": 0.8}}
    assert external_view("x", dict(ext, by_sequence=by_sequence))["sequences"][0]["accuracy"].startswith("≤ 80.0")
    assert external_view("x", dict(ext, by_sequence=by_sequence, case_grouping_bits=25))["sequences"][0][
        "accuracy"].startswith("80.0")
    never_trained = external_view("external-radiopaedia", dict(ext, membership="all images (never trained on)"))
    assert never_trained["caveat"] is None


def test_a_gallery_can_show_the_grad_cam_of_the_true_class(tmp_path):
    """Why did it call this meningioma a glioma: the map of the class it answered, or of the class it is."""
    root = tmp_path / "data"
    (root / "Testing" / "meningioma").mkdir(parents=True)
    Image.fromarray(np.full((24, 24), 120, np.uint8)).save(root / "Testing" / "meningioma" / "m.png")
    rows = [_row("Testing/meningioma/m.png", "meningioma", "glioma")]
    fake = _FakePredictor("cam")
    answered = gallery(fake, rows, root, allowed=[root]).items[0].image
    true_class = gallery(fake, rows, root, allowed=[root], cam_of="true").items[0].image
    assert fake.calls == 2 and not np.array_equal(answered, true_class)
    again = gallery(fake, rows, root, allowed=[root], cam_of="true").items[0].image  # cached per class
    assert fake.calls == 2 and np.array_equal(again, true_class)
