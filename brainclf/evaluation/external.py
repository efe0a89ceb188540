"""External validation: how a model reads slices from a source it was not drawn from.

The Kaggle set confounds class, sequence and source, so an in-distribution accuracy says little about a
clinician's own scan. This module evaluates any labelled folder (any subset of the classes) and reports
what matters there: accuracy and recall with intervals that resample *case groups* (several slices of
one case are not independent), the share of tumour images answered "no tumour", and how many of those
the refer rule or the OOD guard catch, broken down by MR sequence when a `manifest.csv` says which.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .. import CLASS_NAMES
from ..data.datasets import Sample, relative_path
from ..data.sources import file_case_groups
from ..errors import DataError
from ..inference.batch_predict import predict_samples_and_features
from ..inference.ood import check
from ..scoring.metrics import classification_metrics
from ..scoring.operating_point import clopper_pearson
from ..scoring.trust import apply_temperature, thresholds_per_row
from .manifest import MANIFEST, MAX_MANIFEST_BYTES, Manifest, read_manifest  # noqa: F401 - re-exported

NOTUMOR = CLASS_NAMES.index("notumor")


def external_rows(predictor, samples: list[Sample], root: str | Path, predicted: tuple | None = None,
                  manifest: dict | None = None) -> tuple[list[dict], list[str]]:
    """Per-image rows (path, true, pred, probs, referred, ood, sequence, subtype, group) and read errors.

    `predicted`: (raw probabilities, OOD descriptors, kept samples, errors) already computed for `samples`
    (brainclf.inference.batch_predict.predict_samples_and_features), else computed here. `manifest`: ROOT's
    manifest already read (read_manifest), else read here.
    """
    root = Path(root)
    manifest = read_manifest(root) if manifest is None else manifest
    raw, feats, kept, errors = predicted if predicted is not None else predict_samples_and_features(predictor, samples)
    if not kept:
        return [], errors
    probs = apply_temperature(raw, predictor.temperature)
    referred = probs.max(1) < thresholds_per_row(probs, predictor.applied_refer_thresholds)
    ood = [check(None, f, predictor.card.ood)[0] for f in feats]
    paths = [s.path for s in kept]
    groups = file_case_groups(paths)
    rows = []
    for s, p, r, o, g in zip(kept, probs, referred, ood, groups):
        rel = relative_path(s.path, root)
        meta = manifest.get(rel, {})
        rows.append({"path": rel, "true": CLASS_NAMES[s.label], "pred": CLASS_NAMES[int(p.argmax())],
                     "probs": [round(float(v), 6) for v in p], "referred": bool(r), "ood": bool(o),
                     "sequence": meta.get("sequence", "unknown"), "subtype": meta.get("subtype", ""),
                     "group": int(g)})
    return rows, errors


def _rates(y: np.ndarray, pred: np.ndarray, caught: np.ndarray) -> dict:
    tumour = y != NOTUMOR
    called_nt = tumour & (pred == NOTUMOR)
    n_t = int(tumour.sum())
    return {"tumour_images": n_t, "called_notumor": int(called_nt.sum()),
            "called_notumor_rate": float(called_nt.sum() / n_t) if n_t else None,
            "called_notumor_unflagged": int((called_nt & ~caught).sum()),
            "called_notumor_unflagged_rate": float((called_nt & ~caught).sum() / n_t) if n_t else None}


MIN_INTERVAL_GROUPS = 5  # fewer case groups than this get no interval over case groups


def cluster_bootstrap(y: np.ndarray, pred: np.ndarray, caught: np.ndarray, groups: np.ndarray,
                      n_boot: int = 1000, seed: int = 0) -> dict:
    """95 % intervals that resample whole case groups: accuracy, recall per class, tumour→"no tumour"."""
    rng = np.random.default_rng(seed)
    ids, inverse = np.unique(groups, return_inverse=True)
    if len(ids) < MIN_INTERVAL_GROUPS:  # resampling 1-4 cases gives an interval of nearly zero width: none at all
        return {"accuracy": None, "called_notumor_rate": None, "called_notumor_unflagged_rate": None, "recall": {},
                "groups": int(len(ids)), "resamples": 0,
                "method": f"no interval: {len(ids)} case group(s), fewer than the {MIN_INTERVAL_GROUPS} it needs"}
    members = [np.flatnonzero(inverse == k) for k in range(len(ids))]
    acc, miss, miss_unflagged, rec = [], [], [], {c: [] for c in CLASS_NAMES}
    for _ in range(n_boot):
        idx = np.concatenate([members[k] for k in rng.integers(0, len(ids), len(ids))])
        yb, pb, cb = y[idx], pred[idx], caught[idx]
        acc.append((yb == pb).mean())
        r = _rates(yb, pb, cb)
        if r["tumour_images"]:
            miss.append(r["called_notumor_rate"])
            miss_unflagged.append(r["called_notumor_unflagged_rate"])
        for i, c in enumerate(CLASS_NAMES):
            if (yb == i).any():
                rec[c].append((pb[yb == i] == i).mean())

    intervals, exact, few = _intervals(acc, miss, miss_unflagged, rec, y, inverse)
    return {**intervals, "groups": int(len(ids)), "resamples": n_boot, "method": _method(exact, few)}


METHOD_MAX = 300  # a card's interval method is at most this long (brainclf.model.card_schema)


def _method(exact: list[str], few: list[str]) -> str:
    """How the intervals were made, in words; the statistics named where they fit, else counted."""
    base = "percentile bootstrap over case groups (near duplicates + file-name series)"
    for named in (True, False):
        method = base
        if exact:
            which = ", ".join(exact) if named else f"{len(exact)} statistics"
            method += f"; exact Clopper-Pearson over case groups where every resample agreed: {which}"
        if few:
            which = ", ".join(few) if named else f"{len(few)} statistics"
            method += f"; no interval where fewer than {MIN_INTERVAL_GROUPS} case groups hold it: {which}"
        if len(method) <= METHOD_MAX:
            return method
    return method


def _intervals(acc, miss, miss_unflagged, rec, y, inverse) -> tuple[dict, list[str], list[str]]:
    """The percentile intervals of the resampled values, the names of those that fell back, and of those held by
    fewer than MIN_INTERVAL_GROUPS case groups (none: as for a whole set of so few, resampling 1-4 cases says
    next to nothing; 3 groups of pituitary slices gave recall [33 %, 100 %] as if it were an estimate).

    A statistic every resample gave the same value (all slices right, or all wrong) has a percentile interval of
    zero width, [100 %, 100 %]: a certainty no finite sample gives. It falls back to the exact Clopper-Pearson
    interval with the case groups as trials (slices of one case are not independent, so the groups that hold the
    statistic's slices are its effective sample size): 14 groups all right give [76.8 %, 100 %]. A value between
    0 and 1 in every resample comes from one case group alone: no interval.
    """
    exact, few = [], []

    def ci(name: str, values: list, relevant: np.ndarray):
        n = len(np.unique(inverse[relevant]))
        if not values:
            return None
        if n < MIN_INTERVAL_GROUPS:
            few.append(f"{name} ({n})")
            return None
        lo, hi = np.percentile(values, [2.5, 97.5]).tolist()
        if hi - lo > 1e-12:
            return [lo, hi]
        if 1e-12 < lo < 1 - 1e-12:  # neither all right nor all wrong: one case group held every slice of it
            return None
        exact.append(name)
        return clopper_pearson(int(round(lo * n)), n)

    tumour = y != NOTUMOR
    out = {"accuracy": ci("accuracy", acc, np.ones(len(y), bool)),
           "called_notumor_rate": ci("tumours called 'no tumour'", miss, tumour),
           "called_notumor_unflagged_rate": ci("those not referred nor flagged", miss_unflagged, tumour),
           "recall": {c: ci(f"recall {c}", v, y == i) for i, (c, v) in enumerate(rec.items()) if v}}
    return out, exact, few


def summarise(rows: list[dict], intervals: bool = True) -> dict:
    """Metrics of external rows: accuracy, recall of the classes present, confusion, coverage of the
    refer rule, tumour→"no tumour" rates (all, and not referred nor OOD-flagged)."""
    if not rows:
        return {"n": 0}
    y = np.array([CLASS_NAMES.index(r["true"]) for r in rows])
    p = np.array([r["probs"] for r in rows], dtype=np.float64)
    pred = p.argmax(1)
    # The card schema defaults both flags to False: an uploaded card's rows may leave them out.
    caught = np.array([bool(r.get("referred") or r.get("ood")) for r in rows], bool)
    m = classification_metrics(y, p)
    present = [c for i, c in enumerate(CLASS_NAMES) if (y == i).any()]
    out = {"n": len(rows), "accuracy": m["accuracy"], "classes_present": present,
           "recall": {c: m["per_class"][c]["recall"] for c in present},
           "confusion_matrix": m["confusion_matrix"], **_rates(y, pred, caught),
           "referred": int(sum(bool(r.get("referred")) for r in rows)),
           "ood_flagged": int(sum(bool(r.get("ood")) for r in rows)),
           "coverage": float(1 - caught.mean()),
           "accepted_accuracy": float((y == pred)[~caught].mean()) if (~caught).any() else None}
    if intervals:
        out["intervals"] = cluster_bootstrap(y, pred, caught, np.array([r["group"] for r in rows]))
    return out


def by_sequence(rows: list[dict]) -> dict:
    seqs = sorted({r["sequence"] for r in rows})
    return {s: summarise([r for r in rows if r["sequence"] == s], intervals=True) for s in seqs}


def evaluate_external(predictor, samples: list[Sample], root: str | Path, membership: str,
                      dataset: str | None = None, predicted: tuple | None = None) -> dict:
    """The external report stored in a card: summary, per-sequence breakdown, membership, per-image rows.

    Args:
        membership: plain words on how these images relate to the model's training (e.g. "held-out case
            groups, not trained on"); printed beside every figure.

    With a manifest.csv, report["manifest"] says what reading it found (Manifest.counts: rows, unmatched,
    conflicting, warnings): figures per sequence mean little if half its rows named no slice.
    """
    manifest = read_manifest(root)
    rows, errors = external_rows(predictor, samples, root, predicted, manifest=manifest)
    if not rows:
        raise DataError(f"None of the {len(samples)} images in {Path(root).name} could be read.")
    report = summarise(rows)
    # The clinical core: contrast-enhanced tumours and every normal slice (what a T1C+ reader sees).
    core = [r for r in rows if r["true"] == "notumor" or (r["true"] != "notumor" and r["sequence"] == "T1C+")]
    if any(r["sequence"] == "T1C+" for r in core):
        report["t1c_tumours_and_normals"] = summarise(core)
    report.update({"dataset": dataset or Path(root).resolve().name, "membership": membership,
                   "by_sequence": by_sequence(rows), "unreadable": len(errors), "tta": predictor.tta,
                   "model": {"name": predictor.card.name, "version": predictor.card.version},
                   "predictions": rows})
    if manifest.rows:
        report["manifest"] = manifest.counts()
    return report


SHORTCUT_STUDY = Path(__file__).resolve().parents[2] / "docs" / "studies" / "shortcut.json"


def load_shortcut_study(path: Path = SHORTCUT_STUDY) -> dict | None:
    """The recorded style-only study (brainclf.evaluation.shortcut; numbers only), or None when absent or unreadable."""
    try:
        study = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    ok = isinstance(study, dict) and all(isinstance(study.get(k, {}), dict) for k in ("cv", "testing", "external"))
    return study if ok else None


REFER_FIGURES = ("referred", "coverage", "accepted_accuracy", "called_notumor_unflagged",
                 "called_notumor_unflagged_rate")  # what an external report's refer rule decides


def with_refer_rule(ext: dict, rows: list[dict], thresholds: dict[str, float]) -> dict:
    """`ext` (an external report) with the figures its refer rule decides, overall and per sequence, re-read from
    its per-image rows with `thresholds` (the rule in force; the rows' own flip-TTA mode is the caller's to match):
    a server's refer target or a refitted rule changes what is answered, not what the model said. The intervals
    are made again too (the unflagged miss rate's moves with the rule, and a card may hold an older method's)."""
    if not rows:
        return ext
    probs = np.array([r["probs"] for r in rows], dtype=np.float64)
    answered = probs.max(1) >= thresholds_per_row(probs, thresholds)
    marked = [{**r, "referred": not bool(a)} for r, a in zip(rows, answered)]

    grouped = all("group" in r for r in rows)  # an upload's rows may leave their case groups out

    def refer_figures(part: list[dict], recorded: dict) -> dict:
        out = {k: v for k, v in summarise(part, intervals=grouped).items() if k in (*REFER_FIGURES, "intervals")}
        if not grouped and recorded.get("intervals"):  # the recorded ones, but the rule's own: none can be made
            out["intervals"] = {**recorded["intervals"], "called_notumor_unflagged_rate": None}
        return out

    sequences = {seq: {**m, **refer_figures([r for r in marked if r.get("sequence") == seq], m)}
                 for seq, m in (ext.get("by_sequence") or {}).items()}
    return {**ext, **refer_figures(marked, ext), "by_sequence": sequences}
