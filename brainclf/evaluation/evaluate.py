"""Evaluate a model on a list of samples or a folder of class sub-folders."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from .. import CLASS_NAMES
from ..data.datasets import Sample, discover, relative_path
from ..data.dedup import NEAR_DUP_THRESHOLD, clean_mask
from ..data.sources import split_key
from ..errors import ConfigError, DataError
from ..inference.batch_predict import predict_samples, predict_samples_and_features
from ..model.card import card_path, check_card_rows, read_card
from ..scoring.metrics import classification_metrics, expected_calibration_error
from ..scoring.trust import apply_temperature, bootstrap_ci, coverage_accuracy
from .external import MANIFEST, evaluate_external


def prediction_rows(samples: list[Sample], probs: np.ndarray, root: Path) -> list[dict]:
    return [{"path": relative_path(s.path, root), "true": CLASS_NAMES[s.label],
             "pred": CLASS_NAMES[int(p.argmax())], "probs": [round(float(v), 6) for v in p]}
            for s, p in zip(samples, probs)]


def subset_summary(y: np.ndarray, probs: np.ndarray) -> dict:
    m = classification_metrics(y, probs)
    return {"n": m["n"], "accuracy": m.get("accuracy"), "macro_auc": m.get("macro_auc"),
            "recall": {c: v["recall"] if v["support"] else None for c, v in m.get("per_class", {}).items()},
            "confusion_matrix": m.get("confusion_matrix"), "bootstrap": bootstrap_ci(y, probs) if m["n"] else None}


def evaluate_samples(predictor, samples: list[Sample], root: Path,
                     progress: Callable[[int, int], None] | None = None,
                     training_paths: list[Path] | None = None,
                     predicted: tuple[np.ndarray, list[Sample], list[str]] | None = None,
                     training_scope: str = "of its primary source") -> dict:
    """Metrics plus per-image predictions and the misclassified files.

    With `training_paths`, also the same metrics on the clean subset: the images with no exact or near
    duplicate (dedup.py's hash and threshold) among the training images.
    """
    # `predicted`: (raw probabilities, kept samples, errors) already computed for these samples.
    raw, kept, errors = predicted if predicted is not None else predict_samples(predictor, samples, progress)
    probs = apply_temperature(raw, predictor.temperature)
    y = np.array([s.label for s in kept], dtype=int)
    report = classification_metrics(y, probs)
    if report["n"]:
        report["ece_uncalibrated"] = expected_calibration_error(y, raw)
        report["temperature"] = predictor.temperature
        report["bootstrap"] = bootstrap_ci(y, probs)
        report["refer"] = coverage_accuracy(y, probs, predictor.applied_refer_thresholds)
    report["tta"] = predictor.tta
    if training_paths and report["n"]:
        clean = clean_mask([s.path for s in kept], training_paths)
        report["clean"] = subset_summary(y[clean], probs[clean])
        report["clean"]["definition"] = (f"no exact or near duplicate (dHash Hamming <= {NEAR_DUP_THRESHOLD}/256) "
                                         f"among {len(training_paths)} training images {training_scope}")
    rows = prediction_rows(kept, probs, root)
    if training_paths and report["n"]:
        for r, c in zip(rows, clean):
            r["clean"] = bool(c)
    report["misclassified"] = [r for r in rows if r["true"] != r["pred"]]
    report["unreadable"] = errors
    report["model"] = {"name": predictor.card.name, "version": predictor.card.version}
    report["predictions"] = rows
    return report


def training_paths_for(card, data: Path, training_root: str | Path | None = None) -> list[Path] | None:
    """The model's primary-source training and validation images (from its card), looked up under
    `training_root`, then in or beside the evaluated folder `data` where it is named like the model's training
    folder, then (only without a `training_root`: a folder given by name that lacks them is not silently
    replaced) under $BRAINCLF_DATA; None when they cannot be found, and for an upload: its card's file list is its
    uploader's say, which must not pick the server's images to leave out of a verified figure."""
    rel = [] if card.provenance else primary_files(card)
    # Beside the evaluated folder only when it is the training folder by name: another hospital's folder laid out
    # the same way holds files of the same names that the model never saw.
    named = (card.training.get("fingerprint") or {}).get("root_name")
    root = root_holding(rel, [training_root, *(c for c in (data.parent, data)
                                               if not named or Path(c).resolve().name == named),
                              None if training_root else os.environ.get("BRAINCLF_DATA")])
    return [root / r for r in rel] if root else None


def primary_files(card, parts: tuple[str, ...] = ("train", "val")) -> list[str]:
    """The card's files of `parts` from its primary source, relative to that source's folder: an extra source's
    (`name::path`) live in their own folder."""
    files = card.training.get("files") or {}
    return [str(k) for part in parts for k in files.get(part, []) if not split_key(str(k))[0]]


def root_holding(rel: list[str], candidates) -> Path | None:
    """The first candidate folder (None entries skipped) that holds `rel`'s first file; None when none does."""
    return next((Path(c) for c in candidates if c and rel and (Path(c) / rel[0]).is_file()), None)


def learnt_mask(card, samples: list[Sample], folder: Path, training: list[Path] | None) -> np.ndarray:
    """True for each sample that is one of the files the model trained or validated on: by the card's keys of its
    extra sources (in any folder), of its primary source where `folder` is named like that source's folder, and of
    the site a site model was calibrated or adapted on (its adaptation part) in the site's folder; and by path
    (`training`, from training_paths_for) wherever the primary source's images were found. Copies under other
    names are not caught here (brainclf.data.dedup.clean_mask does). An upload's card lists files as its uploader
    says: they are not left out (a made-up list would take the model's errors out of its verified figures)."""
    folder = Path(folder)
    name, primary = folder.resolve().name, (card.training.get("fingerprint") or {}).get("root_name")
    files = {} if card.provenance else card.training.get("files") or {}
    keys = [split_key(str(k)) for part in ("train", "val") for k in files.get(part, [])]
    # An extra source's files are matched by name in any folder: a copy of its folder under another name (a renamed
    # download of external-radiopaedia) must not score as another source; its names (hashes, case ids) are its own.
    seen = {rel for source, rel in keys if source or name == primary}
    site = card.measured_site
    if name == (site.get("fingerprint") or {}).get("root_name"):  # a site model's own site folder
        seen |= set(site.get("used") or [])
    own = {p.resolve() for p in training or []}
    # A linked file's key was its target's absolute path in cards written before 2026-12-07 (relative_path).
    return np.array([relative_path(s.path, folder) in seen or s.path.resolve() in own
                     or (s.path.is_symlink() and s.path.resolve().as_posix() in seen) for s in samples], bool)


def evaluate_folder(predictor, data: str | Path, progress: Callable[[int, int], None] | None = None,
                    training_root: str | Path | None = None, external: bool | None = None,
                    require_external: bool = False) -> dict:
    """Evaluate on every image under a folder of class sub-folders (or a Training/Testing root: all splits
    that are not Training), with the clean-subset metrics when the training images can be found.

    Any subset of the classes may be present. Images of this folder that the model trained or validated on
    (an extra source named like the folder in its card, or the primary source's own files) are left out and
    counted. `external` (default:
    when the folder has a manifest.csv, lacks a class or is one of the model's extra sources) adds the
    external-validation block (brainclf.evaluation.external): per-sequence breakdown, tumour→"no tumour" rates and
    intervals over case groups. `require_external` (evaluate --record): ConfigError, before any image is predicted,
    when the block would be left out.
    """
    data = Path(data)
    ds = discover(data)
    if ds.pooled:
        samples = ds.splits[""]
    else:
        samples = [s for name, ss in ds.splits.items() if name.lower() not in ("training", "train") for s in ss]
        if not samples:
            raise DataError(f"{data} has only a Training split; point --data at a test folder.")
    dataset = data.resolve().name
    training = training_paths_for(predictor.card, data, training_root)
    learnt = learnt_mask(predictor.card, samples, data, training)
    samples, excluded = [s for s, m in zip(samples, learnt) if not m], [s for s, m in zip(samples, learnt) if m]
    if not samples:
        raise DataError(f"The model trained or validated on every image of {dataset}: nothing left to evaluate.")
    sources = {s.get("name") for s in predictor.card.training.get("sources", []) if not s.get("primary")}
    external = _external_block(external, require_external, data, samples, dataset in sources)
    # One pass over the images serves both reports (the external block also needs the OOD descriptors).
    raw, feats, kept, errors = predict_samples_and_features(predictor, samples, progress)
    if not kept:
        raise DataError(f"None of the {len(samples)} images of {dataset} could be read (e.g. {errors[0]}): "
                        "nothing to evaluate.")
    report = evaluate_samples(predictor, samples, data, training_paths=training, predicted=(raw, kept, errors))
    upload = bool(predictor.card.provenance)  # its card's file lists are its uploader's say: not used
    if training is None:
        report["clean"] = None
        report["clean_note"] = _no_clean_subset_note(upload, training_root)
    report.update(data=str(data), excluded_trained_on=len(excluded))
    if external:
        primary = primary_source_part(predictor.card, data)
        membership = _membership(len(samples), dataset, len(excluded), upload, dataset in sources, primary)
        report["external"] = evaluate_external(predictor, samples, data, membership, dataset,
                                               predicted=(raw, feats, kept, errors))
        report["external"]["own_source"] = primary
    return report


def _external_block(asked: bool | None, required: bool, data: Path, samples: list[Sample], a_source: bool) -> bool:
    """Whether a folder gets the external block: as `asked`, else when it has a manifest.csv, lacks a class or is one
    of the model's extra training sources; ConfigError when `required` (evaluate --record) and it would not."""
    if asked is None:
        asked = (data / MANIFEST).is_file() or len({s.label for s in samples}) < len(CLASS_NAMES) or a_source
    if required and not asked:
        raise ConfigError("--record stores external validation; this folder holds all four classes and no manifest.csv "
                          "and is not one of the model's extra sources: pass --external (nothing was evaluated).")
    return asked


def _no_clean_subset_note(upload: bool, training_root: str | Path | None) -> str:
    """Why a report has no clean subset, in its words."""
    if upload:
        return "an uploaded model's training images are not known here: no clean subset"
    if training_root:
        return (f"the model's training images were not found in {training_root}: pass --train-data with the dataset "
                "root they were trained from to get the clean-subset metrics")
    return "training images not found: pass --train-data DATA_ROOT to get the clean-subset metrics"


SPLIT_NAMES = ("training", "train", "testing", "test", "validation", "val")


def primary_source_part(card, data: Path) -> str | None:
    """The model's primary source's folder name when `data` is that folder or a split of it (Kaggle `Testing`):
    figures there are in-distribution, whatever the flag asked for; else None."""
    named = (card.training.get("fingerprint") or {}).get("root_name")
    data = Path(data).resolve()
    split = data.parent.name == named and data.name.lower() in SPLIT_NAMES  # another folder kept inside is not
    return named if named and not card.provenance and (data.name == named or split) else None


def _membership(n: int, dataset: str, excluded: int, upload: bool, a_source: bool, primary: str | None) -> str:
    """How an evaluated folder's images relate to the model's training, in the words printed beside its figures."""
    if upload:
        return f"all {n} images of {dataset}: an uploaded model, whose training images are not known here"
    if primary:
        return (f"{n} images of {dataset}, part of the model's own training source {primary}: in-distribution, "
                "not another source")
    if excluded or a_source:
        return (f"{n} images of {dataset} the model did not train or validate on ({excluded} named as its training "
                "or validation files were left out)")
    return f"all {n} images of {dataset}, which is not among the model's training sources"


def record_external(model_path: str | Path, report: dict) -> Path:
    """Store an evaluation's external block in the model's card (metrics.external[dataset] and the
    per-image rows), so the app shows it without re-running the model. Returns the card's path."""
    ext = dict(report["external"])
    if ext.get("own_source"):
        raise DataError(f"{ext['dataset']} is part of the model's own training source {ext['own_source']}: its figures "
                        "are in-distribution, so they are not recorded as external validation.")
    ext.pop("own_source", None)
    card = read_card(model_path)
    if ext["model"] != {"name": card.name, "version": card.version}:
        raise DataError("This evaluation was made with another model version than the card's.")
    check_card_rows({"This evaluation": ext["predictions"]})
    card.external_predictions[ext["dataset"]] = ext.pop("predictions")
    card.metrics.setdefault("external", {})[ext["dataset"]] = ext
    path = card_path(model_path)
    card.save(path)
    return path
