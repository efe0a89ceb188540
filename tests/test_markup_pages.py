"""No file name, card field or sign-in display name is ever read as Markdown on any page (issue #25).

An attacker on a signed-in server got these through: a file named `![t](https:HOST).png` made the browser fetch
a remote URL, `[Session expired - sign in again](…)` became a link, `:red[**URGENT…**]` showed in red beside the
class, and a card's calibration.fitted_on put a green "CE-marked" badge inside the refer warning. Here the same
strings go in as uploads, as card fields (a model installed in a temporary models folder) and as the signed-in
admin's display name, and every page's Markdown (text, captions, alerts, headings, labels, help, tables,
progress text) must hold them only in their escaped form (brainclf.escaping.md_literal).
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest
from test_access_pages import AUTH, run_page

from brainclf.escaping import md_literal
from brainclf.model import card_path
from brainclf.presentation import case_ref, content_hash
from brainclf.serving import JobStatus

REPO = Path(__file__).resolve().parent.parent
APP = str(REPO / "app.py")
IMAGE_NAME = "![t](https:127.0.0.1:9).png"
RED_NAME = ":red[**URGENT - no tumour, discharge patient**].png"
LINK_NAME = "[Session expired - sign in again](https:evil.example).png"  # not an image: its error names it
BADGE = ":green-badge[CE-marked, approved for diagnosis] **bold** $x$"
MEMBERSHIP = ":blue[**all** images] :material/verified: :smile:"  # cards refuse links and images
DISPLAY_NAME = "[Session expired - sign in again](https:evil.example) :red[admin]"
# A Markdown construct that is active: its first special character not escaped by a backslash.
ACTIVE = re.compile(r"(?<!\\)(?::red\[(?:\*\*URGENT|admin)|:blue\[|:green-badge\[|:material/verified|:smile:"
                    r"|!\[|\]\(|\*\*(?:bold|all|URGENT)|\$x)")
MARKDOWN_TYPES = {"markdown", "caption", "title", "header", "subheader", "error", "warning", "info", "success",
                  "toast", "latex"}


@pytest.fixture
def attack_server(tmp_path, monkeypatch, synthetic_dataset):
    """Server mode, the admin named DISPLAY_NAME, and the only model a seed copy whose card holds BADGE (where the
    refer rule was fitted: every answer is referred) and MEMBERSHIP (its external validation)."""
    models = tmp_path / "models"
    models.mkdir()
    shutil.copy(REPO / "models" / "seed.keras", models / "seed.keras")
    card = json.loads((REPO / "models" / "seed.json").read_text())
    card["calibration"].update(fitted_on=BADGE, refer_threshold=0.99999, refer_threshold_tta=0.99999)
    card["ood"] = {}  # no OOD flag: the refer warning is what shows
    next(iter(card["metrics"]["external"].values()))["membership"] = MEMBERSHIP
    card_path(models / "seed.keras").write_text(json.dumps(card))
    toml = tmp_path / "brainclf.toml"
    toml.write_text(f'[data]\nbrain-mri = "{synthetic_dataset}"\n[roles.admin]\nemails = ["boss@clinic.example"]\n')
    monkeypatch.setenv("BRAINCLF_SETTINGS", str(toml))
    monkeypatch.setenv("BRAINCLF_MODELS", str(models))
    monkeypatch.setenv("BRAINCLF_AUDIT_DIR", str(tmp_path / "audit"))
    from pages.common import training_jobs

    jobs = training_jobs()
    before = jobs.status
    jobs.status = JobStatus(name="theirs", state="running", owner="sub:other", owner_label=DISPLAY_NAME)
    yield
    jobs.status = before


def admin_app() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=300)
    at.secrets["auth"] = AUTH
    at.user = {"is_logged_in": True, "email": "boss@clinic.example", "email_verified": True, "sub": "boss",
               "name": DISPLAY_NAME}
    return at


def rendered_markdown(at: AppTest) -> list[str]:
    """Every string the page sends to be rendered as Markdown."""
    out = []

    def walk(node):
        kind = getattr(node, "type", "")
        proto = getattr(node, "proto", None)
        if kind in MARKDOWN_TYPES:
            out.append(str(node.value))
        elif kind == "table":
            df = node.value
            out.extend(str(v) for v in [*df.columns, *df.index, *df.to_numpy().ravel()])
        for attr in ("label", "help"):  # widgets, metrics, expanders, tabs
            try:
                value = getattr(node, attr)
            except Exception:  # noqa: BLE001 - an element without it
                value = None
            if isinstance(value, str) and value:
                out.append(value)
        if kind == "progress" and proto is not None:
            out.append(proto.text)
        for child in getattr(node, "children", {}).values():
            walk(child)

    walk(at._tree)
    return out


def assert_inert(texts: list[str]) -> None:
    active = [t for t in texts if ACTIVE.search(t)]
    assert not active, active


@pytest.mark.parametrize("page", ["home", "evaluation", "model"])
def test_card_fields_and_display_name_are_literal_on_every_page(attack_server, page):
    at = run_page(admin_app(), page)
    texts = rendered_markdown(at)
    assert_inert(texts)
    if page == "home":  # the sidebar's "Signed in as" (AppTest runs a switched-to page without it) and the
        assert any(md_literal(DISPLAY_NAME) in t for t in texts)  # external figure's help
        assert any(md_literal(MEMBERSHIP) in t for t in texts)
    if page == "evaluation":  # the external validation's heading
        assert any(md_literal(MEMBERSHIP) in t for t in texts)
    if page == "model":  # "Training theirs (started by …)"
        assert any(f"started by {md_literal(DISPLAY_NAME)}" in t for t in texts)


def test_file_names_and_card_fields_are_literal_on_the_predict_page(attack_server, make_image, png_bytes):
    at = run_page(admin_app(), "predict")
    images = [png_bytes(make_image("glioma", 1)), png_bytes(make_image("pituitary", 2))]
    at.file_uploader[0].set_value([(IMAGE_NAME, images[0], "image/png"), (RED_NAME, images[1], "image/png"),
                                   (LINK_NAME, b"not an image", "image/png")]).run()
    assert not at.exception, [e.value for e in at.exception]
    assert not any(md_literal(IMAGE_NAME) in t for t in rendered_markdown(at))  # a sign-in server hides names
    assert not any(m.proto.help for m in at.markdown if m.value.startswith("####"))
    at.toggle(key="show_names").set_value(True).run()  # until the user asks for them
    assert not at.exception, [e.value for e in at.exception]
    texts = rendered_markdown(at)
    assert_inert(texts)
    headings = [m for m in at.markdown if m.value.startswith("####")]  # issue #27: the case id, the name as help
    assert [h.value.split(": ")[0] for h in headings] == [f"#### Case {case_ref(content_hash(d))}" for d in images]
    assert [h.proto.help for h in headings] == [md_literal(f"File: {n}") for n in (IMAGE_NAME, RED_NAME)]
    assert list(at.table[0].value["File"]) == [md_literal(IMAGE_NAME), md_literal(RED_NAME)]  # the batch table
    assert any(md_literal(LINK_NAME) in e.value and "not processed" in e.value for e in at.error)
    referred = [w.value for w in at.warning if w.value.startswith("Refer\\:")]
    assert len(referred) == 2 and all(md_literal(BADGE) in w for w in referred)  # where the rule was fitted



def test_every_table_a_user_can_download_defuses_spreadsheet_formulas():
    """st.dataframe has a "Download as CSV" button that quotes cells but leaves `=cmd|…` a formula: every page
    passes its rows through escaping.csv_row (a file name, a card's sequence label, a site name)."""
    import ast

    calls = []
    for page in sorted((REPO / "pages").glob("*.py")):
        for node in ast.walk(ast.parse(page.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "dataframe":
                calls.append((page.name, node.lineno, "csv_row" in ast.unparse(node.args[0])))
    assert len(calls) >= 7
    assert [c for c in calls if not c[2]] == []
