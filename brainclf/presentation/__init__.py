"""Presentation: results in words and pictures, no Streamlit: the clinician's wording, a session's cases,
PDF reports, scope, studies, the Evaluation page's views and galleries, Plotly figures, the full-size viewer.

Import from here: the names in __all__ are this layer's public API (pages, CLI, tests, higher layers' entry points).
Modules not listed keep their own names for their tests."""

from .batch_table import batch_row
from .cases import CaseBook, case_ref, content_hash, model_label, widget_key
from .caveats import (
    absent_classes_words,
    grouping_caveat,
    guard_words,
    held_out_words,
    history_title,
    limitations_words,
    missed_tumours_unflagged,
    recorded_rule_note,
    refit_rule_words,
    site_training_words,
    unreferred_miss_advice,
    unreferred_miss_warning,
)
from .figures import (
    CLASS_COLOURS,
    chart_title,
    confusion_matrix_figure,
    coverage_figure,
    deletion_figure,
    external_sequence_figure,
    feature_map_figure,
    full_size_figure,
    history_figure,
    pr_figure,
    reliability_figure,
    risk_coverage_figure,
    roc_figure,
    shortcut_figure,
)
from .gallery import OVERLAYS, gallery, probability_text
from .model_table import model_listing, model_row
from .operating import operating_summary
from .report import case_report_pdf, report_case
from .scope import (
    case_scope_line,
    claim_words,
    external_rates,
    external_reports,
    external_summary,
    external_words,
    is_study_card,
    model_choice_label,
    no_external_note,
    non_commercial,
    sensitivity_rows,
    source_tag,
    upper_mark,
    validated_scope,
)
from .study import SliceResult, slice_result, study_summary, study_summary_text
from .viewer import heatmap_on_original, original_view, viewer_picture
from .views import (
    cell_heading,
    clean_view,
    clicked_cell,
    comparison,
    external_view,
    faithfulness_caption,
    glioma_meningioma,
    headline_rows,
    per_class_rows,
    progress,
    source_caption,
    trust_view,
    unreadable_message,
)
from .wording import (
    INTENDED_USE,
    UNCALIBRATED,
    calibrated,
    class_label,
    count,
    gradcam_caveat,
    is_study_model,
    leaning,
    pct,
    pct_pair,
    plural,
    points,
    predictor_rule,
    probability_lines,
    refer_rule,
    result_status,
    study_note,
    summary_row,
)

__all__ = ["CLASS_COLOURS", "CaseBook", "INTENDED_USE", "OVERLAYS", "SliceResult", "UNCALIBRATED",
           "absent_classes_words", "batch_row", "calibrated",
           "case_ref", "case_report_pdf", "case_scope_line", "cell_heading", "chart_title", "claim_words",
           "class_label", "clean_view", "clicked_cell", "comparison", "confusion_matrix_figure", "content_hash",
           "count", "coverage_figure", "deletion_figure", "external_rates", "external_reports",
           "external_sequence_figure", "external_summary", "external_view", "external_words", "faithfulness_caption",
           "feature_map_figure", "full_size_figure", "gallery", "glioma_meningioma", "guard_words", "gradcam_caveat",
           "headline_rows", "heatmap_on_original", "history_figure", "history_title", "is_study_card", "is_study_model",
           "grouping_caveat", "held_out_words", "leaning", "limitations_words", "missed_tumours_unflagged",
           "refit_rule_words", "unreferred_miss_advice", "unreferred_miss_warning",
           "model_choice_label", "model_label", "model_listing", "model_row", "no_external_note",
           "non_commercial",
           "operating_summary", "original_view", "pct", "pct_pair", "per_class_rows", "plural", "points", "pr_figure",
           "predictor_rule", "probability_lines", "probability_text", "progress", "recorded_rule_note", "refer_rule",
           "reliability_figure",
           "report_case", "result_status", "sensitivity_rows", "risk_coverage_figure", "roc_figure", "shortcut_figure",
           "site_training_words", "slice_result", "source_caption", "source_tag", "study_note", "study_summary",
           "study_summary_text", "summary_row", "trust_view", "unreadable_message", "upper_mark", "validated_scope",
           "viewer_picture", "widget_key"]
