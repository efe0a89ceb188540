"""Shared app plumbing: routing, server settings, sign-in and roles, the cached model, the active-model picker,
the dataset, the training jobs, the session's cases."""

from __future__ import annotations

import sys
from pathlib import Path

import streamlit as st

from brainclf.errors import BrainclfError, ConfigError
from brainclf.escaping import md_literal
from brainclf.evaluation import card_is_verified
from brainclf.inference import Predictor, ProcessPredictor
from brainclf.model import ModelCard, card_path, default_model, list_models, read_card
from brainclf.presentation import (  # noqa: F401 (pages use class_label)
    FALLBACK_REFER_BELOW,
    CaseBook,
    class_label,
    external_accuracy,
    is_study_model,
    pct,
    source_tag,
    study_note,
)
from brainclf.serving import Identity, Settings, TrainingJobs, identity_for, load_settings, local_identity, warmup


def route_through_app(once_per_session: bool = False) -> None:
    """Send a run that Streamlit started in legacy `pages/` mode through app.py's st.navigation instead.

    Streamlit decides, before any of this app's code runs, that an app with a top-level `pages/` folder is a
    legacy multipage app, and stays so until app.py's st.navigation has run once in the process. Until then a
    bookmarked /predict runs pages/predict.py on its own (no model picker; every module of pages/ listed as
    a page; /common a blank page). Streamlit 1.67 has no setting to turn that off, so this ends legacy mode
    for the process and reruns: app.py then routes the request like any other (an unknown path such as
    /common lands on Home with Streamlit's "page not found" notice). A no-op once app.py's navigation ran.
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


_APP = Path(__file__).resolve().parent.parent / "app.py"


def _run_by_app() -> bool:
    """Whether this code runs inside app.py's script run (its navigation runs the pages)."""
    frame = sys._getframe(1)
    while frame is not None:
        name = frame.f_code.co_filename
        if name.endswith("app.py") and Path(name).resolve() == _APP:
            return True
        frame = frame.f_back
    return False


if __name__ == "__main__":  # Streamlit running this module itself as a legacy page (/common)
    route_through_app()
# Never on import: a rerun raised while the module is half-imported left other sessions that imported it at
# the same moment with a half-initialised module ("cannot import name ..." on a fresh server).

REFER_BELOW = FALLBACK_REFER_BELOW  # refer threshold for models whose card has none fitted on validation
LOOPBACK = ("127.0.0.1", "localhost", "::1")


# ---- server settings, sign-in and roles ------------------------------------------------------------------------
def settings() -> Settings:
    """The server's settings (brainclf.serving.settings: TOML file + environment), read on every run: cheap, and an
    edited file applies without a restart. app.py shows a clear error and stops when they are invalid."""
    return load_settings()


def auth_configured() -> bool:
    """Whether Streamlit's secrets have an [auth] section (server mode: OIDC sign-in).

    Raises:
        ConfigError: a secrets file exists but cannot be read (never fall back to local mode on a typo).
    """
    try:
        return "auth" in st.secrets
    except FileNotFoundError as e:  # Streamlit's StreamlitSecretNotFoundError
        if getattr(e, "error_id", None) == "no-secrets-found":
            return False
        raise ConfigError("Streamlit's secrets file cannot be read; fix .streamlit/secrets.toml.") from None


def local_mode_problem(s: Settings) -> str | None:
    """Why local mode (no sign-in, every right) must not run here, or None: it serves 127.0.0.1 only, and a
    server whose settings name roles is meant to have sign-in."""
    address = st.get_option("server.address")
    if str(address or "") not in LOOPBACK and not str(address or "").startswith("127."):
        return ("Local mode (no sign-in) serves 127.0.0.1 only, and this server listens on another address. "
                "Configure sign-in: an [auth] section in .streamlit/secrets.toml (see secrets.toml.example).")
    if s.roles.emails or s.roles.subjects or s.roles.groups:
        return ("The server settings name roles, but sign-in is not configured: add an [auth] section to "
                ".streamlit/secrets.toml (see secrets.toml.example).")
    return None


def identity() -> Identity:
    """Who uses this session: local mode (every right) or the signed-in user and their role."""
    if not auth_configured():
        return local_identity()
    info = dict(st.user) if st.user.get("is_logged_in") else {}
    return identity_for(info, settings())


def require(action: str) -> Identity:
    """Stop the page unless this session's role may `action` (st.navigation already hides the page: this also
    covers a page run any other way)."""
    who = identity()
    if not who.can(action):
        st.error("Your role does not give access to this page.", icon=":material/lock:")
        st.stop()
    return who


def public(text: object) -> str:
    """A message as a user may see it: server paths replaced by names (brainclf.serving.settings.Settings.redact), as
    Markdown that renders literally (it may quote a file name or a card's text: brainclf.escaping)."""
    return md_literal(settings().redact(str(text)))


# ---- models -----------------------------------------------------------------------------------------------------
def models_dir() -> Path:
    return settings().models_dir


@st.cache_resource(show_spinner=False, max_entries=4)
def load_predictor(path: str, mtime: float) -> ProcessPredictor:
    """One predictor per model file, shared by all sessions (mtime: a replaced file is reloaded), its model in
    the model process (brainclf.inference.inference_process); the default one started when the server started
    (brainclf.serving.warmup)."""
    return warmup.take(Path(path)) or ProcessPredictor.start(path)


@st.cache_resource
def training_jobs() -> TrainingJobs:
    """Process-wide: one training at a time, visible to every session."""
    return TrainingJobs()


def available_models() -> list[Path]:
    return list_models(models_dir())


def active_model_path() -> Path | None:
    chosen = st.session_state.get("model_path")
    paths = {str(p): p for p in available_models()}
    return paths[chosen] if chosen in paths else default_model(models_dir())


def get_predictor(path: Path | None = None, wait: bool = True) -> Predictor | None:
    """The active (or given) model, or None after showing a clear error. `wait=False`: return before its
    model process has loaded it (the card is read; the first model call waits), so a page can lay out first;
    such a page calls `model_ready` before it runs the model."""
    path = path or active_model_path()
    if path is None:
        st.error("No model with a card is installed yet. Train one on the Model page or run "
                 "`python -m brainclf train`.")
        return None
    try:
        predictor = load_predictor(str(path), path.stat().st_mtime)
    except BrainclfError as e:
        st.error(f"Cannot load model {md_literal(path.name)}: {public(e)}")
        return None
    if wait and not model_ready(predictor):
        return None
    # The server's refer target (an admin setting) applies to every model whose card has per-source curves.
    return predictor.with_tta(tta_setting(path, predictor.card.tta_default)).with_refer_target(settings().refer_target)


def model_ready(predictor: Predictor) -> bool:
    """Wait (with a spinner) until the model has loaded; False after a clear error if it cannot."""
    try:
        with st.spinner(f"Loading model {md_literal(predictor.card.name)}…"):
            predictor.wait_ready()
        return True
    except BrainclfError as e:
        st.error(f"Cannot load model {md_literal(predictor.card.name)}: {public(e)}")
        return False


def tta_key(path: Path) -> str:
    """Keyed by the model's name, not its path: a widget's key travels to the browser inside its element id."""
    return f"tta::{path.stem}"


def tta_setting(path: Path, card_default: bool) -> bool:
    """Flip TTA for this model: the user's choice in this session, else what the model's card says."""
    return bool(st.session_state.get(tta_key(path), card_default))


@st.cache_resource(max_entries=32)
def _cached_card(path: str, model_mtime: float, card_mtime: float) -> ModelCard:
    """Parsed once per file version and shared (cards hold every test prediction: megabytes of JSON)."""
    return read_card(path)


def card_of(path: Path) -> ModelCard | None:
    """The model's card (read-only: shared between sessions), or None if it is missing or broken."""
    try:
        return _cached_card(str(path), path.stat().st_mtime, card_path(path).stat().st_mtime)
    except (BrainclfError, OSError):
        return None


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


def _audit_toggled() -> None:
    if identity().can("audit_settings"):
        _audit_state()["enabled"] = bool(st.session_state.get("audit"))


def sidebar_model_picker(who: Identity | None = None) -> None:
    who = who or identity()
    models = available_models()
    with st.sidebar:
        if who.local:
            st.info("**Local mode: no sign-in.** Every feature is on; the app serves this computer only "
                    "(127.0.0.1).", icon=":material/laptop:")
        else:
            st.caption(f"Signed in as **{md_literal(who.label)}** ({who.role}).")
            st.button("Sign out", key="sign_out", on_click=st.logout, icon=":material/logout:")
        st.markdown("### Active model")
        if not models:
            st.warning("No models yet.")
            return
        current = active_model_path()
        labels, cards = {}, {}
        for p in models:
            card = cards[str(p)] = card_of(p)
            labels[str(p)] = model_choice_label(p, card)
        keys = list(labels)
        if st.session_state.get("model_path") not in keys:
            st.session_state.pop("model_path", None)  # a model file that disappeared
        st.selectbox("Model", keys, index=keys.index(str(current)), format_func=labels.get, key="model_path",
                     help="Used by the Predict and Evaluation pages. Study/baseline models are kept for comparison "
                     "and are not for reading scans.")
        if is_study(cards.get(str(current))):
            st.error(f"{md_literal(current.stem)}: {study_note(test_accuracy(cards[str(current)]))}.",
                     icon=":material/science:")
        names = data_root_names()
        if names:
            if st.session_state.get("data_root") not in names:
                default = settings().default_root()
                st.session_state["data_root"] = default.name if default else names[0]
            st.selectbox("Dataset", names, key="data_root",
                         help="The dataset whose images the Evaluation page shows (the folders this server "
                         "offers, by name). Set by the server: $BRAINCLF_DATA or [data] in brainclf.toml.")
        else:
            st.caption("No dataset is configured on this server (set $BRAINCLF_DATA or [data] in brainclf.toml): "
                       "the Evaluation page lists images without showing them.")
        with st.expander("Settings"):
            help_text = ("Append one JSON line per prediction (time, SHA-256 of the input, model and version, "
                         "output) to the server's audit log, for every session. Never pixels, names or DICOM tags.")
            if who.can("audit_settings"):
                st.session_state["audit"] = audit_enabled()  # the server-wide state (another admin may switch it)
                st.toggle("Audit log", key="audit", on_change=_audit_toggled, help=help_text)
            else:
                st.caption(f"Audit log: **{'on' if audit_enabled() else 'off'}** (set by an admin).",
                           help=help_text)
        card = cards.get(str(current))
        card_default = bool(card and card.tta_default)
        key = tta_key(current)
        if key not in st.session_state:
            st.session_state[key] = card_default  # each model starts as its card says
        st.toggle("Flip test-time augmentation", key=key,
                  help="Average the prediction with that of the left-right mirrored slice (2× the compute). "
                  f"This model's card: {'on' if card_default else 'off'} by default (chosen on validation).")
        st.caption("Research and education only — not for diagnosis.")


def test_accuracy(card: ModelCard | None) -> float | None:
    return card.test_metrics().get("accuracy") if card else None


def is_study(card: ModelCard | None) -> bool:
    """A study/baseline model (the seed CNN, or under 90 % test accuracy): not for reading scans."""
    return bool(card) and is_study_model(card.architecture, test_accuracy(card))


def model_choice_label(path: Path, card: ModelCard | None) -> str:
    """How the picker names a model: 'seed (seed, Kaggle only; Kaggle test 68.2 %) · study/baseline: not for
    reading scans'; an upload's figures say they are its uploader's claim until re-measured here."""
    if card is None:
        return f"{path.stem} (card unreadable)"
    acc, ext = test_accuracy(card), external_accuracy(card)
    claimed = "" if card_is_verified(card) else " claimed, not verified"
    label = (f"{path.stem} ({card.architecture}, {source_tag(card)}"
             + (f"; Kaggle test {pct(acc)}{claimed}" if acc else "")
             + (f", other source {pct(ext)}{claimed}" if ext is not None else "") + ")")
    return label + (" · study/baseline: not for reading scans" if is_study(card) else "")


def case_book() -> CaseBook:
    """This session's cases (uploads by content hash, results per model): they survive page changes."""
    if "case_book" not in st.session_state:
        st.session_state["case_book"] = CaseBook()
    return st.session_state["case_book"]


def audit_path() -> Path | None:
    """The server's audit log file while the audit log is on, else None: fixed by the settings, never chosen
    by a user."""
    return settings().audit_file if audit_enabled() else None


