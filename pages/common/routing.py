"""Routing: every page run goes through app.py's st.navigation (Streamlit's legacy `pages/` mode ended)."""

from __future__ import annotations

import sys
from pathlib import Path

import streamlit as st


def route_through_app(once_per_session: bool = False) -> None:
    """Send a run that Streamlit started in legacy `pages/` mode through app.py's st.navigation instead.

    Streamlit decides, before any of this app's code runs, that an app with a top-level `pages/` folder is a
    legacy multipage app, and stays so until app.py's st.navigation has run once in the process. Until then a
    bookmarked /predict runs pages/predict.py on its own (no model picker; every module of pages/ listed as
    a page; /common a blank page while pages/common.py was a module). Streamlit 1.67 has no setting to turn
    that off, so this ends legacy mode for the process and reruns: app.py then routes the request like any
    other (an unknown path such as /common lands on Home with Streamlit's "page not found" notice). A no-op
    once app.py's navigation ran.
    Called at the top of app.py and of every page.
    """
    try:
        from streamlit.runtime.pages_manager import PagesManager
        from streamlit.runtime.scriptrunner import get_script_run_ctx
    except ImportError:  # a Streamlit without the legacy mode
        return
    in_a_run = get_script_run_ctx(suppress_warning=True) is not None
    # Decided per run, not by the process-wide flag alone: on a fresh server several sessions can start legacy
    # runs at once, and only the first would see the flag still set (the others then ran a bare page and
    # failed; measured with 4 simultaneous sessions). A page run by app.py's navigation has app.py on its stack.
    if not in_a_run:
        return
    legacy = bool(getattr(PagesManager, "uses_pages_directory", None))
    # A session whose run started in legacy mode after another session had already ended it is rerouted once
    # (AppTest runs a switched-to page outside app.py on every run, and would loop otherwise).
    # `once_per_session`: never again after this session's first reroute, even in legacy mode (a page whose
    # button clicks a rerun would drop, under AppTest that starts every run in legacy mode).
    first = not st.session_state.get("_routed_through_app")
    if (legacy and (first or not once_per_session)) or (first and not _run_by_app()):
        st.session_state["_routed_through_app"] = True
        if legacy:
            PagesManager.uses_pages_directory = False  # what st.navigation itself sets
        st.rerun()


_APP = Path(__file__).resolve().parents[2] / "app.py"


def _run_by_app() -> bool:
    """Whether this code runs inside app.py's script run (its navigation runs the pages)."""
    frame = sys._getframe(1)
    while frame is not None:
        name = frame.f_code.co_filename
        if name.endswith("app.py") and Path(name).resolve() == _APP:
            return True
        frame = frame.f_back
    return False
