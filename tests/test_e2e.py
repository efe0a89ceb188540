"""End to end in a real browser: `streamlit run app.py` on 127.0.0.1, Debian's chromium driven by Playwright.

Opens every page, uploads a real Testing image on Predict and checks that the predicted class and the
Grad-CAM figure appear, and that the Evaluation page draws the confusion matrix and ROC. Screenshots of
each page go to docs/screenshots/ (committed and shown in the README).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
SHOTS = REPO / "docs" / "screenshots"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def real_data() -> Path:
    value = os.environ.get("BRAINCLF_DATA")
    if not value or not Path(value).is_dir():
        if os.environ.get("BRAINCLF_REQUIRE_REAL_DATA") == "1":
            pytest.fail("BRAINCLF_DATA is required for the browser test")
        pytest.skip("no real data")
    return Path(value)


@pytest.fixture(scope="module")
def server(real_data):
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: `make test` installs Debian's chromium")
    port = _free_port()
    env = {**os.environ, "BRAINCLF_DATA": str(real_data)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(REPO / "app.py"), "--server.address", "127.0.0.1",
         "--server.port", str(port), "--server.headless", "true", "--browser.gatherUsageStats", "false"],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 90
    while time.time() < deadline:  # wait for the health endpoint, bounded
        try:
            if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read().strip() == b"ok":
                break
        except OSError:
            time.sleep(0.5)
        if proc.poll() is not None:
            pytest.fail(f"streamlit exited: {proc.stdout.read().decode()[-2000:]}")
    else:
        proc.kill()
        pytest.fail("streamlit did not become healthy within 90 s")
    yield url
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.fixture(scope="module")
def page(server):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=CHROMIUM, headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"])
        pg = browser.new_page(viewport={"width": 1400, "height": 1000})
        pg.set_default_timeout(60_000)
        yield pg
        browser.close()


def _open(page, server, path: str, heading: str):
    """Go to a page, wait for its heading and for the script run to finish."""
    page.goto(f"{server}/{path}")
    page.get_by_role("heading", name=heading).first.wait_for()
    page.wait_for_function("!document.querySelector('[data-testid=\"stStatusWidget\"]')", timeout=60_000)


def _shot(page, name: str):
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def test_home_page(page, server):
    _open(page, server, "", "brainclf — brain MRI tumour classifier")
    page.get_by_text("Intended use: research and education only").wait_for()  # visible in time, else fail
    page.get_by_text("Active model: default").wait_for()
    _shot(page, "home")


def test_predict_page_shows_class_and_gradcam(page, server, real_data):
    _open(page, server, "predict", "Predict")
    # A Testing meningioma that the bundled model's card records as correctly classified.
    card = json.loads((REPO / "models" / "default.json").read_text())
    row = next(r for r in card["test_predictions"] if r["true"] == r["pred"] == "meningioma")
    image = real_data / row["path"]
    page.locator("input[type=file]").first.set_input_files(str(image))
    result = page.get_by_role("heading", name=image.name)
    result.wait_for()
    assert "Meningioma" in result.inner_text()
    page.get_by_text("Grad-CAM: Meningioma").first.wait_for()  # the Plotly overlay's title
    assert page.locator(".js-plotly-plot").count() >= 2  # probability bars + Grad-CAM
    page.get_by_text("Download CSV").wait_for()
    page.wait_for_timeout(1500)
    _shot(page, "predict")


def test_evaluation_page_shows_confusion_matrix_and_roc(page, server):
    page.set_viewport_size({"width": 1400, "height": 3000})  # Streamlit scrolls inside: a tall window shows more
    _open(page, server, "evaluation", "Evaluation")
    page.get_by_text("ROC (one-vs-rest)").first.wait_for()
    page.get_by_role("heading", name="Confusion matrix").wait_for()
    assert page.locator(".js-plotly-plot").count() >= 4  # confusion, ROC, PR, reliability/history
    page.wait_for_timeout(2000)
    _shot(page, "evaluation")
    page.set_viewport_size({"width": 1400, "height": 1000})


def test_model_page(page, server):
    _open(page, server, "model", "Models")
    page.get_by_text("Train a new model").wait_for()
    page.locator('[data-testid="stDataFrame"]').first.wait_for()  # the models table (a canvas grid)
    page.get_by_role("button", name="Start training").wait_for()
    _shot(page, "model")
