"""brainclf — Streamlit front door. Pages only lay out widgets; everything that computes is in brainclf/.

Sign-in: with an [auth] section in Streamlit's secrets (.streamlit/secrets.toml.example) users sign in with
st.login (OIDC) and get a role from the server's settings (brainclf.serving: settings, access); the navigation
lists only the pages their role may open. Without one the app runs in local mode: one person on 127.0.0.1,
no sign-in, every feature on.

`streamlit run app.py` first imports this file as a module, finds `app` (an st.App: the same server, with a
start-up hook that starts the model process loading TensorFlow and the default model before anyone visits; see
serving.warmup and inference.inference_process) and serves it; every session then runs this file as __main__,
which calls main().
"""

import streamlit as st

from brainclf.escaping import md_literal

PAGES = [  # (file, title, icon, key in brainclf.serving.access.PAGE_ACTIONS)
    ("pages/home.py", "Home", ":material/home:", "home"),
    ("pages/predict.py", "Predict", ":material/search:", "predict"),
    ("pages/evaluation.py", "Evaluation", ":material/monitoring:", "evaluation"),
    ("pages/model.py", "Model", ":material/model_training:", "model"),
]
TITLE = "brainclf — brain MRI tumour classifier"


def sign_in() -> None:
    st.title(TITLE)
    st.markdown("This server needs you to sign in with your organisation's account.")
    st.button("Sign in", type="primary", on_click=st.login, icon=":material/login:", key="sign_in")
    st.caption("Research and education only — not for diagnosis.")


def no_access() -> None:
    from pages.common import identity

    st.title(TITLE)
    st.warning(f"You are signed in as **{md_literal(identity().label)}**, but this server gives your account no "
               "role. Ask an administrator to add you to brainclf's role table (a rule by e-mail counts only "
               "for an address your sign-in provider says is verified).", icon=":material/lock:")
    st.button("Sign out", on_click=st.logout, icon=":material/logout:", key="sign_out")


def only_page(fn, title: str) -> None:
    """A session that may see one page only (sign-in, no access): no sidebar navigation, no model picker."""
    st.navigation([st.Page(fn, title=title, default=True)], position="hidden").run()
    st.stop()


def allow_uploads(allowed: bool, user_id: str) -> None:
    """Tell the upload gate whether this browser session's user may upload (sign-in and role can change), and
    who that is: the byte budget is the user's, over all of their sessions."""
    from streamlit.runtime.scriptrunner import get_script_run_ctx

    from brainclf.serving import GATE

    ctx = get_script_run_ctx()
    if ctx is not None:
        if allowed:  # a statement, not a conditional expression: Streamlit's magic would write its None
            GATE.allow(ctx.session_id, user_id)
        else:
            GATE.revoke(ctx.session_id)


def main() -> None:
    # A 240 px sidebar (Streamlit's default is wider) leaves the Grad-CAM readable on an 800 px window.
    st.set_page_config(page_title=TITLE, page_icon=":material/neurology:", layout="wide", initial_sidebar_state=240)

    from brainclf.errors import ConfigError
    from brainclf.serving import PAGE_ACTIONS
    from pages.common import (
        auth_configured,
        identity,
        local_mode_problem,
        route_through_app,
        settings,
        sidebar_model_picker,
    )

    route_through_app()  # the first request of a fresh server can arrive in Streamlit's legacy pages/ mode
    try:
        server_mode = auth_configured()
        config = settings()
    except ConfigError as e:
        st.error(f"This server is misconfigured: {md_literal(e)}", icon=":material/error:")
        st.stop()
    if not server_mode and (problem := local_mode_problem(config)):
        st.error(problem, icon=":material/error:")
        st.stop()
    who = identity()
    # Before any upload is stored the server asks the gate (brainclf.serving.upload_gate).
    allow_uploads(who.can("open_predict"), who.user_id)
    if not who.signed_in:
        only_page(sign_in, "Sign in")
    if who.role is None:
        only_page(no_access, "No access")

    pages = [st.Page(file, title=title, icon=icon, default=key == "home")
             for file, title, icon, key in PAGES if who.can(PAGE_ACTIONS[key])]
    nav = st.navigation(pages)
    sidebar_model_picker(who)
    nav.run()


if __name__ == "__main__":  # a session's run
    main()
else:  # imported by `streamlit run app.py`, which serves `app`
    from contextlib import asynccontextmanager

    from brainclf.serving import warm_default_model

    @asynccontextmanager
    async def start_up(server):
        """Uploads gated before anyone visits (brainclf.serving.upload_gate); the default model warming meanwhile."""
        from streamlit.runtime import Runtime

        from brainclf.serving import GATE

        GATE.install(Runtime.instance().uploaded_file_mgr)
        async with warm_default_model(server):
            yield

    app = st.App(__file__, lifespan=start_up)
