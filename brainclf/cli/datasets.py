"""Commands about a dataset rather than a model's predictions: dedup, shortcut, audit-labels."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .common import CountBar, say
from .prediction import check_output_file

# dHash compares 256 bits; this dataset's near duplicates differ in up to ~12 of them, merely similar slices in 16
# and more (brainclf.data.dedup; its MAX_NEAR_THRESHOLD, not imported here: --help stays quick). Beyond 64 bits
# nearly every pair of slices counts as "near": the report would keep millions of pairs (a 5,700-image folder ran
# out of memory at 256), so that is where the range stops.
MAX_THRESHOLD = 64


def _bounded_int(low: int, high: int | None, what: str):
    """An argparse type: a whole number in low..high (high None: no upper bound), else a usage error saying so."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{what} must be a whole number, got {text[:40]!r}") from None
        if value < low or (high is not None and value > high):
            span = f"between {low} and {high}" if high is not None else f"at least {low}"
            raise argparse.ArgumentTypeError(f"{what} must be {span}, got {value}")
        return value
    return parse


def cmd_dedup(args) -> int:
    from ..data import dedup_report, discover, format_dedup_report, resolve_data_root

    data = resolve_data_root(args.data)
    bar = CountBar("hash")
    report = dedup_report(discover(data), threshold=args.threshold, progress=bar)
    bar.close()
    say(json.dumps(report, indent=1) if args.json else format_dedup_report(report, args.show))
    return 0


def cmd_shortcut(args) -> int:
    from ..data import resolve_data_root
    from ..evaluation import run_study

    if args.out:
        check_output_file(args.out, "--out", overwrite=args.overwrite)  # before the study's work
    study = run_study(resolve_data_root(args.data), args.external or [])
    if args.out:
        Path(args.out).write_text(json.dumps(study, indent=1))
        say(f"wrote {args.out}", file=sys.stderr)
    say(f"style-only baseline ({study['model']}; {study['features']})")
    parts = [("Kaggle Training, grouped 5-fold CV", study.get("cv")), ("Kaggle Testing", study.get("testing")),
             *study["external"].items()]
    for label, r in parts:
        if r:
            say(f"  {label:<36} accuracy {r['accuracy']:.1%}  (majority class {r['majority_baseline']:.1%}, "
                f"n={r['n']})")
    return 0


def cmd_audit_labels(args) -> int:
    from ..data import discover, resolve_data_root
    from ..evaluation import audit_labels

    root = resolve_data_root(args.data)
    ds = discover(root)
    samples = [s for name, ss in ds.splits.items() if name.lower() not in ("training", "train") or args.all
               for s in ss]
    rows = None
    if args.model:
        from ..evaluation import evaluate_samples
        from ..inference import Predictor

        rows = evaluate_samples(Predictor.load(args.model, tta=False), samples, root)["predictions"]
    found = audit_labels(samples, root, rows)
    if args.json:
        say(json.dumps({"n": len(samples), "suspicious": found}, indent=1))
        return 0
    say(f"{len(found)} of {len(samples)} images to review in {root}:")
    for f in found:
        say(f"  {f['path']}  [{f['label']}]  " + "; ".join(f["reasons"]))
    if rows:
        flagged = {f["path"] for f in found}
        kept = [r for r in rows if r["path"] not in flagged]
        acc = lambda rr: sum(r["true"] == r["pred"] for r in rr) / max(len(rr), 1)  # noqa: E731
        say(f"model accuracy: {acc(rows):.2%} on all {len(rows)}; {acc(kept):.2%} on the {len(kept)} not listed")
    return 0


def add_parsers(sub) -> None:
    d = sub.add_parser("dedup", help="report exact and near-duplicate images",
                       description="Exact (same bytes) and near (difference-hash) duplicates within and across "
                       "splits of DATA.")
    d.add_argument("--data", help="dataset root (default: $BRAINCLF_DATA)")
    d.add_argument("--threshold", type=_bounded_int(0, MAX_THRESHOLD, "--threshold"), default=None,
                   help=f"near = at most this Hamming distance between difference hashes, out of 256 bits, 0-"
                   f"{MAX_THRESHOLD} (default 12: re-encoded or shifted copies differ in up to ~12 bits, merely "
                   f"similar slices in 16 or more; above {MAX_THRESHOLD} almost every pair would count as near)")
    d.add_argument("--show", type=_bounded_int(0, None, "--show"), default=10,
                   help="example pairs to list per category (0 or more)")
    d.add_argument("--json", action="store_true")
    d.set_defaults(func=cmd_dedup)

    sc = sub.add_parser("shortcut", help="style-only baseline: how much of the class image style alone predicts",
                        description="Fit a logistic regression on style features (size, colour mode, file size, "
                                    "gray-level histogram) on Kaggle Training; score it in and out of source.")
    sc.add_argument("--data", help="Kaggle root with Training/ and Testing/ (default: $BRAINCLF_DATA)")
    sc.add_argument("--external", action="append", metavar="DIR", help="a labelled folder of another source")
    sc.add_argument("--out", help="also write the results as JSON here, a new file")
    sc.add_argument("--overwrite", action="store_true", help="replace an existing --out file (re-running a study)")
    sc.set_defaults(func=cmd_shortcut)

    al = sub.add_parser("audit-labels", help="list images whose label a person should check",
                        description="CT slices in an MRI dataset (bright skull ring) and, with --model, images "
                                    "the model confidently assigns to another class. Lists; never relabels.")
    al.add_argument("--data", help="folder of class sub-folders or a Training/Testing root")
    al.add_argument("--model", help="a model that did not train on these images (for the disagreement signal)")
    al.add_argument("--all", action="store_true", help="include a Training split too")
    al.add_argument("--json", action="store_true")
    al.set_defaults(func=cmd_audit_labels)
