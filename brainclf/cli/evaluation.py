"""python -m brainclf evaluate, and the text report it prints; python -m brainclf verify (an upload's figures
re-measured here)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .. import CLASS_NAMES
from ..errors import ConfigError, DataError
from ..escaping import json_default
from ..presentation.scope import group_interval
from .common import CountBar, add_tta_flag, pct, say


def cmd_evaluate(args) -> int:
    from ..data import resolve_data_root
    from ..evaluation import evaluate_folder, record_external
    from ..evaluation.evaluate import primary_source_part
    from ..inference import Predictor

    if args.train_data and not Path(args.train_data).is_dir():  # was ignored: "pass --train-data" in the report
        raise DataError(f"--train-data {args.train_data} is not a folder: give the dataset root the model was trained "
                        "from (nothing was evaluated).")
    predictor = Predictor.load(args.model, tta=args.tta)
    data = resolve_data_root(args.data)
    if args.record and args.external is False:
        raise ConfigError("--record stores external validation: drop --no-external (nothing was evaluated).")
    if args.record and (own := primary_source_part(predictor.card, data)):  # said before the work, not after
        raise ConfigError(f"--record: {data.name} is part of the model's own training source {own}; its figures are "
                          "in-distribution and are not recorded as external validation (nothing was evaluated).")
    bar = CountBar("evaluate")
    report = evaluate_folder(predictor, data, bar, training_root=args.train_data, external=args.external,
                             require_external=args.record)  # --record without the block: refused before the work
    bar.close()
    for err in report["unreadable"]:
        say(f"skipped: {err}", file=sys.stderr)
    if args.record:
        say(f"recorded in {record_external(args.model, report)}", file=sys.stderr)
    if args.json:
        out = {k: v for k, v in report.items() if k != "predictions" or args.with_predictions}
        if "external" in out and not args.with_predictions:
            out["external"] = {k: v for k, v in out["external"].items() if k != "predictions"}
        say(json.dumps(out, default=json_default))
        return 0
    say(format_report(report))
    return 0


def cmd_verify(args) -> int:
    from ..data import resolve_data_root
    from ..evaluation import verify_uploaded_model

    bar = CountBar("verify")
    card = verify_uploaded_model(args.model, resolve_data_root(args.data), bar)
    bar.close()
    test, on = card.metrics["test"], card.provenance["verified_on"]
    claimed = card.provenance.get("claimed_test_accuracy")
    say(f"{card.name}: test accuracy re-measured on {on['n']} images of {on['root_name']}: "
        f"{pct(test['accuracy'])} (the uploader claimed {pct(claimed)}); recorded in its card")
    return 0


def format_report(report: dict) -> str:
    lines = [f"model {report['model']['name']} {report['model']['version']} on {report.get('data', '')}",
             f"n={report['n']}  accuracy={report['accuracy']:.4f}  loss={report['loss']:.4f}  "
             f"macro AUC={report['macro_auc'] if report['macro_auc'] is None else round(report['macro_auc'], 4)}  "
             f"ECE={report['ece']:.4f}" + (" (flip TTA on)" if report.get("tta") else ""), "",
             f"{'class':<12}{'precision':>10}{'recall':>10}{'f1':>10}{'support':>9}"]
    for c, m in report["per_class"].items():
        lines.append(f"{c:<12}{m['precision']:>10.4f}{m['recall']:>10.4f}{m['f1']:>10.4f}{m['support']:>9}")
    lines += ["", "confusion matrix (rows true, columns predicted):",
              " " * 12 + "".join(f"{c[:10]:>11}" for c in CLASS_NAMES)]
    for c, row in zip(CLASS_NAMES, report["confusion_matrix"]):
        lines.append(f"{c:<12}" + "".join(f"{v:>11}" for v in row))
    if report.get("bootstrap"):
        lo, hi = report["bootstrap"]["accuracy"]
        lines.insert(2, f"accuracy 95% interval [{lo:.4f}, {hi:.4f}] (bootstrap; exact where every resample agrees)")
    if report.get("refer"):
        r = report["refer"]
        acc = "n/a" if r["accepted_accuracy"] is None else f"{r['accepted_accuracy']:.4f}"
        lines.insert(3, f"refer rule (confidence < {format_thresholds(r['threshold'])}): coverage "
                        f"{r['coverage']:.1%}, accepted accuracy {acc}, referred {r['referred']}")
    clean = report.get("clean")
    if clean and not clean["n"]:
        lines.insert(4, "clean subset: n=0 (every image has an exact or near duplicate among the training images)")
    elif clean:
        lo, hi = clean["bootstrap"]["accuracy"] if clean.get("bootstrap") else (float("nan"),) * 2
        lines.insert(4, f"clean subset (no near-duplicate in training): n={clean['n']}  "
                        f"accuracy={clean['accuracy']:.4f} [95% CI {lo:.4f}, {hi:.4f}]")
    elif report.get("clean_note"):
        lines.insert(4, f"clean subset: {report['clean_note']}")
    if report.get("excluded_trained_on"):
        lines.insert(1, f"left out {report['excluded_trained_on']} images the model trained or validated on")
    if report.get("external"):
        lines += ["", *format_external(report["external"])]
    if report["misclassified"]:
        lines += ["", f"misclassified ({len(report['misclassified'])}):"]
        for r in report["misclassified"][:50]:
            lines.append(f"  {r['path']}: true {r['true']}, predicted {r['pred']} "
                         f"({max(r['probs']):.1%})")
    return "\n".join(lines)


def format_thresholds(t) -> str:
    if isinstance(t, dict):
        return ", ".join(f"{c} {v:.3f}" for c, v in t.items())
    return f"{t:.3f}"


def _ci(ci) -> str:
    return "" if not ci else f" [{pct(ci[0])}, {pct(ci[1])}]"


def format_external(ext: dict) -> list[str]:
    """The external-validation block: membership, accuracy, tumour→"no tumour", per sequence."""
    iv = ext.get("intervals") or {}
    lines = [f"external validation on {ext['dataset']}: {ext['membership']}",
             f"  accuracy {pct(ext['accuracy'])}{_ci(iv.get('accuracy'))} "
             + f"({group_interval(iv, lead='95 % interval ')})",
             f"  tumour images called 'no tumour': {ext['called_notumor']}/{ext['tumour_images']} "
             f"= {pct(ext['called_notumor_rate'])}{_ci(iv.get('called_notumor_rate'))}; not referred nor "
             f"flagged: {ext['called_notumor_unflagged']} = {pct(ext['called_notumor_unflagged_rate'])}"
             f"{_ci(iv.get('called_notumor_unflagged_rate'))}",
             f"  coverage (neither referred nor flagged) {pct(ext['coverage'])}, accepted accuracy "
             f"{pct(ext['accepted_accuracy'])}",
             "  recall: " + ", ".join(f"{c} {pct(v)}" for c, v in ext["recall"].items())]
    core = ext.get("t1c_tumours_and_normals")
    if core:
        lines.append(f"  T1C+ tumours + all normals: n={core['n']}  accuracy {pct(core['accuracy'])}"
                     f"{_ci((core.get('intervals') or {}).get('accuracy'))}")
    for seq, m in ext.get("by_sequence", {}).items():
        lines.append(f"  {seq:<8} n={m['n']:<5} accuracy {pct(m['accuracy'])}  tumour→'no tumour' "
                     f"{pct(m.get('called_notumor_rate'))} (unflagged {pct(m.get('called_notumor_unflagged_rate'))})")
    return lines


def add_parsers(sub) -> None:
    e = sub.add_parser("evaluate", help="evaluate a model on a folder of class sub-folders",
                       description="Accuracy, loss, per-class precision/recall/F1, confusion matrix, macro AUC, "
                       "ECE and misclassified files of MODEL on DATA (class sub-folders).")
    e.add_argument("--model", required=True, help="path to a .keras file with its .json card")
    e.add_argument("--data", help="folder of class sub-folders (default: $BRAINCLF_DATA)")
    e.add_argument("--json", action="store_true", help="print one JSON object")
    e.add_argument("--with-predictions", action="store_true", help="include per-image predictions in --json")
    e.add_argument("--external", action=argparse.BooleanOptionalAction, default=None,
                   help="external-validation block (per sequence, tumour→'no tumour', case-group intervals); "
                        "default: when the folder has a manifest.csv, lacks a class or is an extra training source")
    e.add_argument("--record", action="store_true",
                   help="store the external validation in the model's card (shown by the app)")
    add_tta_flag(e)
    e.add_argument("--train-data", help="dataset root holding the model's training images, for the clean-subset "
                   "metrics (default: next to --data, or $BRAINCLF_DATA)")
    e.set_defaults(func=cmd_evaluate)

    v = sub.add_parser("verify", help="re-measure an uploaded model's test figures on this server's data",
                       description="An uploaded model's card carries its uploader's figures, shown as claimed. "
                       "This evaluates it on DATA (a Training/Testing root: every split but Training) and replaces "
                       "its test figures with the measurement, marked re-measured on this server.")
    v.add_argument("--model", required=True, help="path to the uploaded .keras file with its .json card")
    v.add_argument("--data", help="the test data (default: $BRAINCLF_DATA)")
    v.set_defaults(func=cmd_verify)
