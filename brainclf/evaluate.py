"""Evaluate a model on a list of samples or a folder of class sub-folders."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from . import CLASS_NAMES
from .data import Sample, discover, relative_path
from .errors import DataError, ImageError
from .metrics import classification_metrics
from .preprocess import load_model_input


def predict_samples(predictor, samples: list[Sample], progress: Callable[[int, int], None] | None = None,
                    chunk: int = 128) -> tuple[np.ndarray, list[Sample], list[str]]:
    """Probabilities for every readable sample (decoding in parallel, inference in batches)."""
    contract = predictor.contract

    def one(s: Sample):
        try:
            return load_model_input(s.path, contract), None
        except ImageError as e:
            return None, str(e)

    probs, kept, errors = [], [], []
    done = 0
    with ThreadPoolExecutor(max_workers=4) as pool:
        for start in range(0, len(samples), chunk):
            part = samples[start:start + chunk]
            xs = []
            for s, (x, err) in zip(part, pool.map(one, part)):
                if err:
                    errors.append(err)
                else:
                    xs.append(x)
                    kept.append(s)
            if xs:
                probs.append(predictor.predict_arrays(np.stack(xs)))
            done += len(part)
            if progress:
                progress(done, len(samples))
    p = np.concatenate(probs) if probs else np.zeros((0, len(CLASS_NAMES)), np.float32)
    return p, kept, errors


def prediction_rows(samples: list[Sample], probs: np.ndarray, root: Path) -> list[dict]:
    return [{"path": relative_path(s.path, root), "true": CLASS_NAMES[s.label],
             "pred": CLASS_NAMES[int(p.argmax())], "probs": [round(float(v), 6) for v in p]}
            for s, p in zip(samples, probs)]


def evaluate_samples(predictor, samples: list[Sample], root: Path,
                     progress: Callable[[int, int], None] | None = None) -> dict:
    """Metrics plus per-image predictions and the misclassified files."""
    probs, kept, errors = predict_samples(predictor, samples, progress)
    y = np.array([s.label for s in kept], dtype=int)
    report = classification_metrics(y, probs)
    rows = prediction_rows(kept, probs, root)
    report["misclassified"] = [r for r in rows if r["true"] != r["pred"]]
    report["unreadable"] = errors
    report["model"] = {"name": predictor.card.name, "version": predictor.card.version}
    report["predictions"] = rows
    return report


def evaluate_folder(predictor, data: str | Path, progress: Callable[[int, int], None] | None = None) -> dict:
    """Evaluate on every image under a folder of class sub-folders (or a Training/Testing root: all splits
    that are not Training)."""
    ds = discover(data)
    if ds.pooled:
        samples = ds.splits[""]
    else:
        samples = [s for name, ss in ds.splits.items() if name.lower() not in ("training", "train") for s in ss]
        if not samples:
            raise DataError(f"{data} has only a Training split; point --data at a test folder.")
    report = evaluate_samples(predictor, samples, Path(data), progress)
    report["data"] = str(data)
    return report
