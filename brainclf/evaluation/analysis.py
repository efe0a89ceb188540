"""What the Evaluation page shows, computed from a card's stored predictions or a fresh evaluation."""

from __future__ import annotations

import hashlib
from math import comb
from pathlib import Path, PurePosixPath

import numpy as np

from .. import CLASS_NAMES, DISPLAY_NAMES
from ..input.preprocess import load_model_input
from ..scoring.metrics import classification_metrics, reliability_curve, roc_curves
from ..scoring.operating_point import referred_notumor, risk_coverage, strict_notumor_bar
from ..scoring.rates import arrays_from_rows
from ..scoring.trust import BOOT_CHUNK_CELLS, bootstrap_ci, coverage_accuracy, coverage_curve, group_mean_resamples
from .evaluate import subset_summary


def report_from_rows(rows: list[dict], refer_threshold: float = 0.0) -> dict:
    """Metrics, curves, reliability bins, bootstrap CIs, the refer rule and the clean subset, recomputed
    from the per-image predictions."""

    y, p = arrays_from_rows(rows)
    report = classification_metrics(y, p)
    if report["n"]:
        report["curves"] = roc_curves(y, p)
        report["reliability"] = reliability_curve(y, p)["bins"]
        report["bootstrap"] = bootstrap_ci(y, p)
        report["refer"] = coverage_accuracy(y, p, refer_threshold)
        report["coverage_curve"] = coverage_curve(y, p)
        if all("clean" in r for r in rows):
            clean = np.array([r["clean"] for r in rows], dtype=bool)
            report["clean"] = subset_summary(y[clean], p[clean])
    return report


def rows_for_cell(rows: list[dict], true: str, pred: str) -> list[dict]:
    """The images of one confusion-matrix cell, most confident first."""
    out = [r for r in rows if r["true"] == true and r["pred"] == pred]
    return sorted(out, key=lambda r: -max(r["probs"]))


def most_confused(cm) -> tuple[str, str]:
    """(true, predicted) class of the largest off-diagonal confusion-matrix cell (meningioma → glioma if none)."""
    cm = np.asarray(cm)
    off = cm - np.diag(np.diag(cm))
    i, j = np.unravel_index(off.argmax(), off.shape) if off.any() else (1, 0)
    return CLASS_NAMES[int(i)], CLASS_NAMES[int(j)]


def misclassified(rows: list[dict], sequence: str | None = None) -> list[dict]:
    """The wrong rows (of one MR sequence, if given), most confident first: the external gallery."""
    wrong = [r for r in rows if r["true"] != r["pred"] and sequence in (None, r.get("sequence", "unknown"))]
    return sorted(wrong, key=lambda r: -max(r["probs"]))


def resolve_image(path: str, data_root: str | Path | None, allowed=None) -> Path | None:
    """A card stores paths relative to the data root it was evaluated on; find the file if we can.

    Card paths are untrusted: absolute paths, '..' and anything that resolves (symlinks included) outside
    the data root (or its parent, for cards evaluated one level up) are refused (None), never opened. With
    `allowed` (the server's data roots, brainclf.serving.settings), the file must also lie inside one of them: the
    parent of a root is not itself a root.
    """

    if not data_root or not isinstance(path, str) or not path or "\x00" in path:
        return None
    rel = PurePosixPath(path)
    if rel.is_absolute() or ".." in rel.parts or Path(path).is_absolute():
        return None
    roots = None if allowed is None else [Path(a).resolve() for a in allowed]
    root = Path(data_root).resolve()
    for base in (root, root.parent):
        candidate = (base / rel).resolve()
        if not candidate.is_relative_to(base):
            continue
        if roots is not None and not any(candidate.is_relative_to(a) for a in roots):
            continue
        if candidate.is_file():
            return candidate
    return None


def embed_2d(features: np.ndarray, method: str = "pca", seed: int = 0) -> np.ndarray:
    """2-D map of feature vectors (PCA, or t-SNE for a non-linear view) with scikit-learn."""
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE

    f = (features - features.mean(0)) / (features.std(0) + 1e-6)
    if method == "tsne" and len(f) > 5:
        return TSNE(n_components=2, perplexity=min(30, len(f) - 1), random_state=seed, init="pca").fit_transform(f)
    return PCA(n_components=2, random_state=seed).fit_transform(f)


def mcnemar_exact(a_only: int, b_only: int) -> float:
    """Two-sided exact McNemar p-value: a binomial test (p = 1/2) on the discordant pairs, `a_only` images
    that only model A got right and `b_only` that only model B got right. 1.0 without discordant pairs."""
    n, k = a_only + b_only, min(a_only, b_only)
    if n == 0:
        return 1.0
    tail = sum(comb(n, i) for i in range(k + 1)) / 2 ** n
    return float(min(1.0, 2 * tail))


def group_sign_flip_p(diffs: np.ndarray, unit: np.ndarray, n_perm: int, rng: np.random.Generator) -> float:
    """Two-sided p-value of a paired permutation test over groups: under "the two models are exchangeable", each
    case group's summed difference (A right − B right) is as likely negated; slices of one case flip together, which
    McNemar's test, counting them as independent pairs, does not do. `n_perm` random sign patterns (+1: the
    observed one counts, so p is never 0)."""
    _, inverse = np.unique(unit, return_inverse=True)
    totals = np.bincount(inverse, weights=diffs)
    observed, extreme = abs(totals.sum()), 0
    per_chunk = max(1, BOOT_CHUNK_CELLS // len(totals))  # 2,000 patterns of 50,000 groups at once took 1.7 GB
    for start in range(0, n_perm, per_chunk):
        signs = rng.integers(0, 2, size=(min(per_chunk, n_perm - start), len(totals)), dtype=np.int8) * 2 - 1
        extreme += int((np.abs(signs @ totals) >= observed - 1e-9).sum())
    return float((extreme + 1) / (n_perm + 1))


def paired_comparison(rows_a: list[dict], rows_b: list[dict], n_boot: int = 2000, seed: int = 0,
                      tests: bool = True) -> dict:
    """Two models on the same test images (matched by path): each accuracy, the difference A − B, its 95 %
    paired percentile bootstrap interval and a paired test's p-value (`test`).

    When every matched row of A carries a "group" (external folders) the bootstrap resamples case groups and the
    test is a sign-flip permutation test over them; else single images and McNemar's exact test. Rows present in
    one list only are left out (`unmatched`). `tests=False`: the accuracies only (an uploader's claimed rows get no
    interval or p-value).
    """
    by_path = {r["path"]: r for r in rows_b}
    pairs = [(r, by_path[r["path"]]) for r in rows_a
             if r["path"] in by_path and by_path[r["path"]]["true"] == r["true"]]
    out = {"n": len(pairs), "unmatched": len(rows_a) + len(rows_b) - 2 * len(pairs)}
    if not pairs:
        return out
    ca = np.array([a["pred"] == a["true"] for a, _ in pairs], dtype=float)
    cb = np.array([b["pred"] == b["true"] for _, b in pairs], dtype=float)
    a_only, b_only = int(((ca == 1) & (cb == 0)).sum()), int(((ca == 0) & (cb == 1)).sum())
    out.update({"accuracy_a": float(ca.mean()), "accuracy_b": float(cb.mean()), "a_only": a_only, "b_only": b_only})
    if not tests:
        return out
    if all("group" in a for a, _ in pairs):
        unit, unit_name = np.array([a["group"] for a, _ in pairs]), "case groups"
    else:
        unit, unit_name = np.arange(len(pairs)), "images"
    n_units = len(np.unique(unit))
    rng = np.random.default_rng(seed)
    diffs = group_mean_resamples(ca - cb, unit, n_boot, rng)
    lo, hi = np.percentile(diffs, [2.5, 97.5])
    if unit_name == "case groups":
        test, p_value = "a permutation test over case groups", group_sign_flip_p(ca - cb, unit, n_boot, rng)
    else:
        test, p_value = "McNemar's exact test", mcnemar_exact(a_only, b_only)
    out.update({"difference": float(ca.mean() - cb.mean()), "interval": (float(lo), float(hi)),
                "p_value": p_value, "test": test, "resampled": unit_name, "units": n_units, "resamples": n_boot})
    return out


def feature_map_key(model_label: str, tta: bool, root, rows: list[dict]) -> tuple:
    """What the map depends on: the model version, the TTA mode, the dataset and the predictions shown."""
    digest = hashlib.sha256(repr([(r["path"], r["pred"]) for r in rows]).encode()).hexdigest()[:16]
    return model_label, bool(tta), str(root), digest


# The map's images: enough for its shape (Kaggle `Testing` has 606 gliomas and meningiomas), few enough that a card
# of 50,000 rows naming one file over and over cannot fill the server's memory; the model sees them MAP_CHUNK at a
# time, so no more than one chunk's inputs are held at once.
MAX_MAP_IMAGES = 1000
MAP_CHUNK = 64


def feature_map(predictor, rows: list[dict], root, allowed, classes=("glioma", "meningioma"),
                where: str = "the test split") -> dict | None:
    """PCA of the penultimate-layer features of the images of `classes` found in the dataset (each file once; an
    even sample of MAX_MAP_IMAGES where there are more): coordinates and labels for figures.feature_map_figure.
    None when fewer than 3 of them are found."""
    found, seen = [], set()
    for r in rows:
        p = resolve_image(r["path"], root, allowed=allowed) if r["true"] in classes else None
        if p is not None and p not in seen:
            seen.add(p)
            found.append((r, p))
    if len(found) < 3:
        return None
    total = len(found)
    if total > MAX_MAP_IMAGES:
        found = [found[int(i)] for i in np.linspace(0, total - 1, MAX_MAP_IMAGES)]
    features = np.concatenate([
        predictor.penultimate_features(np.stack([load_model_input(p, predictor.contract)
                                                 for _, p in found[start:start + MAP_CHUNK]]))
        for start in range(0, len(found), MAP_CHUNK)])
    what = " and ".join(DISPLAY_NAMES[c].lower() for c in classes) + " images"
    what += f" (an even sample of {total:,})" if total > len(found) else ""
    return {"coords": embed_2d(features), "true": [r["true"] for r, _ in found], "pred": [r["pred"] for r, _ in found],
            "names": [r["path"] for r, _ in found], "n": len(found),
            "what": "Penultimate-layer features (PCA)",
            "data": f"{len(found):,} {what}, {where}"}


def curve_points(curve: dict) -> dict:
    """operating_point's integer curve → shares for a plot: coverage and accuracy of the answered."""
    n = max(curve["n"], 1)
    cuts = [k for k, a in enumerate(curve["answered"]) if a > 0]  # a cut that answers nothing has no accuracy
    return {"coverage": [curve["answered"][k] / n for k in cuts],
            "accuracy": [curve["correct"][k] / curve["answered"][k] for k in cuts],
            "threshold": [curve["threshold"][k] for k in cuts]}


def risk_coverage_by_source(card, tta: bool, thresholds: dict[str, float]) -> list[dict]:
    """Accuracy among answered vs share answered, per source: the validation curves the refer rule was fitted
    on (from the card) and the held-out ones (the card's stored Kaggle test and external rows), each with the
    point where `thresholds` (the rule in force, for `tta`) puts it. Held-out curves refer a "no tumour" answer
    below the rule's "no tumour" bar at every cut, as the validation ones do (operating_point.fit_curves); rows
    stored in the other flip-TTA mode (an external source's are single pass) get their mode in the label and no
    point: the rule's bars are not theirs.

    Returns:
        [{"label", "data", "n", "held_out", "coverage", "accuracy", "threshold", "point"}], "point" being
        coverage_accuracy's dict at `thresholds` (None for validation curves: their slices are not stored).
    """
    out = []
    block = card.calibration.get("operating_tta" if tta else "operating") or {}
    for source, curve in block.get("curves", {}).items():
        out.append({"label": f"{source}, validation", "data": source, "n": curve["n"], "held_out": False,
                    "point": None, **curve_points(curve)})
    rows, with_tta = card.stored_test_predictions(tta)
    recorded = card.metrics.get("external", {})
    held = [("Kaggle test split", rows, with_tta)] + [
        (f"{name}, held-out cases", ext, bool((recorded.get(name) or {}).get("tta")))
        for name, ext in card.external_predictions.items()]
    for label, rows, rows_tta in held:
        if not rows:
            continue
        y, p = arrays_from_rows(rows)
        worst = (card.calibration.get("operating_tta" if rows_tta else "operating") or {}).get("worst_notumor_miss")
        below_bar = referred_notumor(p, strict_notumor_bar(worst))
        same = rows_tta == tta
        out.append({"label": label if same else f"{label} ({'flip TTA' if rows_tta else 'single pass'})",
                    "data": label, "n": len(y), "held_out": True,
                    "point": coverage_accuracy(y, p, thresholds) if same else None,
                    **curve_points(risk_coverage(y, p, below_bar))})
    return out
