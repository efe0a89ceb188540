"""Evaluation: how good a model is, measured: folders and reports, external validation, what the Evaluation
page shows, Grad-CAM faithfulness, the shortcut study, the label audit, candidate selection, provenance.

Import from here: the names in __all__ are this layer's public API (pages, CLI, tests, higher layers' entry points).
Modules not listed keep their own names for their tests."""

from .analysis import (
    embed_2d,
    feature_map,
    feature_map_key,
    mcnemar_exact,
    misclassified,
    most_confused,
    paired_comparison,
    report_from_rows,
    resolve_image,
    risk_coverage_by_source,
    rows_for_cell,
)
from .evaluate import (
    evaluate_folder,
    evaluate_samples,
    learnt_mask,
    primary_files,
    record_external,
    root_holding,
    training_paths_for,
)
from .external import cluster_bootstrap, evaluate_external, load_shortcut_study, read_manifest, with_refer_rule
from .faithfulness import FRACTIONS, deletion_test, measure_faithfulness, randomisation_check
from .label_audit import CT_RING_THRESHOLD, audit_labels, ct_ring_score
from .provenance import (
    card_is_verified,
    made_here_note,
    maker_words,
    own_test_data,
    provenance_note,
    training_source,
    verify_uploaded_model,
)
from .selection import (
    PRIMARY,
    choose,
    decide,
    mean_nll,
    nll_difference,
    operating_curves,
    shared_validation_samples,
    validation_groups,
    validation_samples,
    validation_scores,
)
from .shortcut import FEATURE_NAMES, run_study, style_features

__all__ = ["CT_RING_THRESHOLD", "FEATURE_NAMES", "FRACTIONS", "PRIMARY", "audit_labels", "card_is_verified", "choose",
           "made_here_note", "maker_words", "own_test_data", "training_source",
           "cluster_bootstrap", "ct_ring_score", "decide", "deletion_test", "embed_2d", "evaluate_external",
           "evaluate_folder", "evaluate_samples", "feature_map", "feature_map_key", "load_shortcut_study",
           "mcnemar_exact", "mean_nll", "measure_faithfulness", "misclassified", "most_confused",
           "nll_difference", "operating_curves", "paired_comparison", "provenance_note",
           "randomisation_check", "read_manifest", "record_external", "report_from_rows", "resolve_image",
           "risk_coverage_by_source", "rows_for_cell", "run_study", "shared_validation_samples", "style_features",
           "learnt_mask", "primary_files", "root_holding", "training_paths_for",
           "validation_groups", "validation_samples", "validation_scores", "verify_uploaded_model", "with_refer_rule"]
