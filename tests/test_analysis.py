"""brainclf.evaluation.analysis: the Evaluation page's report, cell drill-down, image lookup and feature maps."""

from __future__ import annotations

import numpy as np
import pytest

from brainclf import CLASS_NAMES
from brainclf.evaluation.analysis import (
    arrays_from_rows,
    embed_2d,
    report_from_rows,
    resolve_image,
    rows_for_cell,
)


def row(path: str, true: str, probs: list[float], clean: bool | None = None) -> dict:
    r = {"path": path, "true": true, "pred": CLASS_NAMES[int(np.argmax(probs))], "probs": probs}
    if clean is not None:
        r["clean"] = clean
    return r


@pytest.fixture
def rows() -> list[dict]:
    """12 predictions: 3 per class, 2 mistakes (a glioma called meningioma, a pituitary called notumor)."""
    return [
        row("Testing/glioma/a.png", "glioma", [0.9, 0.05, 0.03, 0.02], clean=True),
        row("Testing/glioma/b.png", "glioma", [0.6, 0.2, 0.1, 0.1], clean=True),
        row("Testing/glioma/c.png", "glioma", [0.3, 0.5, 0.1, 0.1], clean=False),
        row("Testing/meningioma/a.png", "meningioma", [0.1, 0.8, 0.05, 0.05], clean=True),
        row("Testing/meningioma/b.png", "meningioma", [0.05, 0.9, 0.03, 0.02], clean=False),
        row("Testing/meningioma/c.png", "meningioma", [0.2, 0.7, 0.05, 0.05], clean=True),
        row("Testing/notumor/a.png", "notumor", [0.0, 0.0, 1.0, 0.0], clean=True),
        row("Testing/notumor/b.png", "notumor", [0.1, 0.1, 0.7, 0.1], clean=True),
        row("Testing/notumor/c.png", "notumor", [0.05, 0.05, 0.85, 0.05], clean=False),
        row("Testing/pituitary/a.png", "pituitary", [0.0, 0.1, 0.1, 0.8], clean=True),
        row("Testing/pituitary/b.png", "pituitary", [0.1, 0.1, 0.55, 0.25], clean=True),
        row("Testing/pituitary/c.png", "pituitary", [0.02, 0.02, 0.01, 0.95], clean=True),
    ]


def test_arrays_from_rows(rows):
    y, p = arrays_from_rows(rows)
    assert y.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3]
    assert p.shape == (12, 4) and p.dtype == np.float64
    y, p = arrays_from_rows([])
    assert y.shape == (0,) and p.shape == (0, 4)


def test_report_from_rows(rows):
    report = report_from_rows(rows, refer_threshold=0.65)
    assert report["n"] == 12
    assert report["accuracy"] == pytest.approx(10 / 12)
    cm = np.array(report["confusion_matrix"])
    assert cm.shape == (4, 4) and cm.sum() == 12
    assert np.trace(cm) == 10
    assert cm[0, 1] == 1 and cm[3, 2] == 1
    assert cm.sum(1).tolist() == [3, 3, 3, 3]
    assert set(report["curves"]) == set(CLASS_NAMES)
    for cur in report["curves"].values():
        assert {"fpr", "tpr", "auc"} <= set(cur)
        assert 0 <= cur["auc"] <= 1
    assert isinstance(report["reliability"], list) and sum(b["n"] for b in report["reliability"]) == 12
    lo, hi = report["bootstrap"]["accuracy"]
    assert lo <= report["accuracy"] <= hi
    refer = report["refer"]
    # Confidences >= 0.65: 0.9, 0.8, 0.9, 0.7, 1.0, 0.7, 0.85, 0.8, 0.95 → 9 accepted, all correct.
    assert refer["threshold"] == 0.65 and refer["accepted"] == 9 and refer["referred"] == 3
    assert refer["accepted_accuracy"] == 1.0
    assert report["coverage_curve"] and report["coverage_curve"][0]["coverage"] == 1.0
    clean = report["clean"]
    assert clean["n"] == 9
    assert clean["accuracy"] == pytest.approx(8 / 9)  # the glioma mistake is not clean, the pituitary one is
    assert np.array(clean["confusion_matrix"]).sum() == 9


def test_report_without_clean_flags_or_rows(rows):
    for r in rows:
        r.pop("clean")
    report = report_from_rows(rows)
    assert "clean" not in report
    assert report["refer"]["threshold"] == 0.0 and report["refer"]["coverage"] == 1.0
    rows[0]["clean"] = True  # only some rows flagged: no clean subset either
    assert "clean" not in report_from_rows(rows)
    empty = report_from_rows([])
    assert empty["n"] == 0 and "curves" not in empty


def test_rows_for_cell(rows):
    cell = rows_for_cell(rows, "meningioma", "meningioma")
    assert [r["path"] for r in cell] == ["Testing/meningioma/b.png", "Testing/meningioma/a.png",
                                        "Testing/meningioma/c.png"]
    assert [r["path"] for r in rows_for_cell(rows, "glioma", "meningioma")] == ["Testing/glioma/c.png"]
    assert rows_for_cell(rows, "notumor", "glioma") == []
    conf = [max(r["probs"]) for r in rows_for_cell(rows, "glioma", "glioma")]
    assert conf == sorted(conf, reverse=True)


def test_resolve_image(tmp_path):
    root = tmp_path / "data" / "brain-mri"
    (root / "Testing" / "glioma").mkdir(parents=True)
    (root / "Testing" / "glioma" / "x.png").write_bytes(b"png")
    (tmp_path / "data" / "other" / "glioma").mkdir(parents=True)
    (tmp_path / "data" / "other" / "glioma" / "y.png").write_bytes(b"png")
    assert resolve_image("Testing/glioma/x.png", root) == root / "Testing" / "glioma" / "x.png"
    assert resolve_image("Testing/glioma/x.png", str(root)) == root / "Testing" / "glioma" / "x.png"
    # A path relative to the data root's parent (a card evaluated one level up).
    assert resolve_image("other/glioma/y.png", root) == tmp_path / "data" / "other" / "glioma" / "y.png"
    assert resolve_image("Testing/glioma/missing.png", root) is None
    assert resolve_image("Testing/glioma", root) is None  # a folder is not an image
    assert resolve_image("Testing/glioma/x.png", None) is None
    assert resolve_image("Testing/glioma/x.png", "") is None


@pytest.mark.parametrize("method", ["pca", "tsne"])
def test_embed_2d(method):
    rng = np.random.default_rng(0)
    n = 40
    feats = np.concatenate([rng.normal(0, 1, (n, 10)), rng.normal(6, 1, (n, 10))])
    feats[:, 3] = 1.0  # a constant feature must not produce NaN
    coords = embed_2d(feats, method=method, seed=0)
    assert coords.shape == (2 * n, 2)
    assert np.all(np.isfinite(coords))
    # The two groups stay apart in the map.
    a, b = coords[:n].mean(0), coords[n:].mean(0)
    spread = np.concatenate([coords[:n] - a, coords[n:] - b]).std()
    assert np.linalg.norm(a - b) > 2 * spread


def test_embed_2d_tsne_small_falls_back_to_pca():
    feats = np.random.default_rng(1).normal(size=(5, 4))
    np.testing.assert_allclose(embed_2d(feats, "tsne"), embed_2d(feats, "pca"))


def test_penultimate_features(smoke_predictor, make_image):
    from brainclf.inference import penultimate_features

    model = smoke_predictor.model
    x = np.stack([smoke_predictor.preprocess(make_image(c, seed=i)) for i, c in enumerate(CLASS_NAMES * 2)])
    feats = penultimate_features(model, x, batch_size=3)  # several batches
    n_features = model.get_layer("gap").output.shape[-1]
    assert feats.shape == (8, n_features)
    assert np.all(np.isfinite(feats))
    import keras

    direct = keras.Model(model.inputs, model.get_layer("gap").output)(x, training=False)
    np.testing.assert_allclose(feats, np.asarray(direct), atol=1e-5)


def test_penultimate_features_of_an_ensemble_join_its_members():
    import keras

    from brainclf.inference import penultimate_features
    from brainclf.input import InputContract
    from brainclf.model import build_model

    model = build_model("compact_cnn_x2", InputContract(size=32, channels=1))
    x = np.random.default_rng(0).random((2, 32, 32, 1), np.float32)
    feats = penultimate_features(model, x)
    parts = [np.asarray(keras.Model(model.inputs, model.get_layer(f"m{k}_gap").output)(x)) for k in range(2)]
    np.testing.assert_allclose(feats, np.concatenate(parts, axis=1), atol=1e-5)


def test_resolve_image_refuses_paths_outside_the_data_root(tmp_path):
    root = tmp_path / "data" / "brain-mri"
    (root / "Testing").mkdir(parents=True)
    secret = tmp_path / "secret.png"
    secret.write_bytes(b"png")
    (root / "Testing" / "link.png").symlink_to(secret)
    assert resolve_image("../../secret.png", root) is None
    assert resolve_image(str(secret), root) is None  # absolute
    assert resolve_image("/etc/passwd", root) is None
    assert resolve_image("Testing/../../../secret.png", root) is None
    assert resolve_image("Testing/link.png", root) is None  # a symlink pointing outside
    assert resolve_image(None, root) is None


def test_sensitivity_and_specificity_lead_with_tumour_vs_no_tumour():
    from brainclf.scoring import sensitivity_specificity

    def r(true, pred):
        probs = [0.0] * 4
        probs[["glioma", "meningioma", "notumor", "pituitary"].index(pred)] = 1.0
        return {"path": "x", "true": true, "pred": pred, "probs": probs}

    rows = [r("glioma", "glioma"), r("glioma", "notumor"), r("meningioma", "glioma"), r("notumor", "notumor"),
            r("notumor", "meningioma")]
    table = {t["finding"]: t for t in sensitivity_specificity(rows)}
    first = sensitivity_specificity(rows)[0]
    assert first["finding"].startswith("Any tumour")
    assert first["sensitivity"] == pytest.approx(2 / 3) and first["specificity"] == pytest.approx(1 / 2)
    assert table["glioma"]["sensitivity"] == 0.5 and table["glioma"]["specificity"] == pytest.approx(2 / 3)
    assert table["pituitary"]["sensitivity"] is None and table["pituitary"]["specificity"] == 1.0
    # Without a "no tumour" image there is no negative for "any tumour": its specificity is not measured (None, as
    # the docstring promises for a rate without cases), not 0 or 100 %.
    tumours_only = [row for row in rows if row["true"] != "notumor"]
    any_tumour = sensitivity_specificity(tumours_only)[0]
    assert any_tumour["negatives"] == 0 and any_tumour["specificity"] is None
    assert any_tumour["sensitivity"] == pytest.approx(2 / 3)


def test_resolve_image_stays_inside_the_servers_data_roots(tmp_path):
    """A card evaluated one level up may name 'other/x.png' beside the root; with the server's data roots
    given, only a file inside one of them is opened: the parent of a root is not itself a root."""
    root = tmp_path / "data" / "brain-mri"
    (root / "Testing").mkdir(parents=True)
    (root / "Testing" / "a.png").write_bytes(b"png")
    beside = tmp_path / "data" / "private"
    beside.mkdir()
    (beside / "b.png").write_bytes(b"png")
    (tmp_path / "data" / "external").mkdir()
    (tmp_path / "data" / "external" / "c.png").write_bytes(b"png")
    assert resolve_image("private/b.png", root) == (beside / "b.png").resolve()  # no roots given: as before
    allowed = [root, tmp_path / "data" / "external"]
    assert resolve_image("Testing/a.png", root, allowed=allowed) == (root / "Testing" / "a.png").resolve()
    assert resolve_image("private/b.png", root, allowed=allowed) is None
    external = (tmp_path / "data" / "external" / "c.png").resolve()
    assert resolve_image("external/c.png", root, allowed=allowed) == external
    assert resolve_image("Testing/a.png", root, allowed=[]) is None
    for bad in ("/etc/passwd", "../private/b.png", "Testing/../../private/b.png", str(beside / "b.png")):
        assert resolve_image(bad, root, allowed=allowed) is None


def test_misclassified_rows_most_confident_first_and_by_sequence():
    from brainclf.evaluation import misclassified

    rows = [{"true": "glioma", "pred": "notumor", "probs": [.2, 0, .8, 0], "sequence": "T1"},
            {"true": "glioma", "pred": "glioma", "probs": [.9, 0, .1, 0], "sequence": "T1"},
            {"true": "meningioma", "pred": "glioma", "probs": [.95, .05, 0, 0], "sequence": "T2"}]
    assert [r["sequence"] for r in misclassified(rows)] == ["T2", "T1"]
    assert [r["pred"] for r in misclassified(rows, "T1")] == ["notumor"]


def test_most_confused_pair():
    from brainclf.evaluation import most_confused

    assert most_confused([[5, 0, 3, 0], [1, 4, 0, 0], [0, 0, 9, 0], [0, 0, 0, 2]]) == ("glioma", "notumor")
    assert most_confused(np.eye(4) * 3) == ("meningioma", "glioma")


def test_mcnemar_exact_against_hand_computed_tables():
    from brainclf.evaluation import mcnemar_exact

    # 1 vs 6 discordant pairs: P(X <= 1 | n=7, 1/2) = (1 + 7) / 128, two-sided 16 / 128.
    assert mcnemar_exact(1, 6) == pytest.approx(0.125)
    assert mcnemar_exact(6, 1) == pytest.approx(0.125)  # symmetric
    assert mcnemar_exact(0, 5) == pytest.approx(2 / 32)
    # 2 vs 10: (1 + 12 + 66) / 4096 per tail.
    assert mcnemar_exact(2, 10) == pytest.approx(2 * 79 / 4096)
    assert mcnemar_exact(3, 3) == 1.0 and mcnemar_exact(0, 0) == 1.0  # capped, and no discordant pairs


def _pair_rows(correct_a: list[bool], correct_b: list[bool], groups=None):
    def make(ok, i):
        r = {"path": f"img{i}.png", "true": "glioma", "pred": "glioma" if ok else "meningioma"}
        if groups is not None:
            r["group"] = groups[i]
        return r

    return ([make(ok, i) for i, ok in enumerate(correct_a)], [make(ok, i) for i, ok in enumerate(correct_b)])


def test_paired_comparison_difference_interval_and_discordant_pairs():
    from brainclf.evaluation import paired_comparison

    # 40 images: both right on 30, only A right on 8, only B right on 2 → A 95 %, B 80 %, difference +15 points.
    a = [True] * 30 + [True] * 8 + [False] * 2
    b = [True] * 30 + [False] * 8 + [True] * 2
    rows_a, rows_b = _pair_rows(a, b)
    cmp = paired_comparison(rows_a, rows_b[::-1])  # matched by path, not by order
    assert cmp["n"] == 40 and cmp["unmatched"] == 0
    assert cmp["accuracy_a"] == pytest.approx(38 / 40) and cmp["accuracy_b"] == pytest.approx(32 / 40)
    assert cmp["difference"] == pytest.approx(0.15)
    assert (cmp["a_only"], cmp["b_only"]) == (8, 2)
    assert cmp["p_value"] == pytest.approx(2 * (1 + 10 + 45) / 1024)  # exact binomial, n = 10 discordant
    lo, hi = cmp["interval"]
    assert lo < 0.15 < hi and lo > -0.1 and hi < 0.35
    assert cmp["resampled"] == "images" and cmp["units"] == 40
    # Paired: identical models have a zero-width interval (an unpaired bootstrap would not).
    same = paired_comparison(rows_a, rows_a)
    assert same["difference"] == 0 and same["interval"] == (0.0, 0.0) and same["p_value"] == 1.0


def test_paired_comparison_resamples_case_groups_and_skips_unmatched_images():
    from brainclf.evaluation import paired_comparison

    a = [True] * 20 + [False] * 20
    b = [False] * 20 + [True] * 20
    by_image = paired_comparison(*_pair_rows(a, b))
    # Four case groups of ten slices each: the same slices, but only four independent cases.
    grouped = paired_comparison(*_pair_rows(a, b, groups=[i // 10 for i in range(40)]))
    assert grouped["resampled"] == "case groups" and grouped["units"] == 4
    assert grouped["difference"] == by_image["difference"] == 0
    width = lambda c: c["interval"][1] - c["interval"][0]  # noqa: E731
    assert width(grouped) > 1.5 * width(by_image)
    rows_a, rows_b = _pair_rows([True, False, True], [True, True, True])
    rows_b[2]["true"] = "pituitary"  # the same file with another label is no pair
    cmp = paired_comparison(rows_a + [{"path": "only-a.png", "true": "glioma", "pred": "glioma"}], rows_b)
    assert cmp["n"] == 2 and cmp["unmatched"] == 3
    assert paired_comparison(rows_a, [])["n"] == 0


def test_the_feature_map_reads_each_file_once_samples_evenly_and_feeds_the_model_in_chunks(tmp_path, monkeypatch):
    """A card may name one file thousands of times (an upload's rows): the map reads it once, takes at most
    MAX_MAP_IMAGES, and never holds more than MAP_CHUNK model inputs at once."""
    from PIL import Image

    from brainclf.evaluation import analysis
    from brainclf.input import InputContract

    for i in range(6):
        Image.fromarray(np.full((16, 16), 40 * i, np.uint8)).save(tmp_path / f"{i}.png")
    rows = [{"path": f"{i % 6}.png", "true": "glioma" if i % 2 else "meningioma", "pred": "glioma"} for i in range(600)]
    rows.append({"path": "0.png", "true": "pituitary", "pred": "pituitary"})  # another class: not mapped

    class Features:
        contract, batches = InputContract(size=16), []

        def penultimate_features(self, x):
            self.batches.append(len(x))
            return x.reshape(len(x), -1)[:, :8]

    monkeypatch.setattr(analysis, "MAX_MAP_IMAGES", 4)
    monkeypatch.setattr(analysis, "MAP_CHUNK", 3)
    predictor = Features()
    fmap = analysis.feature_map(predictor, rows, tmp_path, [tmp_path])
    assert fmap["n"] == 4 and predictor.batches == [3, 1]
    assert fmap["names"] == ["0.png", "1.png", "3.png", "5.png"]  # an even sample of the 6 distinct files
    assert fmap["data"] == "4 glioma and meningioma images (an even sample of 6), the test split"


def test_a_paired_test_over_case_groups_counts_a_case_once_not_each_of_its_slices():
    """10 cases of 10 slices: A alone right on every slice of 7 cases, B on 3. McNemar, counting 70 against 30
    slices, says p < 0.001; the cases say 7 against 3, which sign flips over the 10 groups reach with
    p = 352 / 1,024 = 0.34."""
    from brainclf.evaluation.analysis import mcnemar_exact, paired_comparison

    rows_a, rows_b = [], []
    for g in range(10):
        for k in range(10):
            row = {"path": f"case{g}/{k}.png", "true": "glioma", "probs": [0.7, 0.1, 0.1, 0.1], "group": g}
            rows_a.append(dict(row, pred="glioma" if g < 7 else "meningioma"))
            rows_b.append(dict(row, pred="meningioma" if g < 7 else "glioma"))
    paired = paired_comparison(rows_a, rows_b, n_boot=4000)
    assert paired["test"] == "a permutation test over case groups"
    assert mcnemar_exact(paired["a_only"], paired["b_only"]) < 0.001
    assert 0.30 < paired["p_value"] < 0.39
    ungrouped = paired_comparison([{k: v for k, v in r.items() if k != "group"} for r in rows_a], rows_b)
    assert ungrouped["test"] == "McNemar's exact test" and ungrouped["p_value"] < 0.001
