"""Shared app plumbing, one module per job; pages and app.py import from here (the names in __all__).

  routing   every page run goes through app.py's navigation (route_through_app)
  identity  server settings, sign-in and roles (identity, require), messages as a user may see them (public)
  models    the installed models, the active one, its cached predictor and card, the picker's labels
  session   what sessions share (training jobs, the audit switch) and what each keeps (cases, dataset)
  sidebar   the sidebar every page shows (sidebar_model_picker)
"""

from .identity import auth_configured, identity, local_mode_problem, public, require, settings
from .models import (
    active_model_path,
    available_models,
    card_of,
    get_predictor,
    model_listing,
    model_process_predictor,
    model_ready,
    models_dir,
    test_accuracy,
    tta_setting,
)
from .routing import route_through_app
from .session import (
    audit_path,
    case_book,
    data_root,
    kept_across_pages,
    page_work,
    record_model_event,
    redraw_page_when_job_ends,
    training_jobs,
)
from .sidebar import sidebar_model_picker

__all__ = ["active_model_path", "audit_path", "auth_configured", "available_models", "card_of",
           "case_book", "data_root", "get_predictor", "identity", "kept_across_pages", "local_mode_problem",
           "model_listing", "model_process_predictor", "model_ready", "models_dir", "page_work", "public",
           "record_model_event", "require",
           "redraw_page_when_job_ends", "route_through_app", "settings",
           "sidebar_model_picker", "test_accuracy", "training_jobs", "tta_setting"]
