"""Serving: what the app's server needs around the library: settings, access (roles), the audit log, the upload
gate, background training jobs, the model warm-up, starting Streamlit, benchmarks.

Import from here: the names in __all__ are this layer's public API (pages, CLI, tests, higher layers' entry points).
Modules not listed keep their own names for their tests."""

from importlib import import_module

from .access import ACTIONS, PAGE_ACTIONS, Identity, can, identity_for, local_identity, role_for
from .audit import OTHER_REASON, REFUSAL_REASONS, append_audit, audit_record, model_event_record, switch_record
from .interrupted import InterruptedRun, discard_interrupted, interrupted_runs, name_in_use, resume_interrupted
from .jobs import JobStatus, TrainingJobs, owner_run_dir
from .page_work import PageWorkSlots
from .serve import child_pids, free_port, peak_rss_bytes, start_streamlit, stop, wait_healthy
from .settings import SERVER_PATH, RoleRules, Settings, load_settings
from .upload_gate import GATE, UploadGate
from .warmup import warm_default_model

# Loaded on first use (PEP 562), so that importing this package stays light (bench: it imports the evaluation code).
_LAZY = {"bench_app": ".bench", "bench_training": ".bench", "format_bench": ".bench", "run_bench": ".bench",
         "synthetic_slice": ".bench"}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["ACTIONS", "GATE", "Identity", "InterruptedRun", "JobStatus", "OTHER_REASON", "PAGE_ACTIONS",
           "PageWorkSlots", "REFUSAL_REASONS", "RoleRules", "SERVER_PATH", "Settings", "TrainingJobs", "UploadGate",
           "append_audit", "audit_record", "bench_app", "bench_training", "can", "child_pids", "format_bench",
           "discard_interrupted", "free_port", "identity_for", "interrupted_runs", "load_settings", "local_identity",
           "model_event_record", "name_in_use", "owner_run_dir", "peak_rss_bytes", "resume_interrupted", "role_for",
           "run_bench", "start_streamlit", "stop", "switch_record", "synthetic_slice", "wait_healthy",
           "warm_default_model"]
