"""Server settings, sign-in and roles: who uses this session and what they may do, and messages as a user may
see them."""

from __future__ import annotations

import streamlit as st

from brainclf.errors import ConfigError
from brainclf.escaping import md_literal
from brainclf.serving import Identity, Settings, identity_for, load_settings, local_identity
from brainclf.serving.access import local_mode_problem as serving_local_mode_problem


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
    """Why local mode must not run with this server's address and allowed hosts (brainclf.serving), or None."""
    return serving_local_mode_problem(st.get_option("server.address"), st.get_option("server.allowedHosts"), s)


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
