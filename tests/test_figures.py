"""brainclf.presentation.figures: every figure is a plotly Figure with the traces and labels the app relies on."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import pytest

from brainclf import CLASS_NAMES, DISPLAY_NAMES
from brainclf.presentation import (
    confusion_matrix_figure,
    coverage_figure,
    deletion_figure,
    feature_map_figure,
    history_figure,
    pct,
    pr_figure,
    reliability_figure,
    roc_figure,
)
from brainclf.scoring import coverage_curve, reliability_curve, roc_curves

CM = [[8, 1, 0, 1], [0, 9, 1, 0], [0, 0, 10, 0], [1, 0, 3, 6]]


@pytest.fixture(scope="module")
def y_probs():
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(4), 25)
    logits = rng.normal(0, 1, (100, 4))
    logits[np.arange(100), y] += 2.0
    p = np.exp(logits)
    return y, p / p.sum(1, keepdims=True)



def test_confusion_matrix_counts():
    fig = confusion_matrix_figure(CM, title="Test set")
    assert isinstance(fig, go.Figure) and len(fig.data) == 1
    hm = fig.data[0]
    assert list(hm.x) == [DISPLAY_NAMES[c] for c in CLASS_NAMES] == list(hm.y)
    assert np.asarray(hm.z).tolist() == CM
    assert hm.text[0][0] == "8" and hm.text[3][2] == "3"
    assert fig.layout.title.text == "Test set"
    assert fig.layout.xaxis.title.text == "predicted" and fig.layout.yaxis.title.text == "true"


def test_confusion_matrix_normalised_shows_percents():
    fig = confusion_matrix_figure(CM, normalise=True)
    hm = fig.data[0]
    z = np.asarray(hm.z)
    np.testing.assert_allclose(z.sum(1), 1.0)
    assert hm.text[0][0] == "80.0 %" and hm.text[3][3] == "60.0 %" and hm.text[2][2] == "100.0 %"  # wording.pct
    assert all(t.endswith(" %") for row in hm.text for t in row)
    assert fig.layout.title.text is None
    # An empty row (a class with no images, as pituitary on the external source) has no recall: "—", blank
    # cells, not "0.0 %" read as a class the model never finds; the other rows are unchanged.
    fig = confusion_matrix_figure([[0, 0, 0, 0], *CM[1:]], normalise=True)
    z = np.asarray(fig.data[0].z, dtype=float)
    assert np.isnan(z[0]).all() and np.isfinite(z[1:]).all()
    assert list(fig.data[0].text[0]) == ["—"] * 4 and fig.data[0].text[2][2] == "100.0 %"


def test_roc_figure_legend_has_auc(y_probs):
    curves = roc_curves(*y_probs)
    fig = roc_figure(curves)
    assert isinstance(fig, go.Figure)
    assert len(fig.data) == len(curves) + 1  # one per class and the chance diagonal
    for trace, (c, cur) in zip(fig.data, curves.items()):
        assert trace.name.startswith(DISPLAY_NAMES[c]) and f"AUC {cur['auc']:.4f}" in trace.name
    assert fig.data[-1].showlegend is False
    assert "ROC" in fig.layout.title.text


def test_pr_figure(y_probs):
    curves = roc_curves(*y_probs)
    fig = pr_figure(curves)
    assert len(fig.data) == len(curves)
    assert [t.name for t in fig.data] == [DISPLAY_NAMES[c] for c in curves]
    assert fig.layout.title.text == "Precision-recall"


def test_history_figure_four_traces():
    history = {"loss": [1.2, 0.8, 0.5], "val_loss": [1.3, 0.9, 0.7], "accuracy": [0.5, 0.7, 0.85],
               "val_accuracy": [0.45, 0.65, 0.8]}
    fig = history_figure(history)
    assert isinstance(fig, go.Figure) and len(fig.data) == 4
    assert [t.name for t in fig.data] == ["train", "validation", "train", "validation"]
    assert [list(t.y) for t in fig.data] == [history["loss"], history["val_loss"], history["accuracy"],
                                             history["val_accuracy"]]
    assert list(fig.data[0].x) == [1, 2, 3]
    titles = [a.text for a in fig.layout.annotations]
    assert titles == ["loss", "accuracy"]
    # A run still in its first epoch (no validation yet) or an empty history still draws.
    assert len(history_figure({"loss": [1.0]}).data) == 4
    assert len(history_figure({}).data) == 4


def test_history_figure_draws_each_ensemble_member():
    members = [{"loss": [1.0, 0.5], "val_loss": [1.1, 0.6], "accuracy": [0.5, 0.8], "val_accuracy": [0.4, 0.7]},
               {"loss": [0.9, 0.4], "val_loss": [1.0, 0.5], "accuracy": [0.6, 0.9], "val_accuracy": [0.5, 0.8]}]
    fig = history_figure(members)
    assert len(fig.data) == 8
    assert {t.name for t in fig.data} == {"train (member 1)", "validation (member 1)", "train (member 2)",
                                          "validation (member 2)"}
    assert {t.line.dash for t in fig.data} == {"solid", "dot"}


def test_reliability_figure_shows_each_bins_image_count(y_probs):
    bins = reliability_curve(*y_probs)["bins"]
    fig = reliability_figure(bins, title="Calibration")
    assert [t.name for t in fig.data] == ["images per bin", "perfect calibration", "model"]
    counts, _, model = fig.data
    assert list(counts.y) == [b["n"] for b in bins] and counts.yaxis == "y2"
    assert fig.layout.yaxis2.overlaying == "y" and fig.layout.yaxis2.title.text == "images per bin"
    assert len(model.x) == len(bins)
    assert list(model.text) == [f"{b['n']} image{'' if b['n'] == 1 else 's'}" for b in bins]
    assert "%{text}" in model.hovertemplate and "%{text}" in counts.hovertemplate
    assert model.customdata[0][1] == f"{100 * bins[0]['accuracy']:.1f} %"  # one probability format
    assert fig.layout.title.text == "Calibration"


def test_reliability_counts_read_as_words():
    bins = [{"lo": 0.5, "hi": 0.6, "n": 1, "confidence": 0.55, "accuracy": 1.0},
            {"lo": 0.9, "hi": 1.0, "n": 1234, "confidence": 0.97, "accuracy": 0.98}]
    fig = reliability_figure(bins)
    assert list(fig.data[2].text) == ["1 image", "1,234 images"]
    assert list(fig.data[0].customdata) == ["50 % – 60 %", "90 % – 100 %"]


def test_clickable_confusion_matrix_has_a_selectable_point_per_cell():
    """Issue #14: a heatmap cannot be point-selected; markers on the cell centres carry (true, predicted)."""
    plain = confusion_matrix_figure(CM)
    assert len(plain.data) == 1
    fig = confusion_matrix_figure([[1200, 1, 0, 1], *CM[1:]], clickable=True, title="Test split")
    hm, cells = fig.data
    assert hm.hoverinfo == "skip" and hm.text[0][0] == "1,200"  # thousands separator
    assert cells.type == "scatter" and cells.mode == "markers" and len(cells.x) == 16
    assert cells.marker.color == "rgba(0,0,0,0)"  # invisible until selected
    k = 1 * 4 + 2  # row meningioma, column no tumour
    assert (cells.y[k], cells.x[k]) == ("Meningioma", "No tumour")
    assert list(cells.customdata[k]) == ["meningioma", "notumor"]
    assert cells.text[k] == str(CM[1][2])
    assert fig.layout.clickmode == "event+select"


@pytest.mark.parametrize("make", [
    lambda t: roc_figure(roc_curves(np.repeat(np.arange(4), 3), np.eye(4)[np.repeat(np.arange(4), 3)]), title=t),
    lambda t: pr_figure(roc_curves(np.repeat(np.arange(4), 3), np.eye(4)[np.repeat(np.arange(4), 3)]), title=t),
    lambda t: coverage_figure([{"coverage": 1.0, "accepted_accuracy": 0.9, "threshold": 0.5}], title=t),
    lambda t: deletion_figure({"fractions": [0, 1], "gradcam_curve": [1, 0], "random_curve": [1, 0.5],
                               "gradcam_auc": 0.5, "random_auc": 0.75}, title=t),
    lambda t: history_figure({"loss": [1.0]}, title=t),
])
def test_figures_take_a_title_saying_what_and_on_which_data(make):
    assert make("X on the test split").layout.title.text == "X on the test split"


def test_coverage_figure_stars_the_rule_in_force_where_it_answers(y_probs):
    from brainclf.scoring.trust import coverage_accuracy

    y, p = y_probs
    curve = coverage_curve(y, p)
    fig = coverage_figure(curve)
    assert len(fig.data) == 1 and len(fig.data[0].x) == len(curve)
    # Per-class bars (a stricter 'no tumour' one) give a point the one-bar curve need not pass through: the star
    # is the rule's own coverage and accuracy, as the 'Answered (refer rule)' figure beside it says.
    point = coverage_accuracy(y, p, {"glioma": 0.6, "meningioma": 0.6, "notumor": 0.95, "pituitary": 0.6})
    fig = coverage_figure(curve, point)
    star = fig.data[1]
    assert len(fig.data) == 2 and star.marker.symbol == "star"
    assert (star.x[0], star.y[0]) == (point["coverage"], point["accepted_accuracy"])
    assert star.name == f"the refer rule in force: {pct(point['coverage'])} answered"
    # A rule that answers nothing has no accuracy to star.
    assert len(coverage_figure(curve, {"coverage": 0.0, "accepted_accuracy": None}).data) == 1


def test_deletion_figure_two_traces():
    deletion = {"fractions": [0.0, 0.25, 0.5], "gradcam_curve": [0.9, 0.4, 0.2], "random_curve": [0.9, 0.8, 0.7],
                "gradcam_auc": 0.475, "random_auc": 0.8}
    fig = deletion_figure(deletion)
    assert len(fig.data) == 2
    assert "AUC 0.475" in fig.data[0].name and "AUC 0.800" in fig.data[1].name
    assert list(fig.data[0].y) == deletion["gradcam_curve"]


def test_feature_map_marks_misclassified_with_x():
    rng = np.random.default_rng(0)
    true = ["glioma"] * 4 + ["notumor"] * 3 + ["pituitary"] * 2
    pred = ["glioma", "glioma", "meningioma", "glioma", "notumor", "notumor", "notumor", "pituitary", "notumor"]
    names = [f"img{i}.png" for i in range(len(true))]
    coords = rng.normal(size=(len(true), 2))
    fig = feature_map_figure(coords, true, pred, names, title="t-SNE")
    # glioma right + wrong, notumor right, pituitary right + wrong; meningioma has no points.
    assert len(fig.data) == 5
    by_name = {t.name: t for t in fig.data}
    wrong = [t for t in fig.data if t.marker.symbol == "x"]
    assert {t.name for t in wrong} == {"Glioma (misclassified)", "Pituitary (misclassified)"}
    assert all(t.marker.symbol == "circle" for t in fig.data if t not in wrong)
    assert len(by_name["Glioma (misclassified)"].x) == 1
    assert len(by_name["Glioma"].x) == 3
    assert "img2.png" in by_name["Glioma (misclassified)"].text[0]
    assert "true Glioma → predicted Meningioma" in by_name["Glioma (misclassified)"].text[0]
    assert sum(len(t.x) for t in fig.data) == len(true)
    assert fig.layout.title.text == "t-SNE"


def test_chart_titles_put_the_data_on_a_second_line_with_room_for_it():
    from brainclf.presentation import chart_title

    title = chart_title("ROC (one-vs-rest)", "test split, 1,025 images")
    assert title.startswith("ROC (one-vs-rest)<br>") and "test split, 1,025 images" in title
    assert chart_title("Loss") == "Loss"
    curves = roc_curves(np.repeat(np.arange(4), 3), np.eye(4)[np.repeat(np.arange(4), 3)])
    assert roc_figure(curves, title).layout.margin.t > roc_figure(curves, "ROC").layout.margin.t


def test_training_curves_show_whole_epochs_only():
    """Issue #27: a 3-epoch run's axis showed 1.5 and 2.5."""
    short = history_figure({"loss": [1.2, 0.8, 0.5], "val_loss": [1.3, 0.9, 0.7]})
    for axis in (short.layout.xaxis, short.layout.xaxis2):
        assert axis.dtick == 1 and axis.tick0 == 1 and axis.tickformat == "d"
    long = history_figure({"loss": list(np.linspace(1, 0.1, 95))})
    assert long.layout.xaxis.dtick == 10 and long.layout.xaxis.tickformat == "d"  # whole steps, not 95 ticks


LEGENDED = {
    "roc": lambda: roc_figure(roc_curves(np.repeat(np.arange(4), 3), np.eye(4)[np.repeat(np.arange(4), 3)])),
    "pr": lambda: pr_figure(roc_curves(np.repeat(np.arange(4), 3), np.eye(4)[np.repeat(np.arange(4), 3)])),
    "coverage": lambda: coverage_figure([{"coverage": 1.0, "accepted_accuracy": 0.9, "threshold": 0.5}],
                                        {"coverage": 1.0, "accepted_accuracy": 0.9}),
    "deletion": lambda: deletion_figure({"fractions": [0, 1], "gradcam_curve": [1, 0], "random_curve": [1, 0.5],
                                         "gradcam_auc": 0.5, "random_auc": 0.75}),
    "history": lambda: history_figure({"loss": [1.0, 0.5]}),
    "reliability": lambda: reliability_figure(reliability_curve(*_two_bins())["bins"]),
}


def _two_bins():
    return np.array([0, 1, 2, 3]), np.eye(4) * 0.7 + 0.075


@pytest.mark.parametrize("name", LEGENDED)
def test_half_width_charts_put_their_legend_below_in_a_row(name):
    """Issue #27: the ROC legend at the side squeezed a half-width plot."""
    legend = LEGENDED[name]().layout.legend
    assert legend.orientation == "h" and legend.yanchor == "top" and legend.y < 0


def test_half_width_axis_titles_fit():
    """Issue #27: "coverage (share of predictions accepted)" was cut to "erage (share of…" in half a page."""
    for make in LEGENDED.values():
        layout = make().layout
        # ~7 px a character: a half-width chart's x axis holds ~24 of them, its (taller) y axis a few more
        assert len(layout.xaxis.title.text or "") <= 24 and len(layout.yaxis.title.text or "") <= 30, layout
    assert coverage_figure([{"coverage": 1.0, "accepted_accuracy": 0.9, "threshold": 0.5}]).layout.xaxis.title.text \
        == "share answered"


def test_hover_texts_use_the_one_percentage_format(y_probs):
    """Plotly's own %{x:.1%} said 97.2% beside wording.pct's 97.2 % on the same page."""
    from brainclf.presentation import risk_coverage_figure

    curve = coverage_curve(*y_probs)
    text = coverage_figure(curve).data[0].text[0]
    assert " %" in text and "%{" not in coverage_figure(curve).data[0].hovertemplate.replace("%{text}", "")
    fig = risk_coverage_figure([{"label": "a", "n": 1234, "held_out": False, "coverage": [0.5, 1.0],
                                 "accuracy": [0.99, 0.9], "threshold": [0.9, 0.0],
                                 "point": {"coverage": 0.5, "accepted_accuracy": 0.99}}])
    assert fig.data[0].name == "a (n=1,234)" and fig.data[0].text[0] == "answered 50.0 %<br>accuracy 99.0 %<br>" \
        "threshold 90.0 %"
    assert "50.0 %, 99.0 % of them right" in fig.data[1].hovertemplate
