"""python -m brainclf predict (files, or a folder streamed into a CSV, optionally sharded) and merge-csv."""

from __future__ import annotations

import os
import resource
import sys
from pathlib import Path

from tqdm import tqdm

from ..errors import ConfigError, DataError, ImageError
from ..files import write_csv_atomically
from ..presentation import pct_pair, refer_rule
from .common import add_tta_flag, say


def cmd_predict(args) -> int:
    from ..inference import Predictor
    from ..inference.batch_predict import CSV_FIELDS, answer_row, error_row

    if args.shard is not None and not args.folder:
        raise ConfigError("--shard splits a --folder: give --folder DIR --csv OUT with it.")
    if args.shard is not None:
        from ..data import parse_shard

        args.shard = parse_shard(args.shard)  # checked before the model is loaded
    if args.csv:
        check_output_file(args.csv, "--csv", overwrite=True)  # existing: a --folder CSV resumes; files: below
    if args.csv and not args.folder and Path(args.csv).is_file() and Path(args.csv).stat().st_size:
        raise ConfigError(f"--csv {args.csv} already exists (a --folder CSV resumes, this would replace it): give a "
                          "new file name or remove it first; nothing was predicted or overwritten.")
    if not args.files and not args.folder:  # before the model loads (~5 s)
        raise ConfigError("Give image files, or --folder DIR with --csv OUT.")
    predictor = Predictor.load(args.model, tta=args.tta)
    if args.folder:
        return _predict_folder(predictor, args)
    rows, failures = [], 0
    rule = refer_rule(predictor.refer_thresholds, predictor.card.calibration, tta=predictor.tta)
    for f in args.files:
        try:
            pred = predictor.predict(Path(f), name=str(f))
        except ImageError as e:
            failures += 1
            rows.append(error_row(predictor, str(f), str(e)))  # a row, as predict --folder writes one
            say(f"error: {e}", file=sys.stderr)
            continue
        pred.refer_threshold = rule.threshold(pred.predicted)  # as the Predict page: the fallback for cards without one
        rows.append(answer_row(predictor, pred))
        probs = "  ".join(f"{c} {p:6.1%}" for c, p in pred.probabilities.items())
        say(f"{f}: {pred.predicted} ({pred.confidence:.1%})  [{probs}]  {verdict(pred, rule)}")
    if args.csv:
        try:
            write_csv_atomically(args.csv, CSV_FIELDS, rows)  # predict --folder's columns, whole or not at all
        except OSError as e:  # named as given, not as the hidden temporary file beside it
            raise DataError(f"{args.csv}: cannot write it ({e.strerror or e}); the results are printed above.") \
                from None
        say(f"wrote {len(rows)} rows to {args.csv}", file=sys.stderr)
    say(f"model {predictor.card.label}: {len(rows) - failures} predicted, {failures} failed", file=sys.stderr)
    return 0 if not failures else 1


def check_output_file(path: str, flag: str, overwrite: bool = False, folder_made: bool = False) -> Path:
    """The check, before any work, of a file a command writes (predict --csv, merge-csv OUT, shortcut --out, site
    report --pdf, bench --json-out): a file name (not a folder) in an existing folder this process can write (or,
    `folder_made`, one the command makes), and unless `overwrite` no file yet: a finished result is not replaced
    without asking. ConfigError saying what is wrong and what to do."""
    p = Path(path)
    if p.is_dir():
        raise ConfigError(f"{flag} {path} is a folder: give a file name (nothing was done yet).")
    folder = p.parent
    if folder.is_dir() and not os.access(folder, os.W_OK | os.X_OK):
        raise ConfigError(f"{flag} {path}: the folder {folder} is not writable: choose another (nothing was done yet).")
    if not folder.is_dir() and not folder_made:
        raise ConfigError(f"{flag} {path}: the folder {folder} does not exist: create it or choose another (nothing "
                          "was done yet).")
    if not overwrite and p.exists():
        raise ConfigError(f"{flag} {path} already exists: remove it or choose another name, or pass --overwrite to "
                          "replace it (nothing was done yet).")
    return p


def verdict(pred, rule) -> str:
    """What the Predict page heads a result with, in one line: the out-of-distribution flag (first, as the page
    puts it) and the refer verdict, each with its reason."""
    words = []
    if pred.out_of_distribution:
        words.append(f"OUT OF DISTRIBUTION: not like a brain MRI slice ({pred.ood_reason or 'flagged by the OOD guard'}"
                     "); the class probabilities are not meaningful.")
    confidence, threshold = pct_pair(pred.confidence, rule.threshold(pred.predicted))
    default = "" if rule.fitted else ", a fixed default not validated for this model"
    if pred.out_of_distribution:  # a flagged slice is no answer whatever its confidence (its CSV row: refer)
        words.append("REFER to a radiologist: a flagged slice is not answered.")
    elif rule.referred(pred.probabilities):
        words.append(f"REFER to a radiologist: confidence {confidence} is below {threshold}{default}.")
    else:
        words.append(f"not referred: confidence {confidence} is at or above {threshold}{default}.")
    return " ".join(words)


def _predict_folder(predictor, args) -> int:
    from ..data import iter_shard_files
    from ..inference import predict_folder

    if not args.csv:
        raise ConfigError("--folder needs --csv OUT (results stream into it; re-running resumes).")
    if not Path(args.folder).is_dir():
        raise ConfigError(f"{args.folder} is not a folder.")
    total = sum(1 for _ in iter_shard_files(args.folder, args.shard, quiet=True))  # the run names what it skips
    bar = tqdm(total=total, desc="predict", unit="img", file=sys.stderr, dynamic_ncols=True)

    def progress(c):
        bar.n = c["predicted"] + c["failed"] + c["skipped"]
        bar.refresh()

    counts = predict_folder(predictor, args.folder, args.csv, progress=progress, shard=args.shard)
    bar.close()
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    shard = f" (shard {args.shard[0]}/{args.shard[1]})" if args.shard else ""
    before = f" ({counts['failed_before']} of them failed then)" if counts["failed_before"] else ""
    say(f"model {predictor.card.label}{shard}: {counts['predicted']} predicted, {counts['failed']} failed, "
        f"{counts['skipped']} already in {args.csv}{before}; peak memory {peak_mb:.0f} MB", file=sys.stderr)
    # Earlier failures are said, not re-signalled: a job array's retry of a shard with an unreadable file must be
    # able to succeed (docs/scale.md), and merge-csv counts them again.
    return 0 if not counts["failed"] else 1


def cmd_merge_csv(args) -> int:
    from ..data import merge_csvs

    check_output_file(args.out, "merge-csv OUT", overwrite=args.overwrite, folder_made=True)
    report = merge_csvs(args.out, args.inputs, folder=args.folder)
    shown = 20
    for name, where in list(report.duplicates.items())[:shown]:
        say(f"duplicate: {name} in {', '.join(where)}", file=sys.stderr)
    if len(report.duplicates) > shown:
        say(f"duplicate: ... and {len(report.duplicates) - shown} more", file=sys.stderr)
    for name in (report.missing or [])[:shown]:
        say(f"missing: {name}", file=sys.stderr)
    if report.missing and len(report.missing) > shown:
        say(f"missing: ... and {len(report.missing) - shown} more", file=sys.stderr)
    for where in report.cut[:shown]:
        say(f"cut short, left out: {where}", file=sys.stderr)
    say(report.summary(), file=sys.stderr)
    return 0 if report.ok else 1


def add_parsers(sub) -> None:
    pr = sub.add_parser("predict", help="class probabilities for image files",
                        description="Print each file's class probabilities; bad files are reported and skipped.")
    pr.add_argument("--model", required=True)
    pr.add_argument("files", nargs="*", metavar="FILE")
    pr.add_argument("--folder", help="predict every image under this folder, streaming into --csv (resumable)")
    pr.add_argument("--csv", help="also write the results to this CSV file")
    pr.add_argument("--shard", metavar="I/N", help="with --folder: only the files whose path hash falls in shard I "
                    "(0-based) of N, for N machines covering one folder (merge their CSVs with merge-csv)")
    add_tta_flag(pr)
    pr.set_defaults(func=cmd_predict)

    m = sub.add_parser("merge-csv", help="join the CSVs of sharded predict --folder runs",
                       description="Write the rows of the shard CSVs into OUT (header once, sorted by file) and "
                       "report files found in more than one shard and, with --folder, files found in none. "
                       "Exit code 1 when there are any.")
    m.add_argument("out", metavar="OUT", help="merged CSV to write")
    m.add_argument("inputs", nargs="+", metavar="SHARD_CSV", help="CSVs written by predict --folder --shard")
    m.add_argument("--folder", help="the predicted folder: also report its image files that no CSV covers")
    m.add_argument("--overwrite", action="store_true", help="replace OUT if it exists (e.g. merging again after a "
                   "shard was re-run); without it an existing OUT is refused")
    m.set_defaults(func=cmd_merge_csv)
