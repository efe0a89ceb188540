"""The sidebar of every page (app.py draws it): who is signed in, the active model, the dataset, the server-wide
settings an admin may switch, and flip test-time augmentation for the active model."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from brainclf.escaping import md_literal
from brainclf.model import ModelCard
from brainclf.presentation import is_study_card, study_note
from brainclf.serving import Identity

from .identity import identity, settings
from .models import active_model_path, available_models, card_of, model_listing, test_accuracy, tta_key
from .session import audit_enabled, audit_toggled, data_root_names


def sidebar_model_picker(who: Identity | None = None) -> None:
    who = who or identity()
    models = available_models()
    with st.sidebar:
        _signed_in(who)
        st.markdown("### Active model")
        if not models:
            st.warning("No models yet.")
            return
        current = active_model_path()
        card = _model_select(models, current)
        _dataset_select()
        _settings(who)
        _tta_toggle(current, card)
        st.caption("Research and education only — not for diagnosis.")


def _signed_in(who: Identity) -> None:
    if who.local:
        st.info("**Local mode: no sign-in.** Every feature is on; the app serves this computer only "
                "(127.0.0.1).", icon=":material/laptop:")
    else:
        st.caption(f"Signed in as **{md_literal(who.label)}** ({who.role}).")
        st.button("Sign out", key="sign_out", on_click=st.logout, icon=":material/logout:")


def _model_select(models: list[Path], current: Path) -> ModelCard | None:
    """The active-model selectbox (and a study model's warning); returns the active model's card."""
    labels = {str(p): model_listing(p)["label"] for p in models}
    keys = list(labels)
    if st.session_state.get("model_path") not in keys:
        st.session_state.pop("model_path", None)  # a model file that disappeared
    st.selectbox("Model", keys, index=keys.index(str(current)), format_func=labels.get, key="model_path",
                 help="Used by the Predict and Evaluation pages. Study/baseline models are kept for comparison "
                 "and are not for reading scans.")
    card = card_of(current)
    if is_study_card(card):
        st.error(f"{md_literal(current.stem)}: {study_note(test_accuracy(card))}.", icon=":material/science:")
    return card


def _dataset_select() -> None:
    names = data_root_names()
    if names:
        if st.session_state.get("data_root") not in names:
            default = settings().default_root()
            st.session_state["data_root"] = default.name if default else names[0]
        st.selectbox("Dataset", names, key="data_root",
                     help="The dataset whose images the Evaluation page shows (the folders this server "
                     "offers, by name). Set by the server: $BRAINCLF_DATA or [data] in brainclf.toml.")
    else:
        st.caption("No dataset is offered on this server: $BRAINCLF_DATA is unset or names no dataset folder, and "
                   "brainclf.toml has no usable [data] (the server log says which). The Evaluation page lists "
                   "images without showing them.")


def _settings(who: Identity) -> None:
    with st.expander("Settings"):
        help_text = ("Append one JSON line per prediction (time, who asked, the case reference, SHA-256 of the "
                     "input, model and version, flip TTA, output) to the server's audit log, for every session; "
                     "switching it on or off is logged too. Never pixels, file names or DICOM tags.")
        if who.can("audit_settings"):
            st.session_state["audit"] = audit_enabled()  # the server-wide state (another admin may switch it)
            st.toggle("Audit log", key="audit", on_change=audit_toggled, help=help_text)
        else:
            st.caption(f"Audit log: **{'on' if audit_enabled() else 'off'}** (set by an admin).",
                       help=help_text)


def _tta_toggle(current: Path, card: ModelCard | None) -> None:
    card_default = bool(card and card.tta_default)
    key = tta_key(current)
    if key not in st.session_state:
        st.session_state[key] = card_default  # each model starts as its card says
    st.toggle("Flip test-time augmentation", key=key,
              help="Average the prediction with that of the left-right mirrored slice (2× the compute). "
              f"This model's card: {'on' if card_default else 'off'} by default (chosen on validation).")
