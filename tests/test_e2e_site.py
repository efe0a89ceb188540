"""Issue #24 in a real browser: a researcher (local mode: every right) runs validate → calibrate → adapt on a small
made-up site from the Model page, sees each step's figures, and the Predict page with the adapted model then
states the site scope. Debian's chromium via Playwright against `streamlit run` on 127.0.0.1; no dataset."""

from __future__ import annotations

import re

import pytest
from conftest import SERVER_START_S, copy_model, new_page
from test_site import write_site

from brainclf.serving import free_port, start_streamlit, stop, wait_healthy

# The adapt step fine-tunes 14 epochs and then checks the model: 508 s with this test alone on the 2-core machine, past
# 600 s in CI beside other browser tests (72 s an epoch there against 24 s alone), so the wait is twice that.
STEP_WAIT_MS = 1_200_000
IDLE = "!document.querySelector('[data-testid=\"stStatusWidget\"]')"


@pytest.fixture(scope="module")
def site_server(tmp_path_factory, synthetic_dataset, smoke_model):
    base = tmp_path_factory.mktemp("e2e-site")
    site = write_site(base / "st-elsewhere")
    toml = base / "brainclf.toml"
    toml.write_text(f'[data]\nbrain-mri = "{synthetic_dataset}"\nst-elsewhere = "{site}"\n')
    models = base / "models"
    copy_model(smoke_model, models, "smoke")
    env = {"BRAINCLF_SETTINGS": str(toml), "BRAINCLF_MODELS": str(models), "BRAINCLF_RUNS": str(base / "runs"),
           "BRAINCLF_AUDIT_DIR": str(base / "audit"), "BRAINCLF_DATA": ""}
    port = free_port()
    log = base / "server.log"
    with open(log, "wb") as out:
        proc = start_streamlit(port, env=env, output=out)
        try:
            wait_healthy(f"http://127.0.0.1:{port}", timeout=SERVER_START_S, proc=proc)
            yield f"http://127.0.0.1:{port}", models, log
        finally:
            stop(proc)


def _pick(page, label: str, option: str, picked, tries: int = 3) -> None:
    """Pick `option` in the selectbox `label`; `picked()` asserts (Playwright's expect) what the pick should show."""
    from playwright.sync_api import expect

    box = page.get_by_role("combobox", name=label)
    for attempt in range(tries):
        # On a loaded machine (CI, the whole suite beside it) a pick once left the first option selected for good,
        # and keys typed straight after the click once reached a list that was not open yet: each try checks the
        # list is open, what it offers and what the pick should show, and a failed try is made again.
        try:
            box.click()
            expect(page.get_by_role("option").first).to_be_visible(timeout=30_000)  # the list is open
            box.press_sequentially(option)
            # Keys, once the list shows this option alone: a click on the option could keep finding it detached
            # while a busy server re-rendered the list (a make test run: 90 s of retries), and Enter alone keeps
            # the option that had the focus before filtering (the first data root), so ArrowDown moves the focus
            # onto the one left.
            expect(page.get_by_role("option")).to_have_count(1, timeout=30_000)
            expect(page.get_by_role("option").first).to_have_accessible_name(
                re.compile(rf"^{re.escape(option)}(\s|$)"))
            box.press("ArrowDown")
            box.press("Enter")
            page.wait_for_function(IDLE)
            picked()
            return
        except AssertionError:
            if attempt == tries - 1:
                raise
            page.keyboard.press("Escape")  # close a list left open before trying again
            page.wait_for_function(IDLE)


def _step(page, step: str, log) -> None:
    """Click a step's button and wait until its figures are drawn (the page reruns when the job is done)."""
    from playwright.sync_api import expect

    page.get_by_role("button", name=step, exact=True).click()
    column = {"Validate": "As it came", "Calibrate": "Site calibration", "Adapt": "Adapted"}[step]
    # A step is a background job (adapting fine-tunes for 14 epochs): seconds here, minutes on a busy machine.
    done = page.get_by_role("columnheader", name=column).or_(page.get_by_text(f"{step.lower()} failed"))
    expect(done.first).to_be_visible(timeout=STEP_WAIT_MS)
    assert page.get_by_role("columnheader", name=column).count(), log.read_text()[-3000:]  # the server's traceback


def test_a_researcher_validates_calibrates_and_adapts_then_predict_states_the_site_scope(browser, site_server):
    from playwright.sync_api import expect

    url, models, log = site_server
    page = new_page(browser, viewport={"width": 1400, "height": 1000})
    try:
        page.goto(f"{url}/model")
        page.get_by_role("heading", name="Your site: validate, calibrate, adapt").wait_for()
        page.wait_for_function(IDLE)
        name = page.get_by_role("textbox", name="Site name")
        _pick(page, "Site folder", "st-elsewhere", lambda: expect(name).to_have_value("st-elsewhere", timeout=30_000))
        expect(page.get_by_role("button", name="Calibrate", exact=True)).to_be_disabled()  # validate first
        for step in ("Validate", "Calibrate", "Adapt"):
            _step(page, step, log)
        # The results section: its caption (under CI load the page's redraw once dropped the subheader above it while
        # its caption and table showed, a Streamlit fragment/page rerun race).
        expect(page.get_by_text("held-out slices that no step learns from").first).to_be_visible()
        assert (models / "st-elsewhere-smoke-adapted.keras").is_file()
        page.goto(f"{url}/predict")
        page.get_by_role("heading", name="Predict").wait_for()
        page.wait_for_function(IDLE)
        scope = page.get_by_text("Validated at st-elsewhere:").first
        _pick(page, "Model", "st-elsewhere-smoke-adapted", lambda: expect(scope).to_be_visible(timeout=60_000))
    finally:
        page.close()
