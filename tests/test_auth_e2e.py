"""Sign-in end to end: a real OIDC provider (oidc-provider-mock) and `streamlit run app.py` with a temporary
secrets.toml, both on 127.0.0.1, driven by Debian's chromium through Playwright.

A clinician signs in: Home, Predict and Evaluation in the navigation, no Model page, Evaluation read-only.
A researcher signs in (their role comes from a group claim): the Model page with its training form, and
Evaluation's re-evaluation. Each signs out and lands on the sign-in page again. Bounded: every wait has a
timeout, the servers stop when the module ends.
"""

from __future__ import annotations

import secrets
import threading
from pathlib import Path

import pytest
from conftest import BROWSER_WAIT_MS, SERVER_START_S, new_page

from brainclf.serving import free_port, start_streamlit, stop, wait_healthy

CHROMIUM = "/usr/bin/chromium"
CLINICIAN = ("doc", {"email": "doc@clinic.example", "email_verified": True, "name": "Dr Doc"})
RESEARCHER = ("res", {"email": "res@uni.example", "name": "Res Earcher", "groups": ["radiology-research"]})


@pytest.fixture(scope="module")
def provider():
    """oidc-provider-mock on 127.0.0.1 with the two users pre-authorised (one click each), in a thread."""
    import werkzeug.serving
    from oidc_provider_mock import User, app

    users = [User(sub=sub, claims=claims) for sub, claims in (CLINICIAN, RESEARCHER)]
    server = werkzeug.serving.make_server("127.0.0.1", 0, app(user_claims=users), threaded=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(5)


@pytest.fixture(scope="module")
def server(provider, tmp_path_factory, synthetic_dataset):
    """The app with sign-in: a temporary secrets.toml (--secrets.files) and a temporary brainclf.toml."""
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: `make test` installs Debian's chromium")
    tmp = tmp_path_factory.mktemp("auth")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    (tmp / "secrets.toml").write_text(f"""[auth]
redirect_uri = "{url}/oauth2callback"
cookie_secret = "{secrets.token_hex(32)}"
client_id = "brainclf-test"
client_secret = "{secrets.token_hex(16)}"
server_metadata_url = "{provider}/.well-known/openid-configuration"
""")
    (tmp / "brainclf.toml").write_text(f"""[data]
brain-mri = "{synthetic_dataset}"

[paths]
audit = "{tmp / 'audit'}"

[roles.clinician]
emails = ["doc@clinic.example"]

[roles.researcher]
groups = ["radiology-research"]
""")
    proc = start_streamlit(port, env={"BRAINCLF_SETTINGS": str(tmp / "brainclf.toml")},
                           extra_args=["--secrets.files", str(tmp / "secrets.toml")])
    try:
        wait_healthy(url, timeout=SERVER_START_S, proc=proc)
        yield url
    finally:
        stop(proc)


def sign_in(browser, server: str, sub: str):
    """A fresh browser context (no cookies) signs in as `sub` on the provider's page; returns the page."""
    from playwright.sync_api import expect

    page = new_page(browser.new_context(viewport={"width": 1400, "height": 1000}))
    page.goto(server)
    sign_in_button = page.get_by_role("button", name="Sign in")
    expect(sign_in_button).to_be_visible(timeout=BROWSER_WAIT_MS)
    expect(page.get_by_test_id("stSidebarNav")).to_have_count(0)  # nothing else before signing in
    sign_in_button.click()
    page.get_by_role("button", name=sub, exact=True).click()  # the provider's pre-authorised user
    expect(page.get_by_text("Signed in as")).to_be_visible(timeout=BROWSER_WAIT_MS)
    return page


def nav_paths(page) -> list[str]:
    links = page.get_by_test_id("stSidebarNav").get_by_role("link")
    return sorted(links.evaluate_all("ls => ls.map(l => new URL(l.href).pathname)"))


def open_page(page, server: str, path: str, heading: str):
    from playwright.sync_api import expect

    page.goto(f"{server}/{path}")
    expect(page.get_by_role("heading", name=heading).first).to_be_visible(timeout=BROWSER_WAIT_MS)
    page.wait_for_function("!document.querySelector('[data-testid=\"stStatusWidget\"]')", timeout=BROWSER_WAIT_MS)


def sign_out(page):
    from playwright.sync_api import expect

    page.get_by_role("button", name="Sign out").click()
    end = page.get_by_role("button", name="End session")  # the provider's end-session page (RP-initiated logout)
    end.wait_for(timeout=BROWSER_WAIT_MS)
    end.click()
    expect(page.get_by_role("button", name="Sign in")).to_be_visible(timeout=BROWSER_WAIT_MS)
    expect(page.get_by_text("Signed in as")).to_have_count(0)


def test_clinician_sees_no_model_page_and_cannot_re_evaluate(browser, server):
    from playwright.sync_api import expect

    page = sign_in(browser, server, CLINICIAN[0])
    try:
        expect(page.get_by_text("Signed in as Dr Doc (clinician)")).to_be_visible()
        expect(page.get_by_test_id("stSidebarNav").get_by_role("link")).to_have_count(3)
        assert nav_paths(page) == ["/", "/evaluation", "/predict"]
        expect(page.get_by_text("Local mode: no sign-in")).to_have_count(0)
        open_page(page, server, "evaluation", "Evaluation")
        expect(page.get_by_role("heading", name="Confusion matrix")).to_be_visible()
        expect(page.get_by_text("Re-evaluate on a folder")).to_have_count(0)
        open_page(page, server, "model", "brainclf — brain MRI tumour classifier")  # not one of their pages: Home
        expect(page.get_by_role("button", name="Start training")).to_have_count(0)
        open_page(page, server, "", "brainclf — brain MRI tumour classifier")  # away from the 'page not found' dialog
        sign_out(page)
    finally:
        page.context.close()


def test_researcher_sees_the_model_page_and_trains(browser, server):
    from playwright.sync_api import expect

    page = sign_in(browser, server, RESEARCHER[0])
    try:
        expect(page.get_by_text("Signed in as Res Earcher (researcher)")).to_be_visible()
        expect(page.get_by_test_id("stSidebarNav").get_by_role("link")).to_have_count(4)
        assert nav_paths(page) == ["/", "/evaluation", "/model", "/predict"]
        open_page(page, server, "model", "Models")
        expect(page.get_by_text("Train a new model")).to_be_visible()
        expect(page.get_by_role("button", name="Start training")).to_be_visible()
        expect(page.get_by_text("Upload a model")).to_be_visible()
        expect(page.get_by_text("Remove a model")).to_have_count(0)  # admins only
        open_page(page, server, "evaluation", "Evaluation")
        expect(page.get_by_text("Re-evaluate on a folder")).to_be_visible()
        sign_out(page)
    finally:
        page.context.close()
