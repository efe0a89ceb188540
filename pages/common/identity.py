"""Server settings, sign-in and roles: who uses this session and what they may do, and messages as a user may
see them."""

from __future__ import annotations

import streamlit as st

from brainclf.errors import ConfigError
from brainclf.escaping import md_literal
from brainclf.serving import Identity, Settings, identity_for, load_settings, local_identity

LOOPBACK = ("127.0.0.1", "localhost", "::1")


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
    """Why local mode (no sign-in, every right) must not run here, or None: it serves 127.0.0.1 only, to pages
    opened by a loopback name only (DNS rebinding), and a server whose settings name roles is meant to have
    sign-in."""
    address = st.get_option("server.address")
    if str(address or "") not in LOOPBACK and not str(address or "").startswith("127."):
        return ("Local mode (no sign-in) serves 127.0.0.1 only, and this server listens on another address. "
                "Configure sign-in: an [auth] section in .streamlit/secrets.toml (see secrets.toml.example).")
    hosts = list(st.get_option("server.allowedHosts") or [])
    if not hosts or any(str(h) not in LOOPBACK for h in hosts):
        return ("Local mode (no sign-in) answers pages opened as localhost or 127.0.0.1 only: set server.allowedHosts "
                'to ["localhost", "127.0.0.1"] (the shipped .streamlit/config.toml does); an empty list or another '
                "name lets any web page that points its name at this machine act with every right.")
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
