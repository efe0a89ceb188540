"""Every page through streamlit.testing.v1.AppTest on the bundled models."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

REPO = Path(__file__).resolve().parent.parent
APP = str(REPO / "app.py")
PAGES = ["pages/home.py", "pages/predict.py", "pages/evaluation.py", "pages/model.py"]


def open_page(page: str) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=120)
    at.run()
    if page != PAGES[0]:
        at.switch_page(page)
        at.run()
    return at


@pytest.mark.parametrize("page", PAGES)
def test_page_runs_without_exceptions(page):
    at = open_page(page)
    assert not at.exception, [e.value for e in at.exception]
    assert at.title, "every page has a title"


def test_home_shows_intended_use_and_card():
    at = open_page(PAGES[0])
    assert any("not for diagnosis" in e.value or "research and education only" in e.value for e in at.error)
    assert any("Active model: default" in s.value for s in at.subheader)
    assert [m.label for m in at.metric][:3] == ["Test accuracy", "Clean-subset accuracy", "Macro AUC"]


def _meningioma_image() -> tuple[str, bytes]:
    """A real Testing meningioma the card records as correct; a synthetic image without the data."""
    data = os.environ.get("BRAINCLF_DATA")
    if data and Path(data).is_dir():
        card = json.loads((REPO / "models" / "default.json").read_text())
        row = next(r for r in card["test_predictions"] if r["true"] == r["pred"] == "meningioma")
        return Path(row["path"]).name, (Path(data) / row["path"]).read_bytes()
    pytest.skip("needs BRAINCLF_DATA for a real image")


def test_predict_upload_shows_class_overlay_and_table_and_survives_bad_files():
    name, data = _meningioma_image()
    at = open_page("pages/predict.py")
    at.file_uploader[0].set_value([(name, data, "image/jpeg"), ("broken.jpg", b"not an image", "image/jpeg"),
                                   ("empty.png", b"", "image/png")]).run()
    assert not at.exception
    headings = [m.value for m in at.markdown if m.value.startswith("####")]
    assert len(headings) == 1 and "Meningioma" in headings[0], headings
    errors = " ".join(e.value for e in at.error)
    assert "broken.jpg" in errors and "not a recognised image" in errors
    assert "empty.png" in errors and "empty" in errors
    assert at.selectbox(key="cam_class0").value == "meningioma"  # Grad-CAM for the predicted class
    table = at.dataframe[0].value
    assert list(table["file"]) == [name] and table["model"][0] == "default"
    # Grad-CAM for another class re-renders without error.
    at.selectbox(key="cam_class0").set_value("glioma").run()
    assert not at.exception


def test_predict_accepts_png_rgba_upload():
    buf = io.BytesIO()
    Image.new("RGBA", (90, 60), (120, 120, 120, 255)).save(buf, "PNG")
    at = open_page("pages/predict.py")
    at.file_uploader[0].set_value(("rgba.png", buf.getvalue(), "image/png")).run()
    assert not at.exception
    assert any(m.value.startswith("#### rgba.png") for m in at.markdown)


@pytest.mark.parametrize("page", ["pages/predict.py", "pages/model.py"])
def test_bookmarked_page_runs_inside_the_app_navigation(page):
    """Issue #14: a page opened as the first request of a fresh server (AppTest's first run on a switched page
    is one: Streamlit is still in its legacy pages/ mode) ran on its own, without app.py's sidebar model
    picker. It now goes through app.py's st.navigation."""
    at = AppTest.from_file(APP, default_timeout=120)
    at.switch_page(page).run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.selectbox(key="model_path").value.endswith("default.keras")  # app.py's sidebar ran
    assert at.title[0].value in ("Predict", "Models")


def test_evaluation_from_card_and_cell_gallery():
    at = open_page("pages/evaluation.py")
    assert not at.exception
    labels = [m.label for m in at.metric]
    assert labels[:3] == ["Accuracy", "Loss", "Macro AUC"]
    at.selectbox(key="cell_true").set_value("meningioma").run()
    at.selectbox(key="cell_pred").set_value("meningioma").run()
    assert not at.exception
    assert any("true *Meningioma*, predicted *Meningioma*" in m.value for m in at.markdown)
    assert any(m.value.startswith("Glioma vs meningioma") or "confused between glioma and meningioma" in m.value
               for m in at.markdown)


def test_evaluation_compares_two_models():
    at = open_page("pages/evaluation.py")
    other = at.selectbox(key="compare").value.stem
    assert other != "default" and other in {p.stem for p in Path("models").glob("*.keras")}
    cmp_table = at.dataframe[-1].value
    assert {"default", other} <= set(cmp_table.columns)


def test_model_page_lists_bundled_models():
    at = open_page("pages/model.py")
    names = list(at.dataframe[0].value["model"])
    assert "default" in names and "seed" in names


def _files_containing(roots, needle: bytes) -> list[str]:
    hits = []
    for root in roots:
        for p in Path(root).rglob("*"):
            if {".venv", ".git", "node_modules"} & set(p.parts):
                continue
            try:
                if p.is_file() and p.stat().st_size < 50_000_000 and needle in p.read_bytes():
                    hits.append(str(p))
            except OSError:
                continue
    return hits


def test_uploads_never_reach_disk_and_audit_log_is_opt_in(tmp_path, monkeypatch):
    """Privacy: an upload leaves no copy on disk; the audit log (when switched on) holds only its hash."""
    import hashlib
    import tempfile

    rng = __import__("numpy").random.default_rng(7)
    img = Image.fromarray(rng.integers(0, 255, (96, 96), dtype="uint8"))
    buf = io.BytesIO()
    img.save(buf, "PNG")
    data = buf.getvalue()
    marker = data[-200:-100]  # compressed bytes unique to this upload
    log = tmp_path / "audit.jsonl"
    at = open_page("pages/predict.py")
    at.file_uploader[0].set_value(("Doe_Jane.png", data, "image/png")).run()
    assert not at.exception and not log.exists()  # off by default
    # Set the sidebar settings' state (the page now runs inside app.py, with its sidebar).
    at.session_state["audit"] = True
    at.session_state["audit_path"] = str(log)
    at.run()
    assert not at.exception
    rec = json.loads(log.read_text().splitlines()[-1])
    assert rec["input_sha256"] == hashlib.sha256(data).hexdigest() and rec["model"] == "default"
    assert "Doe" not in log.read_text()
    assert _files_containing([tempfile.gettempdir(), REPO], marker) == []


def test_tta_toggle_starts_as_the_card_says_and_switches_the_evaluation():
    from brainclf.card import read_card

    default = REPO / "models" / "default.keras"
    card = read_card(default)
    key = f"tta::{default}"
    at = open_page(PAGES[0])  # the home page, with app.py's sidebar
    assert at.toggle(key=key).value is card.tta_default
    at.switch_page("pages/evaluation.py")
    for on in (True, False):
        at.session_state[key] = on  # switch_page runs the page without the sidebar, so set its state
        at.run()
        assert not at.exception
        caption = " ".join(c.value for c in at.caption)
        assert ("flip TTA on" in caption) is on
        # The card's stored predictions of that mode are shown: its accuracy, to the displayed precision.
        assert at.metric[0].value == f"{card.test_metrics(tta=on)['accuracy']:.2%}"
