"""Who may do what: roles from the server's settings, rights per role. No Streamlit here: the pages ask
`can(role, action)` and hide or disable what a role may not do; app.py lists only the pages a role may open.

    clinician    Home, Predict, Evaluation (read-only: the card's results, no re-evaluation)
    researcher   + Model page: re-evaluate on a folder, train, upload models, site runs (validate, calibrate, adapt)
    admin        + remove models, audit-log settings, cancel anyone's training

Local mode (no [auth] section in Streamlit's secrets) is one person on a laptop, on 127.0.0.1: every right.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from .settings import ROLE_NAMES, RoleRules, Settings

CLINICIAN, RESEARCHER, ADMIN = ROLE_NAMES
LOCAL_USER = "local"

# Opening a page is an action too: app.py's st.navigation lists the pages whose action the role has.
PAGE_ACTIONS = {"home": "open_home", "predict": "open_predict", "evaluation": "open_evaluation",
                "model": "open_model"}
_CLINICIAN = frozenset({"open_home", "open_predict", "open_evaluation"})
_RESEARCHER = _CLINICIAN | {"open_model", "re_evaluate", "train", "upload_model", "site_workflow"}
_ADMIN = _RESEARCHER | {"remove_model", "audit_settings", "cancel_any_training"}
RIGHTS = {CLINICIAN: _CLINICIAN, RESEARCHER: _RESEARCHER, ADMIN: _ADMIN}
ACTIONS = _ADMIN


def can(role: str | None, action: str) -> bool:
    """Whether `role` may do `action`. No role (not signed in, or not in the role table) may do nothing.

    Raises:
        ValueError: an action nobody has (a typo in a page must fail loudly, not hide a button forever).
    """
    if action not in ACTIONS:
        raise ValueError(f"unknown action {action!r}; known: {', '.join(sorted(ACTIONS))}")
    return action in RIGHTS.get(role or "", frozenset())


def _groups(claim) -> list[str]:
    """A groups claim as providers send it: a list, or one string (space- or comma-separated)."""
    if isinstance(claim, str):
        return [g for g in claim.replace(",", " ").split() if g]
    if isinstance(claim, (list, tuple)):
        return [str(g) for g in claim]
    return []


def role_for(user_info: Mapping | None, settings: Settings | RoleRules) -> str | None:
    """The role of a signed-in user (st.user's claims) under the server's role table, or None.

    Matches the OIDC subject, the e-mail (case-insensitive; '*@domain' matches the whole domain; only when the
    provider says `email_verified` is true, or sends no such claim and the role table's require_email_verified
    is false) and each group in the groups claim; the highest role matched wins. A user who is not signed in,
    whom no rule names, or whose e-mail or subject [roles] deny lists, has no role.
    """
    rules = settings.roles if isinstance(settings, Settings) else settings
    if not user_info or not user_info.get("is_logged_in"):
        return None
    found = []
    sub, email = user_info.get("sub"), user_info.get("email")
    address = email.strip().lower() if isinstance(email, str) else ""
    if (isinstance(sub, str) and sub in rules.denied) or (address and (
            address in rules.denied or "*@" + address.rsplit("@", 1)[-1] in rules.denied)):
        return None  # [roles] deny wins over every rule that matches
    if isinstance(sub, str) and sub in rules.subjects:
        found.append(rules.subjects[sub])
    if isinstance(email, str) and "@" in email and _email_verified(user_info, rules.require_email_verified):
        email = email.strip().lower()
        for key in (email, "*@" + email.rsplit("@", 1)[1]):
            if key in rules.emails:
                found.append(rules.emails[key])
    found += [rules.groups[g] for g in _groups(user_info.get(rules.groups_claim)) if g in rules.groups]
    return max(found, key=ROLE_NAMES.index) if found else None


def _email_verified(user_info: dict, required: bool = True) -> bool:
    """Whether the provider vouches for the address: an email_verified claim of true (a JSON boolean, or the string
    "true" some user-info endpoints send); "false", 0, null or anything else is not. A missing claim counts only
    where the server's role table does not require one (providers that send none): anyone may type any address
    into an account at a provider that does not verify it, and a '*@hospital' rule would let them in."""
    if "email_verified" not in user_info:
        return not required
    verified = user_info["email_verified"]
    return verified is True or (isinstance(verified, str) and verified.strip().lower() == "true")


@dataclass(frozen=True)
class Identity:
    """Who is using this session: the mode, whether they signed in, their role and a stable id (the owner of
    their training jobs)."""

    local: bool
    signed_in: bool
    role: str | None
    user_id: str = ""  # 'sub:<subject>' (or 'email:<address>'); LOCAL_USER in local mode
    label: str = ""  # what the sidebar shows: name or e-mail

    def can(self, action: str) -> bool:
        return can(self.role, action)

    @property
    def is_admin(self) -> bool:
        return self.role == ADMIN


def local_identity() -> Identity:
    return Identity(local=True, signed_in=True, role=ADMIN, user_id=LOCAL_USER, label="local user")


def identity_for(user_info: Mapping | None, settings: Settings) -> Identity:
    """Server mode: the identity behind st.user's claims."""
    if not user_info or not user_info.get("is_logged_in"):
        return Identity(local=False, signed_in=False, role=None)
    sub, email = user_info.get("sub"), user_info.get("email")
    user_id = f"sub:{sub}" if sub else (f"email:{str(email).lower()}" if email else "")
    label = str(user_info.get("name") or email or sub or "signed-in user")
    return Identity(local=False, signed_in=True, role=role_for(user_info, settings), user_id=user_id, label=label)


LOOPBACK = ("127.0.0.1", "localhost", "::1")


def local_mode_problem(address: str | None, allowed_hosts, settings: Settings) -> str | None:
    """Why local mode (no sign-in, every right) must not run with Streamlit's `server.address` and
    `server.allowedHosts`, or None: it serves 127.0.0.1 only, to pages opened by a loopback name only (DNS
    rebinding), and a server whose settings name roles is meant to have sign-in."""
    if str(address or "") not in LOOPBACK and not str(address or "").startswith("127."):
        return ("Local mode (no sign-in) serves 127.0.0.1 only, and this server listens on another address. "
                "Configure sign-in: an [auth] section in .streamlit/secrets.toml (see secrets.toml.example).")
    hosts = list(allowed_hosts or [])
    if not hosts or any(str(h) not in LOOPBACK for h in hosts):
        return ("Local mode (no sign-in) answers pages opened as localhost or 127.0.0.1 only: set server.allowedHosts "
                'to ["localhost", "127.0.0.1"] (the shipped .streamlit/config.toml does); an empty list or another '
                "name lets any web page that points its name at this machine act with every right.")
    if settings.roles.emails or settings.roles.subjects or settings.roles.groups:
        return ("The server settings name roles, but sign-in is not configured: add an [auth] section to "
                ".streamlit/secrets.toml (see secrets.toml.example).")
    return None
