"""The Evaluation page in a real browser (`streamlit run app.py` on 127.0.0.1, Debian's chromium via Playwright).

Issue #14: the page said "click a cell" but a Plotly heatmap cannot be point-selected, so a click did nothing.
Here a click on a confusion-matrix cell must switch the gallery below to that (true, predicted) pair. And at
800 px wide no number in a metric is cut to "99.7…". Runs on the bundled models; no dataset needed (without
one the gallery lists its images as a table). The README's pictures with a slice in them are taken here: a
made-up slice (brainclf.serving.bench.synthetic_slice) and no dataset, so no dataset image is ever committed.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
from conftest import BROWSER_WAIT_MS, new_page, show_overlay
from test_e2e import REPO, SHOTS, TRUNCATED_JS, _shot, _streamlit

from brainclf.presentation import case_ref, content_hash
from brainclf.serving import synthetic_slice


@pytest.fixture(scope="module")
def server(neutral_server_settings):
    with _streamlit({"BRAINCLF_DATA": ""}) as url:
        yield url


def _open_evaluation(page, server):
    """Open the page and wait until it is drawn to the end (tables and charts above stop moving)."""
    page.goto(f"{server}/evaluation")
    page.get_by_role("heading", name="Compare models").wait_for()
    page.wait_for_function("!document.querySelector('[data-testid=\"stStatusWidget\"]')", timeout=BROWSER_WAIT_MS)
    page.locator(".js-plotly-plot").nth(9).wait_for()  # the charts are drawn
    page.wait_for_timeout(2000)


def _cell_centre(page, chart, row: int, col: int) -> tuple[float, float]:
    """Page coordinates of a confusion-matrix cell's centre (category indices), from Plotly's own axes."""
    box = chart.bounding_box()
    x, y = chart.evaluate(
        """(gd, rc) => { const L = gd._fullLayout;
             return [L._size.l + L.xaxis.l2p(rc[1]), L._size.t + L.yaxis.l2p(rc[0])]; }""", [row, col])
    return box["x"] + x, box["y"] + y


def test_clicking_a_confusion_matrix_cell_shows_that_pairs_images(browser, server):
    from playwright.sync_api import expect

    card = json.loads((REPO / "models" / "default.json").read_text())
    rows = card["test_predictions_tta"] if card["calibration"].get("tta_default") else card["test_predictions"]
    n = sum(r["true"] == "meningioma" and r["pred"] == "glioma" for r in rows)
    page = new_page(browser, viewport={"width": 1400, "height": 1400})
    try:
        _open_evaluation(page, server)
        # Either wording of the gallery's heading (this page's, or the old "**3 images** true *X*, predicted *Y*").
        pair = page.get_by_text(re.compile(r"true Meningioma, predicted Glioma", re.IGNORECASE))
        expect(pair).to_have_count(0)  # the page opens on the most confused pair, glioma → meningioma
        chart = page.locator(".js-plotly-plot").first
        chart.scroll_into_view_if_needed()
        page.wait_for_timeout(500)
        page.mouse.move(*_cell_centre(page, chart, row=1, col=0))  # true meningioma (row 1), predicted glioma
        expect(chart.locator(".hoverlayer")).to_contain_text("true Meningioma → predicted Glioma")
        page.mouse.click(*_cell_centre(page, chart, row=1, col=0))
        expect(pair.first).to_be_visible(timeout=BROWSER_WAIT_MS)
        expect(page.get_by_role("heading", name=f"True Meningioma, predicted Glioma: {n} image")).to_be_visible()
        # The pickers below follow the click (and stay free to change afterwards).
        expect(page.get_by_role("combobox", name="True class")).to_have_value("Meningioma")
        expect(page.get_by_role("combobox", name="Predicted class")).to_have_value("Glioma")
        box = page.get_by_role("combobox", name="True class")
        box.click()
        box.press_sequentially("Pituitary")
        box.press("Enter")
        expect(page.get_by_role("heading", name="True Pituitary, predicted Glioma: 0 images")).to_be_visible()
        # The same cell again: the first click deselects it, the second selects it and applies once more.
        for _ in range(2):
            page.wait_for_function("!document.querySelector('[data-testid=\"stStatusWidget\"]')")
            page.mouse.click(*_cell_centre(page, chart, row=1, col=0))
            page.wait_for_timeout(1500)
        expect(page.get_by_role("heading", name=f"True Meningioma, predicted Glioma: {n} image")).to_be_visible()
    finally:
        page.close()


def test_clicking_an_external_confusion_matrix_cell_opens_its_misclassified_images(browser, tmp_path,
                                                                                    neutral_server_settings):
    """The external source's confusion matrix (where glioma and meningioma are confused most) could not be clicked:
    a click on an error cell opens its misclassified gallery on that pair. kaggle_only, alone in a models folder
    (so it is the active model), holds per-image rows for all of external-radiopaedia."""
    import shutil

    models = tmp_path / "models"
    models.mkdir()
    for suffix in (".keras", ".json"):
        shutil.copy(REPO / "models" / f"kaggle_only{suffix}", models / f"kaggle_only{suffix}")
    page = new_page(browser, viewport={"width": 1400, "height": 1400})
    try:
        with _streamlit({"BRAINCLF_DATA": "", "BRAINCLF_MODELS": str(models)}) as url:
            _open_evaluation(page, url)
            _click_external_cell(page)
    finally:
        page.close()


def _click_external_cell(page) -> None:
    """Click the external confusion matrix's true meningioma (row 1), predicted glioma cell; its gallery follows."""
    from playwright.sync_api import expect

    chart = page.locator(".js-plotly-plot").filter(has_text="external-radiopaedia").filter(
        has_text="Confusion matrix").first
    chart.scroll_into_view_if_needed()
    page.wait_for_timeout(500)
    page.mouse.click(*_cell_centre(page, chart, row=1, col=0))
    expander = page.get_by_test_id("stExpander").filter(has_text="Misclassified external images").first
    expect(expander.get_by_role("combobox", name="True class")).to_have_value("Meningioma", timeout=BROWSER_WAIT_MS)
    expect(expander.get_by_role("combobox", name="Predicted class")).to_have_value("Glioma")
    expect(expander.get_by_text(re.compile(r"^\d+ images? shown\.$"))).to_be_visible()


def test_readme_pictures_show_a_made_up_slice_and_no_dataset_image(browser, server, tmp_path):
    """Predict (800 px and 1400 px), its case report and the Evaluation page, as `make screenshots` commits them:
    the only slice in them is synthetic, and the Evaluation page, without a dataset, shows no image at all; at
    800 px no number on it is cut."""
    from playwright.sync_api import expect

    slice_png = tmp_path / "synthetic-slice.png"
    synthetic_slice().save(slice_png)
    page = new_page(browser, viewport={"width": 800, "height": 900}, accept_downloads=True)
    try:
        page.goto(f"{server}/predict")
        page.get_by_role("heading", name="Predict").wait_for()
        page.locator("input[type=file]").first.set_input_files(str(slice_png))
        show_overlay(page)  # the model refers the made-up slice: its overlay starts off
        overlay = page.get_by_test_id("stImage").filter(has_text="Grad-CAM:")
        expect(overlay.first).to_be_visible(timeout=BROWSER_WAIT_MS)
        ref = case_ref(content_hash(slice_png.read_bytes()))  # issue #27: headed by its id, not its file name
        expect(page.get_by_role("heading", name=f"Case {ref}")).to_be_visible()
        page.wait_for_function("!document.querySelector('[data-testid=\"stStatusWidget\"]')")
        overlay.first.scroll_into_view_if_needed()
        page.wait_for_timeout(1000)
        page.screenshot(path=str(SHOTS / "predict-800.png"))  # the window as the user sees it
        page.set_viewport_size({"width": 1400, "height": 1000})
        page.get_by_test_id("stMain").evaluate("m => m.scrollTo(0, 0)")
        page.wait_for_timeout(1000)
        _shot(page, "predict")
        with page.expect_download() as download:
            page.get_by_role("button", name="Case report (PDF)").click()
        SHOTS.mkdir(parents=True, exist_ok=True)  # the report as a picture (pdftoppm: `make browser`)
        subprocess.run(["pdftoppm", "-png", "-r", "70", "-singlefile", download.value.path(),
                        str(SHOTS / "case-report")], check=True)
        assert Path(download.value.path()).read_bytes().startswith(b"%PDF")
        assert (SHOTS / "case-report.png").stat().st_size > 10_000
    finally:
        page.close()
    page = new_page(browser, viewport={"width": 800, "height": 3000})
    try:
        _open_evaluation(page, server)
        # At 800 px no number is cut ("99.7…"; the old five metric columns cut '98.44%', '0.0846', '0.9990').
        cut = page.evaluate(TRUNCATED_JS)
        assert cut == [], f"text cut at 800 px: {cut}"
        assert page.get_by_role("cell", name="Accuracy", exact=True).count() >= 1  # the headline, as a table
        expect(page.get_by_test_id("stMain").get_by_test_id("stImage")).to_have_count(0)  # no dataset image
        page.set_viewport_size({"width": 1400, "height": 3000})
        page.wait_for_timeout(1500)
        _shot(page, "evaluation")
    finally:
        page.close()
