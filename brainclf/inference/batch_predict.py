"""Predicting many images with one loaded brainclf.inference.predict.Predictor: lists of samples (evaluation, external
validation, calibration) and whole folders streamed into a CSV (`predict --folder`).

Files are decoded in parallel by brainclf.data.pool and predicted in chunks, so memory stays bounded whatever the
number of files. (Takes the Predictor as an argument: brainclf.inference.predict is imported for its type only,
and never imports this module, so the two do not import each other.)
"""

from __future__ import annotations

import csv
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from filelock import FileLock, Timeout

from .. import CLASS_NAMES
from ..data.datasets import Sample, decode_sample
from ..data.pool import chunks, decode_many
from ..data.shard import csv_rows, flagged_but_answered, in_shard, iter_shard_files
from ..errors import BrainclfError, ConfigError
from ..escaping import CSV_QUOTING, CSV_TEXT, csv_row, csv_value
from ..input.preprocess import decode_image
from ..model.card import short_hash
from ..scoring.trust import apply_temperature
from .ood import check, image_problem

if TYPE_CHECKING:
    from .predict import Predictor

CSV_FIELDS = ["file", "prediction", "confidence", *(f"p_{c}" for c in CLASS_NAMES), "refer",
              "out_of_distribution", "model", "model_version", "model_sha256", "tta", "error"]


def predict_samples(predictor: Predictor, samples: list[Sample], progress: Callable[[int, int], None] | None = None,
                    chunk: int = 128) -> tuple[np.ndarray, list[Sample], list[str]]:
    """Uncalibrated probabilities for every readable sample (parallel decoding, batched inference)."""
    probs, _, kept, errors = predict_samples_and_features(predictor, samples, progress, chunk)
    return probs, kept, errors


def predict_samples_and_features(predictor: Predictor, samples: list[Sample],
                                 progress: Callable[[int, int], None] | None = None,
                                 chunk: int = 128) -> tuple[np.ndarray, np.ndarray, list[Sample], list[str]]:
    """(uncalibrated probabilities, OOD descriptors, readable samples, errors): one pass gives both, decoded
    in parallel and predicted in chunks so memory stays bounded whatever the folder's size."""
    contract = predictor.contract
    probs, feats, kept, errors = [], [], [], []
    decoded = decode_many(samples, lambda s: decode_sample(s, contract), window=chunk)
    done = 0
    for part in chunks(zip(samples, decoded), chunk):
        xs = []
        for s, (x, err) in part:
            if err:
                errors.append(err)
            else:
                xs.append(x)
                kept.append(s)
        if xs:
            p, f = predictor.raw_probs_and_features(np.stack(xs))
            probs.append(p)
            feats.append(f)
        done += len(part)
        if progress:
            progress(done, len(samples))
    p = np.concatenate(probs) if probs else np.zeros((0, len(CLASS_NAMES)), np.float32)
    f = np.concatenate(feats) if feats else np.zeros((0, 0), np.float32)
    return p, f, kept, errors


def predict_folder(predictor: Predictor, folder: str | Path, csv_path: str | Path, chunk: int = 256,
                   progress=None, shard: tuple[int, int] | None = None) -> dict:
    """Stream predictions for every image under `folder` into `csv_path`.

    Memory stays bounded (one chunk of images at a time); rows are flushed per chunk, and re-running the
    same command resumes: files already in the CSV are skipped. Bad files get a row with the error.
    `shard` = (index, count) predicts only the files of that shard (brainclf.data.shard); a CSV holding rows of
    another shard is refused rather than extended. One run at a time writes a CSV: a second one (the same shard
    started twice) is refused at once, before anything is read (an OS file lock beside it, `.NAME.lock`).
    """
    csv_path = Path(csv_path)
    lock = FileLock(csv_path.with_name(f".{csv_path.name}.lock"))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        raise ConfigError(f"{csv_path} is being written by another predict run (the same shard started twice?): "
                          "wait for it to end, or give this one another CSV.") from None
    except OSError as e:
        raise ConfigError(f"{csv_path}: cannot write beside it ({e.strerror or e}).") from None
    try:
        return _predict_into(predictor, Path(folder), csv_path, chunk, progress, shard)
    finally:
        lock.release()


def _predict_into(predictor: Predictor, folder: Path, csv_path: Path, chunk: int, progress,
                  shard: tuple[int, int] | None) -> dict:
    """predict_folder's work, its CSV's lock held."""
    done, failed_before = _rows_already_written(csv_path, shard, predictor)
    new_file = not csv_path.exists() or csv_path.stat().st_size == 0
    # Rows of files that failed in an earlier run stay failed (not retried: a resume appends, never rewrites).
    counts = {"predicted": 0, "failed": 0, "skipped": len(done), "failed_before": failed_before}
    todo = (rel for rel in _relative_files(folder, shard) if rel not in done)

    def decode(rel: str) -> tuple[str, tuple[np.ndarray, str] | None, str]:
        """(rel, (model input, why its colour flags it or ''), '') or (rel, None, error)."""
        try:
            img = decode_image(folder / rel, name=rel)
            return rel, (predictor.preprocess(img), image_problem(img, predictor.card.ood)), ""
        except BrainclfError as e:
            return rel, None, str(e)

    with open(csv_path, "a", newline="", **CSV_TEXT) as fh:
        writer = csv.DictWriter(fh, fieldnames=CSV_FIELDS, quoting=CSV_QUOTING)
        if new_file:
            writer.writeheader()
        for part in chunks(decode_many(todo, decode, window=chunk), chunk):
            batch = []
            for rel, x, err in part:
                if err:
                    writer.writerow(csv_row(error_row(predictor, rel, err)))
                    counts["failed"] += 1
                else:
                    batch.append((rel, x))
            _write_predictions(predictor, batch, writer)
            counts["predicted"] += len(batch)
            fh.flush()
            if progress:
                progress(counts)
        if progress and not counts["predicted"] + counts["failed"]:
            progress(counts)
    return counts


def _relative_files(folder: Path, shard: tuple[int, int] | None) -> Iterator[str]:
    for path in iter_shard_files(folder, shard):
        yield path.relative_to(folder).as_posix()


def answer_row(predictor: Predictor, pred) -> dict:
    """A CSV_FIELDS row of one predicted file (its Prediction)."""
    return {**pred.as_row(), "tta": predictor.tta, "error": ""}


def error_row(predictor: Predictor, file: str, error: str) -> dict:
    """A CSV_FIELDS row of a file that could not be read: the error, and which model tried."""
    return {"file": file, "error": error, **row_identity(predictor)}


def row_identity(predictor: Predictor) -> dict:
    """Which model wrote a row, and whether with flip TTA: a resumed CSV must not mix two of them."""
    card = predictor.card
    return {"model": card.name, "model_version": card.version, "model_sha256": short_hash(card.file_sha256),
            "tta": predictor.tta}


def _rows_already_written(csv_path: Path, shard: tuple[int, int] | None,
                          predictor: Predictor) -> tuple[set[str], int]:
    """(the files a previous run of predict_folder wrote rows for, how many of those rows are errors), after
    cutting a half-written last row of a file that is one of its CSVs; ConfigError when the file is not such a CSV
    (checked before anything is cut), a row is cut short inside, or a row belongs to another shard, model or TTA."""
    done: set[str] = set()
    failed = 0
    if not (csv_path.exists() and csv_path.stat().st_size):
        return done, failed
    _check_header(csv_path)  # another file given by mistake is refused before a byte of it changes
    _drop_partial_last_line(csv_path)
    with open(csv_path, newline="", **CSV_TEXT) as f:
        reader = csv.DictReader(f)
        ours = row_identity(predictor)
        for row in csv_rows(reader, csv_path):  # the hash names the model (a card's name and version are its own say)
            if None in row.values() or None in row:
                raise ConfigError(f"{csv_path}: row {reader.line_num} does not have this version's {len(CSV_FIELDS)} "
                                  "columns (edited by hand?): give a new CSV file.")
            # The version too: a site profile keeps its starting model's file (and hash) with another rule.
            if any(csv_value(row[k]) != str(ours[k]) for k in ("model_sha256", "model_version", "tta")):
                raise ConfigError(f"{csv_path} holds rows by model {csv_value(row['model'])} "
                                  f"({csv_value(row['model_sha256'])}, TTA {csv_value(row['tta'])}); this run "
                                  f"uses {ours['model']} ({ours['model_sha256']}, TTA {ours['tta']}): give a "
                                  "new CSV file, so no file mixes two models' answers.")
            if flagged_but_answered(row):
                raise ConfigError(f"{csv_path} was written before a flagged slice's row said refer (row "
                                  f"{reader.line_num}): give a new CSV file, so no file mixes the two meanings.")
            done.add(csv_value(row["file"]))
            failed += bool(csv_value(row["error"]))
    if shard is not None:
        stray = next((rel for rel in done if not in_shard(rel, shard)), None)
        if stray is not None:
            raise ConfigError(f"{csv_path} already holds {stray}, which is not in shard {shard[0]}/{shard[1]}: "
                              "give each shard its own CSV.")
    return done, failed


def _check_header(csv_path: Path) -> None:
    """Refuse (ConfigError) a file whose first line is not this version's header ending in a newline: an older
    CSV (its rows would not line up) or another file named by mistake; read-only."""
    with open(csv_path, "rb") as f:
        head = f.read(64 * 1024)
    # The header must end in '\n' (a file with CR-only line ends would be cut to nothing by the half-row trim).
    line = head[:head.index(b"\n")] if b"\n" in head else b""
    first = next(csv.reader([line.rstrip(b"\r").decode(**CSV_TEXT)]), [])
    if first != CSV_FIELDS:
        raise ConfigError(f"{csv_path} is not a CSV with the columns this version writes ({', '.join(CSV_FIELDS)}); "
                          "nothing in it was changed: give a new CSV file.")


def _write_predictions(predictor: Predictor, batch: list[tuple[str, tuple[np.ndarray, str]]],
                       writer: csv.DictWriter) -> None:
    """One CSV row per (relative path, (model input, colour flag)): calibrated probabilities, the refer rule and
    the OOD guard as the Predict page applies them (its colour check, the fallback bar of a card without one)."""
    if not batch:
        return
    raw, feats = predictor.raw_probs_and_features(np.stack([x for _, (x, _) in batch]))
    probs = apply_temperature(raw, predictor.temperature)
    for (rel, (_, colour)), p, f in zip(batch, probs, feats):
        pred = predictor.prediction_from_probs(rel, p)  # a not-a-number output is flagged already
        pred.out_of_distribution = pred.out_of_distribution or bool(colour) or \
            check(None, f, predictor.card.ood or None)[0]
        writer.writerow(csv_row(answer_row(predictor, pred)))


def _drop_partial_last_line(csv_path: Path) -> None:
    """A run killed mid-write can leave half a row; cut it so the resumed run appends cleanly."""
    if not csv_path.exists() or csv_path.stat().st_size == 0:
        return
    with open(csv_path, "rb+") as f:
        f.seek(-1, os.SEEK_END)
        if f.read(1) == b"\n":
            return
        data = f.seek(0) or f.read()
        f.truncate(data.rfind(b"\n") + 1)
