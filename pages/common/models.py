"""The models: the installed ones, the active one (picked in the sidebar), its predictor (cached, its model in
the model process) and its card, and how the picker names them."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from brainclf.errors import BrainclfError
from brainclf.escaping import md_literal
from brainclf.inference import Predictor, ProcessPredictor
from brainclf.input.limits import MODELS_KEPT
from brainclf.model import ModelCard, card_path, default_model, list_models, read_card
from brainclf.presentation import model_listing as listing_of
from brainclf.serving import warmup

from .identity import public, settings


def models_dir() -> Path:
    return settings().models_dir


@st.cache_resource(show_spinner=False, max_entries=MODELS_KEPT)
def load_predictor(path: str, mtime: float, card_mtime: float) -> ProcessPredictor:
    """One predictor per model file, shared by all sessions (mtimes: a replaced file, or a card rewritten, e.g.
    an upload's figures re-measured, is reloaded), its model in
    the model process (brainclf.inference.inference_process); the default one started when the server started
    (brainclf.serving.warmup)."""
    return warmup.take(Path(path)) or ProcessPredictor.start(path)


def model_process_predictor(path: Path) -> ProcessPredictor:
    """The model at `path`, opened in the model process (never in the server's own: an upload is untrusted), shared
    like the active one.

    Raises:
        BrainclfError: its card is missing or invalid.
        OSError: the model was removed meanwhile.
    """
    return load_predictor(str(path), path.stat().st_mtime, card_path(path).stat().st_mtime)


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
        mtimes = path.stat().st_mtime, card_path(path).stat().st_mtime
    except OSError:  # removed by an admin since it was picked (or since a site run saved it)
        st.error(f"Model {md_literal(path.name)} is no longer installed: pick another on the Model page.")
        return None
    try:
        predictor = load_predictor(str(path), *mtimes)
    except BrainclfError as e:
        st.error(f"Cannot load model {md_literal(path.name)}: {public(e)}")
        return None
    if wait and not model_ready(predictor):
        return None
    # The server's refer target (admin settings) applies to every model whose card has per-source curves, but site
    # models (their site chose theirs).
    server = settings()
    return predictor.with_tta(tta_setting(path, predictor.card.tta_default)).with_refer_target(
        server.refer_target, server.refer_confidence)


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


# More than any server installs: every page run lists every model, and a full card is megabytes to parse (0.4 s
# for a shipped one, with the interpreter lock held), so the listing must not fall out of a smaller cache.
LISTED_MODELS_KEPT = 1024


@st.cache_resource(max_entries=LISTED_MODELS_KEPT)
def _cached_listing(path: str, model_mtime: float, card_mtime: float) -> dict:
    """brainclf.presentation.model_listing of one model version. The card is read directly, not through
    `_cached_card`, so listing many models evicts no card a page is using."""
    try:
        card = read_card(path)
    except BrainclfError:
        card = None
    return listing_of(Path(path).stem, card)


def model_listing(path: Path) -> dict:
    """{"label", "verified", "card" (readable), "row" (None without a readable card)} of an installed model."""
    try:
        return _cached_listing(str(path), path.stat().st_mtime, card_path(path).stat().st_mtime)
    except OSError:
        return {"label": f"{path.stem} (card unreadable)", "verified": False, "card": False, "row": None}


def test_accuracy(card: ModelCard | None) -> float | None:
    return card.test_metrics().get("accuracy") if card else None
