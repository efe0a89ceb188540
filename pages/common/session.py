"""What the sessions share (the training jobs, the audit switch) and what each keeps (its cases, its dataset)."""

from __future__ import annotations

import sys
from pathlib import Path

import streamlit as st
from streamlit.runtime.scriptrunner import get_script_run_ctx

from brainclf.errors import BrainclfError
from brainclf.model import read_card
from brainclf.presentation import CaseBook
from brainclf.serving import GATE, PageWorkSlots, TrainingJobs, append_audit, model_event_record, switch_record

from .identity import identity, settings


@st.cache_resource
def training_jobs() -> TrainingJobs:
    """Process-wide: one training at a time, visible to every session."""
    keep_keras_state()
    return TrainingJobs()


def kept_across_pages(*keys: str) -> None:
    """Call before the widgets of `keys` are drawn: Streamlit forgets a widget's value when a run does not draw it
    (another page), so a copy under another key, refreshed on every run that has it, brings it back."""
    for key in keys:
        copy = f"kept::{key}"
        if key in st.session_state:
            st.session_state[copy] = st.session_state[key]
        elif copy in st.session_state:
            st.session_state[key] = st.session_state[copy]


def redraw_page_when_job_ends(status, key: str) -> None:
    """Called by a job panel (a fragment redrawn every second): once a job this session saw running has ended (done,
    cancelled or failed), rerun the whole page once, so what lies outside the fragment follows: the start buttons
    it disabled, the models table and the sidebar's picker with a new model, a site step's figures."""
    seen = f"{key}_seen_running"
    if status is not None and status.active:
        st.session_state[seen] = status.started
    elif status is not None and st.session_state.get(seen) == status.started:
        del st.session_state[seen]
        st.rerun(scope="app")


@st.cache_resource
def page_work() -> PageWorkSlots:
    """Process-wide: how many evaluations run inside pages at once (brainclf.serving.page_work)."""
    return PageWorkSlots()


def keep_keras_state() -> None:
    """Stop Streamlit clearing Keras's global state after every script run.

    Streamlit calls keras.backend.clear_session() at the end of each run (for apps that build models in their
    scripts) where Keras is loaded. The server's process loads none now (models run in the model process,
    trainings and site steps in processes of their own), but when trainings ran in a job thread here, the
    progress fragments' reruns every second made one 72-slice adaptation epoch take 225 s instead of ~2 s and
    failed a site validation with a ValueError; a process that loads Keras beside the pages (the test runner's
    AppTest, with in-process models) would meet the same. Matplotlib's part of the clean-up is kept.
    """
    from streamlit.runtime.scriptrunner import script_runner

    if getattr(script_runner._clean_problem_modules, "keeps_keras", False):
        return

    def clean_up() -> None:
        if (plt := sys.modules.get("matplotlib.pyplot")) is not None:
            plt.close("all")

    clean_up.keeps_keras = True
    script_runner._clean_problem_modules = clean_up


def case_book() -> CaseBook:
    """This session's cases (uploads by content hash, results per model): they survive page changes. Its uploads
    count towards its user's budget in their other sessions, and theirs here (the upload gate)."""
    ctx = get_script_run_ctx()
    session_id = ctx.session_id if ctx is not None else ""
    if "case_book" not in st.session_state:
        st.session_state["case_book"] = CaseBook(others_held=lambda: GATE.others_held(session_id),
                                                 others_results=lambda: GATE.others_results(session_id),
                                                 admit_lock=GATE.results_lock)
    GATE.register_book(session_id, st.session_state["case_book"])
    return st.session_state["case_book"]


def data_root() -> Path | None:
    """The data root picked in the sidebar (by name; brainclf.serving.settings maps it to its folder), for galleries."""
    s = settings()
    root = s.root(st.session_state.get("data_root")) or s.default_root()
    return root.path if root else None


def data_root_names() -> list[str]:
    return settings().root_names()


@st.cache_resource
def _audit_switch(audit_file: str) -> dict:
    """Process-wide: the audit log is on or off for every session (an admin switches it), per audit file."""
    return {"enabled": None}


def _audit_state() -> dict:
    s = settings()
    switch = _audit_switch(str(s.audit_file))
    if switch["enabled"] is None:
        switch["enabled"] = s.audit_enabled  # as the settings say, until an admin switches it
    return switch


def audit_enabled() -> bool:
    return bool(_audit_state()["enabled"])


def audit_toggled() -> None:
    """An admin's switch: the log records who turned it off (its last line) or on (its first)."""
    who = identity()
    if not who.can("audit_settings"):
        return
    state, on = _audit_state(), bool(st.session_state.get("audit"))
    if on != bool(state["enabled"]):
        try:
            append_audit(settings().audit_file, switch_record(on, who.user_id))
        except OSError:
            st.toast("The audit log cannot be written: the switch was not recorded. Check the audit folder.",
                     icon=":material/error:")
    state["enabled"] = on


def audit_path() -> Path | None:
    """The server's audit log file while the audit log is on, else None: fixed by the settings, never chosen
    by a user."""
    return settings().audit_file if audit_enabled() else None


def card_file_hash(model: Path) -> str:
    """The model file's SHA-256 its card beside it records, or '' (no readable card: removed, or not made yet)."""
    try:
        return read_card(model).file_sha256
    except (BrainclfError, OSError):
        return ""


def record_model_event(event: str, model: Path, sha256: str | None = None) -> None:
    """One line in the audit log, while it is on, saying that this session's user changed the model at `model` or
    started a job that will make one (brainclf.serving.audit.model_event_record); `sha256`: its file's hash, by
    default the one its card beside it records."""
    if (path := audit_path()) is None:
        return
    sha = card_file_hash(model) if sha256 is None else sha256
    try:
        append_audit(path, model_event_record(event, identity().user_id, Path(model).stem, sha))
    except OSError:
        st.toast("The audit log cannot be written: this change was not recorded. Check the audit folder.",
                 icon=":material/error:")
