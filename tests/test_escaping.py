"""brainclf.escaping: untrusted text is literal in Markdown and inert in every CSV brainclf writes (issue #25)."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import pytest

from brainclf.escaping import csv_cell, csv_row, csv_value, md_literal

REPO = Path(__file__).resolve().parent.parent
ATTACKS = ["![t](https:127.0.0.1:9).png", "[Session expired - sign in again](https://evil.example/login)",
           ":red[**URGENT - no tumour, discharge patient**]", ":green-badge[CE-marked, approved for diagnosis]",
           ":material/check_circle: :smile: $x^2$ <img src=x> `code` __bold__ ~~gone~~ www.evil.example",
           "# heading\n- item\r\n1. first | a | b |", "&copy; -> <- ~= \\*"]
# A special character not preceded by an escaping backslash (a backslash pair escapes itself).
UNESCAPED = re.compile(r"(?<!\\)(?:\\\\)*[`*_{}\[\]()<>#+\-.!|:$~&^]")


@pytest.mark.parametrize("text", ATTACKS)
def test_md_literal_escapes_every_markdown_special(text):
    out = md_literal(text)
    assert not UNESCAPED.search(out.replace("\\\\", "")), out
    assert "\n" not in out and "\r" not in out  # one line: no block syntax on a new line
    # Removing the escapes gives back the text (line breaks as spaces): nothing else is changed.
    assert re.sub(r"\\(.)", r"\1", out) == re.sub(r"[\r\n]+", " ", text)


def test_md_literal_breaks_directives_links_images_math_and_autolinks():
    out = md_literal(" ".join(ATTACKS))
    for active in (":red[", ":green-badge[", "![", "](", ":material/", ":smile:", "$x", "<img", "**", "__",
                   "https://", "www.", "~~"):
        assert not re.search(r"(?<!\\)" + re.escape(active), out), active  # only its escaped form
    assert md_literal(None) == "" and md_literal(0.5) == "0\\.5"
    assert md_literal("plain words, 40% / 3 ok? 'yes' = @me") == "plain words, 40% / 3 ok? 'yes' = @me"


@pytest.mark.parametrize("value, written", [
    ('=HYPERLINK("http://evil.example","click").png', '\'=HYPERLINK("http://evil.example","click").png'),
    ("+1.png", "'+1.png"), ("-0.5.png", "'-0.5.png"), ("@SUM(A1).png", "'@SUM(A1).png"),
    ("\tx.png", "'\tx.png"), ("\rx.png", "'\rx.png"), ("'=x.png", "''=x.png"), ("'quoted.png", "''quoted.png"),
    ("scan.png", "scan.png"), ("", ""), (-0.5, -0.5), (True, True), (None, None)])
def test_csv_cell_neutralises_text_that_starts_like_a_formula_only(value, written):
    assert csv_cell(value) == written
    if isinstance(value, str):
        assert csv_value(written) == value  # what was written reads back as what was given


def test_csv_row_leaves_numbers_alone():
    row = csv_row({"file": "-x.png", "confidence": -0.5, "p_glioma": 0.25, "refer": False, "model": "=m"})
    assert row == {"file": "'-x.png", "confidence": -0.5, "p_glioma": 0.25, "refer": False, "model": "'=m"}


@pytest.fixture(scope="module")
def seed_predictor():
    from brainclf.inference import Predictor

    return Predictor.load(REPO / "models" / "seed.keras")


def test_folder_csv_and_its_merge_neutralise_formula_file_names(seed_predictor, tmp_path, make_image, png_bytes):
    """Issue #25: a file named =HYPERLINK("…","click").png was the first cell of the CSV, unescaped."""
    from brainclf.data import merge_csvs
    from brainclf.inference import predict_folder

    folder = tmp_path / "in"
    folder.mkdir()
    names = ['=HYPERLINK("http:evil.example","click").png', "+1.png", "@SUM(A1).png", "scan.png"]
    for i, name in enumerate(names):
        (folder / name).write_bytes(png_bytes(make_image(seed=i)))
    (folder / "-0.5.png").write_bytes(b"not an image")  # an error row
    out = tmp_path / "out.csv"
    counts = predict_folder(seed_predictor, folder, out)
    assert counts["predicted"] == 4 and counts["failed"] == 1
    with open(out, newline="") as fh:
        cells = {row["file"]: row for row in csv.DictReader(fh)}
    assert set(cells) == {"'" + n if n != "scan.png" else n for n in names} | {"'-0.5.png"}
    for row in cells.values():
        assert all(not v.startswith(("=", "+", "-", "@", "\t", "\r")) for v in row.values()), row
        if row["confidence"]:
            assert 0 <= float(row["confidence"]) <= 1  # numbers stay numbers
    again = predict_folder(seed_predictor, folder, out)  # resuming reads the neutralised names back
    assert again == {"predicted": 0, "failed": 0, "skipped": 5, "failed_before": 1}
    merged = tmp_path / "merged.csv"
    report = merge_csvs(merged, [out], folder=folder)
    assert report.rows == 5 and report.missing == []
    with open(merged, newline="") as fh:
        assert sorted(r["file"] for r in csv.DictReader(fh)) == sorted(cells)  # neutralised once, not twice


def test_cli_predict_csv_neutralises_formula_file_names(tmp_path, make_image, png_bytes, monkeypatch, capsys):
    from brainclf.cli import main

    monkeypatch.chdir(tmp_path)  # a relative name: the CSV's file cell is the name as given
    Path("=cmd.png").write_bytes(png_bytes(make_image()))
    assert main(["predict", "--model", str(REPO / "models" / "seed.keras"), "=cmd.png", "--csv", "p.csv"]) == 0
    with open("p.csv", newline="") as fh:
        (row,) = list(csv.DictReader(fh))
    assert row["file"] == "'=cmd.png" and 0 <= float(row["confidence"]) <= 1


def test_bidi_and_zero_width_characters_are_removed():
    """'scan\u202egpj.png' displays as 'scangnp.jpg' and turns the text after it around."""
    assert md_literal("scan\u202egpj.png \u2066x\u2069\u200f \ufeffy\u200b") == "scangpj\\.png x y"


def test_a_case_keeps_its_file_name_without_invisible_characters():
    """Tables and widget options show the name as plain text, outside md_literal."""
    from brainclf.presentation import CaseBook

    case = CaseBook().add("scan\u202egpj.png", b"bytes")
    assert case.name == "scangpj.png" and case.label(True) == "scangpj.png"
