"""Plotly figures for the app (and notebooks). Pure functions of data: no Streamlit here."""

from __future__ import annotations

import base64
import io

import numpy as np
import plotly.graph_objects as go
from PIL import Image
from plotly.subplots import make_subplots

from .. import CLASS_NAMES, DISPLAY_NAMES
from .wording import count, pct, plural

CLASS_COLOURS = {"glioma": "#d62728", "meningioma": "#1f77b4", "notumor": "#2ca02c", "pituitary": "#9467bd"}
SOURCE_COLOURS = ("#1f5fa8", "#e07b00", "#2a9d8f", "#8e44ad")  # one per source in the risk-coverage figure
DISPLAY = [DISPLAY_NAMES[c] for c in CLASS_NAMES]


def chart_title(what: str, data: str = "") -> str:
    """A figure title in two short lines, what it shows and on which data, so that neither is cut in a narrow
    column: 'ROC (one-vs-rest)' over 'test split, 1,025 images'."""
    return f"{what}<br><span style='font-size:12px;color:#666'>{data}</span>" if data else what


def _top(title: str | None) -> int:
    """Top margin for a title of one or more lines."""
    return 40 + 20 * str(title or "").count("<br>")


# Legends go under the plot, in a row: at the side they squeeze a half-width chart (the ROC's four entries). Low
# enough to clear the x-axis title: at -0.22 of a ~200 px plot the legend's box covered the title's lower half
# (tests/test_e2e_layout.py measures it in a browser at 800 px).
LEGEND_BELOW = dict(orientation="h", yanchor="top", y=-0.34, xanchor="left", x=0)


def confusion_matrix_figure(cm, normalise: bool = False, title: str = "", clickable: bool = False) -> go.Figure:
    """Rows true, columns predicted; counts or row-normalised (recall on the diagonal).

    `clickable`: a second trace of transparent markers on the cell centres (a heatmap cannot be point-selected),
    each carrying its (true, predicted) class names as customdata, for `st.plotly_chart(on_select=...)`.
    """
    cm = np.asarray(cm, dtype=float)
    totals = cm.sum(1, keepdims=True)
    # A class with no images has no recall: its row is blank ("—"), not a row of 0.0 % read as "never found".
    shown = np.where(totals > 0, cm / np.maximum(totals, 1), np.nan) if normalise else cm
    text = [[pct(None if np.isnan(v) else v) if normalise else count(v) for v in row] for row in shown]
    fig = go.Figure(go.Heatmap(
        z=shown, x=DISPLAY, y=DISPLAY, colorscale="Blues", text=text, texttemplate="%{text}",
        hovertemplate="true %{y} → predicted %{x}: %{text}<extra></extra>", showscale=False,
        hoverinfo="skip" if clickable else None))
    if clickable:
        cells = [(i, j) for i in range(len(CLASS_NAMES)) for j in range(len(CLASS_NAMES))]
        fig.add_trace(go.Scatter(
            x=[DISPLAY[j] for _, j in cells], y=[DISPLAY[i] for i, _ in cells], mode="markers",
            customdata=[[CLASS_NAMES[i], CLASS_NAMES[j]] for i, j in cells], text=[text[i][j] for i, j in cells],
            marker=dict(size=60, symbol="square", color="rgba(0,0,0,0)"), showlegend=False, name="cells",
            selected=dict(marker=dict(color="rgba(255,165,0,0.35)")), unselected=dict(marker=dict(opacity=1)),
            hovertemplate="true %{y} → predicted %{x}: %{text}<br>click to see these images<extra></extra>"))
    fig.update_layout(title=title or None, xaxis_title="predicted", yaxis_title="true", height=380,
                      yaxis=dict(autorange="reversed"), margin=dict(l=10, r=10, t=_top(title) if title else 10, b=40),
                      clickmode="event+select", dragmode=False if clickable else "zoom")
    return fig


def roc_figure(curves: dict, title: str = "ROC (one-vs-rest)") -> go.Figure:
    fig = go.Figure()
    for c, cur in curves.items():
        fig.add_trace(go.Scatter(x=cur["fpr"], y=cur["tpr"], mode="lines", line=dict(color=CLASS_COLOURS[c]),
                                 name=f"{DISPLAY_NAMES[c]} (AUC {cur['auc']:.4f})"))
    fig.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", line=dict(dash="dot", color="grey"),
                             showlegend=False, hoverinfo="skip"))
    fig.update_layout(xaxis_title="false positive rate", yaxis_title="true positive rate", height=420,
                      title=title, margin=dict(l=10, r=10, t=_top(title), b=40), legend=LEGEND_BELOW)
    return fig


def pr_figure(curves: dict, title: str = "Precision-recall") -> go.Figure:
    fig = go.Figure()
    for c, cur in curves.items():
        fig.add_trace(go.Scatter(x=cur["recall"], y=cur["precision"], mode="lines",
                                 line=dict(color=CLASS_COLOURS[c]), name=DISPLAY_NAMES[c]))
    fig.update_layout(xaxis_title="recall", yaxis_title="precision", height=420, title=title,
                      margin=dict(l=10, r=10, t=_top(title), b=40), legend=LEGEND_BELOW)
    return fig


def history_figure(history: dict | list[dict], title: str = "") -> go.Figure:
    """Train vs validation loss and accuracy per epoch; a list of histories (ensemble members) is drawn
    with one line style per member."""
    histories = [history] if isinstance(history, dict) else list(history)
    fig = make_subplots(rows=1, cols=2, subplot_titles=("loss", "accuracy"))
    for i, hist in enumerate(histories):
        member = f" (member {i + 1})" if len(histories) > 1 else ""
        epochs = list(range(1, len(hist.get("loss", [])) + 1))
        for col, metric in ((1, "loss"), (2, "accuracy")):
            for prefix, colour, label in (("", "#1f77b4", "train"), ("val_", "#ff7f0e", "validation")):
                ys = hist.get(prefix + metric, [])
                fig.add_trace(go.Scatter(x=epochs[:len(ys)], y=ys, mode="lines+markers", name=label + member,
                                         line=dict(color=colour, dash=("solid", "dot", "dash", "dashdot")[i % 4]),
                                         showlegend=col == 1), row=1, col=col)
    longest = max([len(h.get("loss", [])) for h in histories] or [1])
    # Whole epochs only (a run of 3 epochs showed 1.5 and 2.5): every epoch up to 10, then a whole step.
    fig.update_xaxes(title_text="epoch", tickformat="d", tick0=1, dtick=max(1, -(-longest // 10)))
    fig.update_layout(height=360 if title else 340, margin=dict(l=10, r=10, t=_top(title) + 30 if title else 40, b=40),
                      title=title or None, legend=LEGEND_BELOW)
    return fig


def reliability_figure(bins: list[dict], title: str = "Reliability") -> go.Figure:
    """Accuracy against mean confidence per confidence bin, with the number of images in each bin: as grey
    bars on a second axis, as marker size and in the hover."""
    fig = go.Figure()
    largest = max([b["n"] for b in bins] or [1])
    counts = [plural(b["n"], "image") for b in bins]
    fig.add_trace(go.Bar(x=[(b["lo"] + b["hi"]) / 2 for b in bins], y=[b["n"] for b in bins],
                         width=[b["hi"] - b["lo"] for b in bins], yaxis="y2", name="images per bin",
                         marker_color="rgba(150,150,150,0.35)", text=counts,
                         hovertemplate="confidence %{customdata}<br>%{text}<extra></extra>",
                         customdata=[f"{pct(b['lo'], 0)} – {pct(b['hi'], 0)}" for b in bins], textposition="none"))
    fig.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", line=dict(dash="dot", color="grey"),
                             name="perfect calibration", hoverinfo="skip"))
    fig.add_trace(go.Scatter(
        x=[b["confidence"] for b in bins], y=[b["accuracy"] for b in bins], mode="lines+markers", name="model",
        marker=dict(size=[4 + 20 * np.sqrt(b["n"] / max(1, largest)) for b in bins]), text=counts,
        customdata=[[pct(b["confidence"]), pct(b["accuracy"])] for b in bins],
        hovertemplate="mean confidence %{customdata[0]}<br>accuracy %{customdata[1]}<br>%{text}<extra></extra>"))
    fig.update_layout(xaxis=dict(title="confidence", range=[0, 1.02]), yaxis=dict(title="accuracy", range=[0, 1.02]),
                      yaxis2=dict(title="images per bin", overlaying="y", side="right", showgrid=False,
                                  rangemode="tozero"),
                      height=380, title=title, legend=LEGEND_BELOW,
                      margin=dict(l=10, r=10, t=_top(title), b=40))
    return fig


def full_size_figure(picture: np.ndarray, title: str = "") -> go.Figure:
    """An RGB uint8 picture at its own resolution (one image pixel per axis unit), to zoom and pan: dragging pans
    (wheel zoom is the chart's `scrollZoom` config). Sent as one PNG, not a grid of numbers."""
    buf = io.BytesIO()
    Image.fromarray(np.asarray(picture, np.uint8)).save(buf, "PNG")
    height, width = picture.shape[:2]
    fig = go.Figure(go.Image(source="data:image/png;base64," + base64.b64encode(buf.getvalue()).decode(),
                             hoverinfo="skip"))
    fig.update_xaxes(visible=False, range=[-0.5, width - 0.5])
    fig.update_yaxes(visible=False, range=[height - 0.5, -0.5], scaleanchor="x")
    fig.update_layout(height=720, dragmode="pan", margin=dict(l=0, r=0, t=_top(title), b=0), title=title or None,
                      meta={"width": width, "height": height})
    return fig


def feature_map_figure(coords: np.ndarray, true: list[str], pred: list[str], names: list[str],
                       title: str = "") -> go.Figure:
    """2-D embedding of penultimate features, coloured by true class; misclassified points as crosses."""
    fig = go.Figure()
    true_a, pred_a = np.array(true), np.array(pred)
    for c in CLASS_NAMES:
        for wrong in (False, True):
            m = (true_a == c) & ((true_a != pred_a) == wrong)
            if not m.any():
                continue
            fig.add_trace(go.Scatter(
                x=coords[m, 0], y=coords[m, 1], mode="markers",
                marker=dict(color=CLASS_COLOURS[c], symbol="x" if wrong else "circle", size=11 if wrong else 6,
                            line=dict(width=1, color="black") if wrong else None),
                name=f"{DISPLAY_NAMES[c]}{' (misclassified)' if wrong else ''}",
                text=[f"{n}<br>true {DISPLAY_NAMES.get(t, t)} → predicted {DISPLAY_NAMES.get(p, p)}"
                      for n, t, p in zip(np.array(names)[m], true_a[m], pred_a[m])],
                hovertemplate="%{text}<extra></extra>"))
    fig.update_layout(height=480, title=title or None, xaxis_title="component 1", yaxis_title="component 2",
                      margin=dict(l=10, r=10, t=_top(title), b=40))
    return fig


def coverage_figure(curve: list[dict], rule_point: dict | None = None,
                    title: str = "Coverage vs accuracy") -> go.Figure:
    """Accuracy of accepted predictions vs share accepted, as one confidence threshold rises; `rule_point`
    (scoring.trust.coverage_accuracy at the rule in force: its per-class bars, the stricter 'no tumour' one) starred,
    which need not lie on the one-bar curve."""
    fig = go.Figure(go.Scatter(
        x=[c["coverage"] for c in curve], y=[c["accepted_accuracy"] for c in curve], mode="lines+markers",
        text=[f"answered {pct(c['coverage'])}<br>accuracy {pct(c['accepted_accuracy'])}<br>"
              f"threshold {pct(c['threshold'])}" if c["accepted_accuracy"] is not None else "" for c in curve],
        hovertemplate="%{text}<extra></extra>", name="model"))
    if rule_point and rule_point.get("accepted_accuracy") is not None:
        fig.add_trace(go.Scatter(x=[rule_point["coverage"]], y=[rule_point["accepted_accuracy"]], mode="markers",
                                 marker=dict(size=14, symbol="star", color="#d62728"),
                                 name=f"the refer rule in force: {pct(rule_point['coverage'])} answered"))
    # Short axis titles: this chart is half the page wide, and a long title is cut at both ends.
    fig.update_layout(xaxis_title="share answered", yaxis_title="accuracy answered",
                      xaxis=dict(tickformat=".0%"), yaxis=dict(tickformat=".1%"), height=380,
                      title=title, margin=dict(l=10, r=10, t=_top(title), b=40), legend=LEGEND_BELOW)
    return fig


def risk_coverage_figure(curves: list[dict], title: str = "Answered vs accuracy, per source") -> go.Figure:
    """analysis.risk_coverage_by_source as lines (validation dashed, held-out solid), the rule's point starred."""
    fig = go.Figure()
    for k, c in enumerate(curves):
        colour = SOURCE_COLOURS[k % len(SOURCE_COLOURS)]
        fig.add_trace(go.Scatter(
            x=c["coverage"], y=c["accuracy"], mode="lines", name=f"{c['label']} (n={count(c['n'])})",
            line=dict(color=colour, dash="solid" if c["held_out"] else "dash"),
            text=[f"answered {pct(x)}<br>accuracy {pct(y)}<br>threshold {pct(t)}"
                  for x, y, t in zip(c["coverage"], c["accuracy"], c["threshold"])],
            hovertemplate="%{text}<extra></extra>"))
        point = c.get("point")
        if point and point["accepted_accuracy"] is not None:
            fig.add_trace(go.Scatter(x=[point["coverage"]], y=[point["accepted_accuracy"]], mode="markers",
                                     marker=dict(size=13, symbol="star", color=colour), showlegend=False,
                                     hovertemplate=f"{c['label']}: the refer rule answers "
                                                   f"{pct(point['coverage'])}, {pct(point['accepted_accuracy'])} "
                                                   "of them right<extra></extra>"))
    fig.update_layout(xaxis_title="share answered (not referred)", yaxis_title="accuracy of the answered",
                      xaxis=dict(tickformat=".0%", range=[0, 1.02]), yaxis=dict(tickformat=".0%"), height=380,
                      title=title, margin=dict(l=10, r=10, t=_top(title), b=40),
                      legend=LEGEND_BELOW)
    return fig


def deletion_figure(deletion: dict, title: str = "Deletion test") -> go.Figure:
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=deletion["fractions"], y=deletion["gradcam_curve"], mode="lines+markers",
                             name=f"Grad-CAM order (AUC {deletion['gradcam_auc']:.3f})"))
    fig.add_trace(go.Scatter(x=deletion["fractions"], y=deletion["random_curve"], mode="lines+markers",
                             name=f"random 8×8 blocks (AUC {deletion['random_auc']:.3f})"))
    fig.update_layout(xaxis_title="share of pixels deleted", yaxis_title="probability of predicted class",
                      xaxis=dict(tickformat=".0%"), height=380, title=title,
                      margin=dict(l=10, r=10, t=_top(title), b=40), legend=LEGEND_BELOW)
    return fig


def external_sequence_figure(ext: dict, title: str = "") -> go.Figure:
    """Per MR sequence: accuracy and the share of tumour images answered "no tumour" (with 95% intervals
    over case groups)."""
    seqs = list(ext.get("by_sequence", {}))
    fig = go.Figure()
    for key, name, colour in (("accuracy", "accuracy", "#1f77b4"),
                              ("called_notumor_rate", "tumours called 'no tumour'", "#d62728"),
                              ("called_notumor_unflagged_rate", "…of them not referred or flagged", "#ff9896")):
        vals = [ext["by_sequence"][s].get(key) for s in seqs]
        cis = [(ext["by_sequence"][s].get("intervals") or {}).get(key) for s in seqs]
        err_hi = [(c[1] - v) if c and v is not None else 0 for v, c in zip(vals, cis)]
        err_lo = [(v - c[0]) if c and v is not None else 0 for v, c in zip(vals, cis)]
        fig.add_trace(go.Bar(x=seqs, y=[v if v is not None else 0 for v in vals], name=name, marker_color=colour,
                             error_y=dict(type="data", array=err_hi, arrayminus=err_lo, visible=True),
                             text=[pct(v, 0) for v in vals], textposition="outside", customdata=[pct(v) for v in vals],
                             hovertemplate="%{x}: %{customdata}<extra>" + name + "</extra>"))
    fig.update_layout(barmode="group", yaxis=dict(range=[0, 1.1], tickformat=".0%"), height=340,
                      title=title or chart_title("External validation by MR sequence", ext.get("dataset", "")),
                      legend=LEGEND_BELOW, margin=dict(l=10, r=10, t=_top(title or "<br>"), b=60))
    return fig


def shortcut_figure(study: dict) -> go.Figure:
    """Style-only baseline accuracy in and out of source, against always answering the majority class."""
    parts = [("Kaggle Training (grouped CV)", study.get("cv")), ("Kaggle Testing", study.get("testing")),
             *study.get("external", {}).items()]
    parts = [(n, r) for n, r in parts if r]
    fig = go.Figure()
    fig.add_trace(go.Bar(x=[n for n, _ in parts], y=[r["accuracy"] for _, r in parts], name="style-only classifier",
                         marker_color="#d62728", text=[pct(r["accuracy"], 0) for _, r in parts],
                         textposition="outside"))
    fig.add_trace(go.Bar(x=[n for n, _ in parts], y=[r["majority_baseline"] for _, r in parts],
                         name="always the most common class", marker_color="#c7c7c7",
                         text=[pct(r["majority_baseline"], 0) for _, r in parts], textposition="outside"))
    fig.update_layout(barmode="group", yaxis=dict(range=[0, 1.1], tickformat=".0%", title="accuracy"), height=340,
                      title=chart_title("What image style alone predicts (no anatomy)", "Kaggle and other sources"),
                      legend=LEGEND_BELOW, margin=dict(l=10, r=10, t=_top("<br>"), b=60))
    return fig
