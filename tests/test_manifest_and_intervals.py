"""A hospital's manifest.csv as exports write it (separators, header spelling, encodings, Windows paths, rows that
name nothing or contradict each other), and the case-group interval where every resample agrees."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from brainclf import CLASS_NAMES
from brainclf.data.datasets import Sample
from brainclf.errors import DataError
from brainclf.evaluation.external import clopper_pearson, cluster_bootstrap, evaluate_external, read_manifest

SLICES = ("glioma/a.png", "glioma/b.png", "notumor/c.png")


def folder(tmp_path, manifest: bytes | str):
    """Three tiny slices (distinct noise, so no two are near duplicates) and a manifest.csv beside them."""
    rng = np.random.default_rng(0)
    for rel in SLICES:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (16, 16), dtype=np.uint8), mode="L").save(tmp_path / rel)
    (tmp_path / "manifest.csv").write_bytes(manifest.encode() if isinstance(manifest, str) else manifest)
    return tmp_path


EXPECTED = {"glioma/a.png": {"sequence": "T1C+", "subtype": ""}, "glioma/b.png": {"sequence": "T2", "subtype": ""}}


@pytest.mark.parametrize("text", [
    "file;sequence\nglioma/a.png;T1C+\nglioma/b.png;T2\n",  # European Excel
    "file\tsequence\nglioma/a.png\tT1C+\nglioma/b.png\tT2\n",  # Excel's "Text (tab delimited)"
    "file, sequence\nglioma/a.png, T1C+\nglioma/b.png, T2\n",  # padded header and cells
    "File,Sequence\r\nglioma/a.png,T1C+\r\nglioma/b.png,T2\r\n",  # capitalised, CRLF
    "\ufeffFILE;Sequence ;Notes\nglioma/a.png;T1C+;x, y\nglioma/b.png;T2;\n",  # BOM; a comma inside a cell
], ids=["semicolon", "tab", "spaces", "case", "bom-semicolon"])
def test_manifest_headers_and_separators_as_exports_write_them(tmp_path, text):
    m = read_manifest(folder(tmp_path, text))
    assert m == EXPECTED and m.warnings == [] and m.rows == 2


def test_a_refused_header_is_quoted_escaped_and_cut(tmp_path):
    with pytest.raises(DataError, match=r"needs the columns file and sequence.*its header is 'name;label'"):
        read_manifest(folder(tmp_path, "name;label\na.png;glioma\n"))
    with pytest.raises(DataError) as e:
        read_manifest(folder(tmp_path, "path,\x1b[31mseq" + "x" * 200 + "\na.png,T1\n"))
    assert "\x1b" not in str(e.value) and "\\x1b" in str(e.value) and "x" * 100 not in str(e.value)


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le"])  # with its byte-order mark, and without
def test_utf16_is_refused_naming_the_encoding(tmp_path, encoding):
    with pytest.raises(DataError, match="UTF-16 text.*CSV UTF-8"):
        read_manifest(folder(tmp_path, "file,sequence\nglioma/a.png,T1C+\n".encode(encoding)))


def test_latin1_is_refused_rather_than_read_as_replacement_characters(tmp_path):
    body = "file,sequence\nglioma/a.png,T1 Gd-verstärkt\n".encode("latin-1")
    with pytest.raises(DataError, match=r"not UTF-8 text: byte 0xe4 on line 2"):
        read_manifest(folder(tmp_path, body))
    body = "file,sequence\nglioma/a.png,T1 Gd-verstärkt\n".encode("utf-8-sig")  # Excel's CSV UTF-8: fine
    assert read_manifest(folder(tmp_path, body))["glioma/a.png"]["sequence"] == "T1 Gd-verstärkt"


def test_windows_separators_are_read_as_slashes_and_stay_inside_the_folder(tmp_path):
    m = read_manifest(folder(tmp_path, "file,sequence\nglioma\\a.png,T1C+\n.\\glioma\\b.png,T2\n"))
    assert m == EXPECTED and m.unmatched == 0
    for bad in ("..\\..\\x.png", "C:\\data\\glioma\\a.png", "C:glioma\\a.png", "\\\\server\\share\\a.png",
                "glioma\\..\\..\\x.png", "/etc/passwd"):
        (tmp_path / "manifest.csv").write_text(f"file,sequence\n{bad},T1\n")
        with pytest.raises(DataError, match="inside its folder"):
            read_manifest(tmp_path)


def test_rows_naming_no_slice_and_conflicting_rows_are_counted_not_lost(tmp_path):
    m = read_manifest(folder(tmp_path, "file,sequence\nglioma/a.png,T1C+\nglioma/a.png,T2\nglioma/b.png,T2\n"
                                       "glioma/b.png,T2\nclinic/notumor/c.png,T1\nnotumor/zz.png,T1\n"))
    assert m["glioma/a.png"] == {"sequence": "unknown", "subtype": ""}  # T1C+ or T2: no guess
    assert m["glioma/b.png"] == {"sequence": "T2", "subtype": ""}  # repeated identically: fine
    assert (m.rows, m.unmatched, m.conflicting) == (6, 2, 1)
    assert m.counts()["warnings"] == m.warnings and len(m.warnings) == 2
    assert "2 of its 4 files are not in the folder (e.g. 'clinic/notumor/c.png')" in m.warnings[0]
    assert "1 files are listed more than once" in m.warnings[1]


def test_the_external_report_carries_what_reading_the_manifest_found(tmp_path):
    root = folder(tmp_path, "file,sequence\nglioma/a.png,T1C+\nnotumor/c.png,T2\nnotumor/gone.png,T2\n")
    samples = [Sample(root / rel, CLASS_NAMES.index(rel.split("/")[0])) for rel in SLICES]
    probs = np.eye(len(CLASS_NAMES))[[s.label for s in samples]] * 0.9 + 0.1 / len(CLASS_NAMES)
    predictor = SimpleNamespace(temperature=1.0, refer_thresholds=0.0, applied_refer_thresholds=0.0, tta=False,
                                card=SimpleNamespace(ood=None, name="m", version="1"))
    report = evaluate_external(predictor, samples, root, "not trained on",
                               predicted=(probs, [np.zeros(2)] * 3, samples, []))
    assert report["manifest"]["unmatched"] == 1 and report["manifest"]["rows"] == 3
    assert set(report["by_sequence"]) == {"T1C+", "T2", "unknown"}


@pytest.mark.parametrize("right", [1, 0])
def test_all_right_or_all_wrong_gets_an_exact_interval_over_case_groups_not_a_zero_width_one(right):
    groups = np.arange(45) % 14
    y = np.zeros(45, int)
    pred = np.full(45, 0 if right else 1)
    iv = cluster_bootstrap(y, pred, np.zeros(45, bool), groups, n_boot=200)
    assert iv["accuracy"] == pytest.approx(clopper_pearson(14 * right, 14))
    assert iv["recall"]["glioma"] == iv["accuracy"]  # every slice is a glioma: the same 14 groups
    assert iv["accuracy"][1] - iv["accuracy"][0] > 0.2 and "Clopper-Pearson" in iv["method"]
    assert clopper_pearson(14, 14) == pytest.approx([0.7684, 1.0], abs=1e-4)  # 0.025 ** (1 / 14)


def test_only_the_degenerate_statistics_fall_back_and_too_few_groups_say_why():
    rng = np.random.default_rng(1)
    y = np.repeat([0, 2], 30)  # gliomas half right; every normal right (recall notumor would be [100 %, 100 %])
    pred = np.where(y == 0, np.where(rng.random(60) < 0.5, 0, 2), 2)
    groups = np.arange(60) % 12
    iv = cluster_bootstrap(y, pred, np.zeros(60, bool), groups, n_boot=300)
    boot = iv["accuracy"]
    assert 0 < boot[0] < boot[1] < 1 and iv["method"].endswith("agreed: recall notumor")
    assert iv["recall"]["notumor"] == pytest.approx(clopper_pearson(12, 12))  # normals sit in all 12 groups
    few = cluster_bootstrap(y, pred, np.zeros(60, bool), np.arange(60) % 4)
    assert few["accuracy"] is None and few["method"].startswith("no interval: 4 case group(s), fewer than the 5")


def test_a_class_held_by_one_case_group_gets_no_interval_not_an_exact_one():
    """Its recall is the same in every resample that holds it (0.7 here) without being all right or all wrong: the
    exact fallback read that as 1 group of 1 right, [2.5 %, 100 %], "every resample agreed"."""
    y = np.r_[np.zeros(40, int), np.full(10, 1)]
    pred = np.r_[np.zeros(40, int), np.full(7, 1), np.full(3, 0)]
    groups = np.r_[np.arange(40) % 10, np.full(10, 99)]  # every meningioma in one case
    iv = cluster_bootstrap(y, pred, np.zeros(50, bool), groups, n_boot=200)
    assert iv["recall"]["meningioma"] is None and "fewer than 5 case groups hold it: recall meningioma (1)" in \
        iv["method"]
    assert iv["recall"]["glioma"] is not None


@pytest.mark.parametrize("groups_of_class", [2, 4, 5])
def test_a_statistic_held_by_fewer_than_five_case_groups_gets_no_interval(groups_of_class):
    """The whole set's 5-group minimum holds for each statistic too: a class whose slices sit in 2-4 cases."""
    rng = np.random.default_rng(3)
    y = np.r_[np.zeros(60, int), np.full(20, 3)]
    pred = np.where(rng.random(80) < 0.8, y, (y + 1) % 4)
    groups = np.r_[np.arange(60) % 20, 100 + np.arange(20) % groups_of_class]
    iv = cluster_bootstrap(y, pred, np.zeros(80, bool), groups, n_boot=200)
    assert iv["accuracy"] is not None and iv["recall"]["glioma"] is not None
    assert (iv["recall"]["pituitary"] is None) is (groups_of_class < 5)
    assert (f"recall pituitary ({groups_of_class})" in iv["method"]) is (groups_of_class < 5)


def test_the_interval_method_fits_a_card_however_many_statistics_it_names():
    """Every statistic degenerate or held by few groups: the names no longer fit a card's 300 characters."""
    from brainclf.evaluation.external import METHOD_MAX

    y = np.repeat(np.arange(4), 10)
    groups = np.r_[np.arange(10) % 10, 20 + np.arange(10) % 2, 30 + np.arange(10) % 3, 40 + np.arange(10) % 4]
    iv = cluster_bootstrap(y, y.copy(), np.zeros(40, bool), groups, n_boot=100)
    assert len(iv["method"]) <= METHOD_MAX and "statistics" in iv["method"]
    assert iv["recall"]["meningioma"] is None and iv["recall"]["glioma"] is not None


def test_the_interval_words_say_exact_where_it_fell_back_and_why_there_is_none():
    from brainclf.presentation.scope import group_interval

    groups = np.arange(45) % 14
    exact = cluster_bootstrap(np.zeros(45, int), np.zeros(45, int), np.zeros(45, bool), groups, n_boot=100)
    assert group_interval(exact) == "exact, over 14 case groups"
    rng = np.random.default_rng(1)
    y = np.repeat([0, 2], 30)
    mixed = cluster_bootstrap(y, np.where(rng.random(60) < 0.5, 0, 2), np.zeros(60, bool), np.arange(60) % 12,
                              n_boot=100)
    assert group_interval(mixed) == "over 12 case groups"
    few = cluster_bootstrap(y, y, np.zeros(60, bool), np.arange(60) % 4)
    assert group_interval(few) == "no interval: 4 case groups, fewer than the 5 it needs"
    assert group_interval(None) == "no interval"


def test_sequence_names_keep_only_plain_characters_since_plotly_renders_tags_in_labels(tmp_path):
    root = folder(tmp_path, "file,sequence,subtype\nglioma/a.png,<a href='x'>T1</a>,<b>astro</b>\n"
                            "glioma/b.png,T1C+ ,\"GBM (IDH-wt), grade 4/4: x_y\"\n")
    manifest = read_manifest(root)
    assert manifest["glioma/a.png"] == {"sequence": "a hrefxT1/a", "subtype": "bastro/b"}
    assert manifest["glioma/b.png"] == {"sequence": "T1C+", "subtype": "GBM (IDH-wt), grade 4/4: x_y"}


def test_a_subtype_that_is_a_web_address_is_kept_as_plain_words_so_the_card_accepts_it(tmp_path):
    from brainclf.model.card_schema import plain_label

    root = folder(tmp_path, "file,sequence,subtype\nglioma/a.png,T1,https://radiopaedia.org/cases/glioma-12\n")
    subtype = read_manifest(root)["glioma/a.png"]["subtype"]
    assert "://" not in subtype and plain_label(subtype) == subtype  # what a card's Label accepts


def test_the_interval_words_lead_only_where_there_is_an_interval():
    from brainclf.presentation.scope import group_interval

    few = {"accuracy": None, "groups": 4, "method": "no interval: 4 case group(s), fewer than the 5 it needs"}
    assert group_interval(few, lead="95 % interval ") == "no interval: 4 case groups, fewer than the 5 it needs"
    # A card's own text is never shown (st.table renders Markdown): made-up words give the plain phrase.
    forged = {"accuracy": None, "groups": 3, "method": "no interval :red[**trust me**] $x^2$"}
    assert group_interval(forged) == "no interval: 3 case groups, fewer than the 5 it needs"
    assert group_interval({"accuracy": None, "groups": "3", "method": "no interval $x$"}) == "no interval"
    assert group_interval({"accuracy": [0.1, 0.2], "groups": 9, "method": "percentile bootstrap"},
                          lead="95 % interval ") == "95 % interval over 9 case groups"
    assert group_interval("oops") == "no interval"


def test_a_cards_manifest_key_of_the_wrong_shape_shows_nothing_rather_than_crashing():
    from brainclf.presentation.views import manifest_notes

    assert manifest_notes({"manifest": "oops"}) == [] and manifest_notes({"manifest": [1, 2]}) == []
    assert manifest_notes({"manifest": {"warnings": ["**x**", 3]}}) == ["\\*\\*x\\*\\*"]
