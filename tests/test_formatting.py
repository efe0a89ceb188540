"""Issue #27: one formatter for every percentage and count a person reads (presentation.wording.pct, count, plural),
so that the same figure never shows as 98.44 % on one page, 98.4% on another and 0.9844 in a table, and a figure
that was not measured shows "—", never 0.0 %. The scan below fails on a new hand-made percentage or count."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

from brainclf.presentation import count, pct, pct_pair, plural, points, wording

REPO = Path(__file__).resolve().parent.parent
# Where user-facing text is made: the pages and the library modules that word numbers for them (the CLI prints
# machine-readable figures and is left out).
SCANNED = [*sorted((REPO / "pages").rglob("*.py")), REPO / "app.py",
           *(REPO / "brainclf" / "presentation" / f
             for f in ("views.py", "scope.py", "report.py", "figures.py", "cases.py", "gallery.py", "wording.py"))]
AD_HOC = {
    "a Python or Plotly percent format ({x:.1%}, %{y:.1%})": re.compile(r"\{[^{}\n]*:[^{}\n]*%\}"),
    "a number with a hand-written % ({x:.2f} %, {x}%)": re.compile(r"\}\s?%(?![{}])"),
    "a share scaled by hand (* 100)": re.compile(r"\*\s?100\b|\b100\s?\*"),
    "a count without thousands separators ({len(x)}, {d['n']})": re.compile(r"\{len\([^{}\n]*\)\}|\[['\"]n['\"]\]\}"),
}


def _source(path: Path) -> str:
    text = path.read_text()
    if path.name == "wording.py":  # the formatters themselves are where the arithmetic belongs
        for f in (wording.pct, wording.pct_pair):
            text = text.replace(inspect.getsource(f), "")
    return text


@pytest.mark.parametrize("path", SCANNED, ids=lambda p: p.name)
def test_no_page_or_view_formats_a_percentage_or_count_by_hand(path):
    found = [f"{path.name}:{i}: {what}: {line.strip()}" for i, line in enumerate(_source(path).splitlines(), 1)
             for what, pattern in AD_HOC.items() if pattern.search(line)]
    assert not found, "use brainclf.presentation.wording.pct / count / plural:\n" + "\n".join(found)


def test_the_scan_catches_what_it_is_for():
    lines = ['f"{acc:.1%}"', 'hovertemplate="answered %{x:.1%}"', 'f"{100 * x:.2f} %"', 'f"{v}%"',
             'x=[p * 100 for p in ps]', 'f"{len(rows)} images"', "f\"on {d['n']} test images\""]
    assert all(any(p.search(line) for p in AD_HOC.values()) for line in lines)
    fine = ['pct(acc)', 'f"{count(len(rows))} images"', 'xaxis=dict(tickformat=".0%")', '"95 % interval"']
    assert not any(p.search(line) for p in AD_HOC.values() for line in fine)


def test_pct_has_one_decimal_and_a_dash_for_what_was_not_measured():
    assert pct(0.9844) == "98.4 %" and pct(0.5) == "50.0 %" and pct(1.0) == "100.0 %"
    assert pct(0.99996) == "99.996 %"  # never rounded up to 100 % below 1
    assert pct(None) == "—" and pct(float("nan")) == "—"


def test_counts_have_thousands_separators_and_a_dash_when_not_recorded():
    assert count(538108) == "538,108" and count(7) == "7" and count(None) == "—"
    assert count(3.0) == "3"  # a count read from JSON as a float
    assert plural(1, "image") == "1 image" and plural(1025, "image") == "1,025 images"
    assert plural(2, "case group") == "2 case groups" and plural(0, "slice") == "0 slices"


def test_two_decimals_only_where_two_figures_must_be_told_apart():
    assert pct_pair(0.95, 0.9719) == ("95.0 %", "97.2 %")
    assert pct_pair(0.9716, 0.9719) == ("97.16 %", "97.19 %")
    assert pct_pair(0.9, 0.9) == ("90.0 %", "90.0 %")


def test_points_say_a_difference_of_shares():
    assert points(0.0123) == "+1.2 points" and points(-0.004) == "−0.4 points"


def test_the_session_history_words_status_and_confidence_as_the_summary_does():
    """The history table said "refer" and 0.9844 beside the summary's "Refer to a radiologist" and 98.4 %."""
    from types import SimpleNamespace

    from brainclf.presentation import CaseBook

    book = CaseBook()
    for k, (referred, ood) in enumerate(((True, False), (False, False), (False, True))):
        book.store(book.add(f"s{k}.png", bytes([k])).digest, "m", SimpleNamespace(
            predicted="glioma", confidence=0.9844, referred=referred, out_of_distribution=ood))
    rows = book.history_rows("m")[::-1]
    assert [r["status"] for r in rows] == [wording.REFER_HEADLINE, "Not referred", "Not like a brain MRI slice"]
    assert wording.REFER_HEADLINE == "Refer to a radiologist" == wording.HEADLINES["refer"]
    assert [r["confidence"] for r in rows] == ["98.4 %", "98.4 %", "—"]
