"""Command line: python -m brainclf train | evaluate | predict | merge-csv | dedup."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from . import PRECISIONS
from .errors import BrainclfError, ConfigError

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's start-up chatter off the terminal


class _CountBar:
    """A progress(done, total) callback drawing a tqdm bar on stderr, created on the first call."""

    def __init__(self, desc: str):
        self.desc, self.bar = desc, None

    def __call__(self, done: int, total: int) -> None:
        from tqdm import tqdm

        if self.bar is None:
            self.bar = tqdm(total=total, desc=self.desc, unit="img", file=sys.stderr, dynamic_ncols=True, leave=False)
        self.bar.n = done
        self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def cmd_train(args) -> int:
    from tqdm import tqdm

    from .data import resolve_data_root
    from .sources import parse_extra_data
    from .training import TrainConfig, TrainProgress, train

    sources = [parse_extra_data(spec) for spec in args.extra_data or []]
    config = TrainConfig(
        architecture=args.arch, image_size=args.size, channels=args.channels, epochs=args.epochs,
        batch_size=args.batch_size, learning_rate=args.lr, augment=not args.no_augment,
        early_stopping_patience=args.patience, seed=args.seed, max_train_images=args.max_images,
        optimizer=args.optimizer, precision=args.precision, augment_intensity=args.intensity_augment,
        extra_sources=[{"name": s.name, "weight": s.weight} for s in sources],
    )
    bar = None

    def hook(p: TrainProgress):
        nonlocal bar
        if p.stage == "training":
            if bar is None or bar.total != p.epochs * p.batches:
                bar = tqdm(total=p.epochs * p.batches, desc="train", unit="step", file=sys.stderr,
                           dynamic_ncols=True)
            bar.n = p.epoch * p.batches + (p.batch if p.batch < p.batches else 0)
            h = p.history
            if h.get("val_loss"):
                bar.set_postfix(epoch=f"{p.epoch}/{p.epochs}", loss=f"{h['loss'][-1]:.3f}",
                                val_loss=f"{h['val_loss'][-1]:.3f}", val_acc=f"{h['val_accuracy'][-1]:.3f}")
            bar.refresh()
            if p.epoch_end and h.get("val_loss"):
                bar.write(f"epoch {p.epoch}/{p.epochs} loss {h['loss'][-1]:.4f} acc {h['accuracy'][-1]:.4f} "
                      f"val_loss {h['val_loss'][-1]:.4f} val_acc {h['val_accuracy'][-1]:.4f} "
                      f"({p.elapsed_s:.0f}s)", file=sys.stderr)
        else:
            print(f"[{p.stage}] {p.message}", file=sys.stderr, flush=True)

    out = train(config, resolve_data_root(args.data), args.name, models_dir=args.models_dir, progress=hook,
                resume=not args.no_resume, strategy=args.strategy, finish_now=args.finish_now, extra_data=sources)
    if bar:
        bar.close()
    print(f"saved {out}")
    return 0


def _json_default(o):
    import numpy as np

    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(type(o).__name__)


def cmd_evaluate(args) -> int:
    from .data import resolve_data_root
    from .evaluate import evaluate_folder, record_external
    from .predict import Predictor

    predictor = Predictor.load(args.model, tta=args.tta)
    data = resolve_data_root(args.data)
    bar = _CountBar("evaluate")
    report = evaluate_folder(predictor, data, bar, training_root=args.train_data, external=args.external)
    bar.close()
    for err in report["unreadable"]:
        print(f"skipped: {err}", file=sys.stderr)
    if args.record:
        if not report.get("external"):
            print("error: --record stores external validation; this folder was evaluated without it "
                  "(pass --external)", file=sys.stderr)
            return 2
        print(f"recorded in {record_external(args.model, report)}", file=sys.stderr)
    if args.json:
        out = {k: v for k, v in report.items() if k != "predictions" or args.with_predictions}
        if "external" in out and not args.with_predictions:
            out["external"] = {k: v for k, v in out["external"].items() if k != "predictions"}
        print(json.dumps(out, default=_json_default))
        return 0
    print(format_report(report))
    return 0


def format_report(report: dict) -> str:
    from . import CLASS_NAMES

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
        lines.insert(2, f"accuracy 95% bootstrap CI [{lo:.4f}, {hi:.4f}]")
    if report.get("refer"):
        r = report["refer"]
        acc = "n/a" if r["accepted_accuracy"] is None else f"{r['accepted_accuracy']:.4f}"
        lines.insert(3, f"refer rule (confidence < {format_thresholds(r['threshold'])}): coverage "
                        f"{r['coverage']:.1%}, accepted accuracy {acc}, referred {r['referred']}")
    clean = report.get("clean")
    if clean:
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


def _pct(v) -> str:
    return "n/a" if v is None else f"{v:.1%}"


def _ci(ci) -> str:
    return "" if not ci else f" [{ci[0]:.1%}, {ci[1]:.1%}]"


def format_external(ext: dict) -> list[str]:
    """The external-validation block: membership, accuracy, tumour→"no tumour", per sequence."""
    iv = ext.get("intervals") or {}
    lines = [f"external validation on {ext['dataset']}: {ext['membership']}",
             f"  accuracy {_pct(ext['accuracy'])}{_ci(iv.get('accuracy'))} (95% CI over {iv.get('groups', '?')} "
             "case groups)",
             f"  tumour images called 'no tumour': {ext['called_notumor']}/{ext['tumour_images']} "
             f"= {_pct(ext['called_notumor_rate'])}{_ci(iv.get('called_notumor_rate'))}; not referred nor "
             f"flagged: {ext['called_notumor_unflagged']} = {_pct(ext['called_notumor_unflagged_rate'])}"
             f"{_ci(iv.get('called_notumor_unflagged_rate'))}",
             f"  coverage (neither referred nor flagged) {_pct(ext['coverage'])}, accepted accuracy "
             f"{_pct(ext['accepted_accuracy'])}",
             "  recall: " + ", ".join(f"{c} {_pct(v)}" for c, v in ext["recall"].items())]
    core = ext.get("t1c_tumours_and_normals")
    if core:
        lines.append(f"  T1C+ tumours + all normals: n={core['n']}  accuracy {_pct(core['accuracy'])}"
                     f"{_ci((core.get('intervals') or {}).get('accuracy'))}")
    for seq, m in ext.get("by_sequence", {}).items():
        lines.append(f"  {seq:<8} n={m['n']:<5} accuracy {_pct(m['accuracy'])}  tumour→'no tumour' "
                     f"{_pct(m.get('called_notumor_rate'))} (unflagged {_pct(m.get('called_notumor_unflagged_rate'))})")
    return lines


def cmd_predict(args) -> int:
    import csv

    from .errors import ImageError
    from .predict import Predictor

    if args.shard is not None and not args.folder:
        raise ConfigError("--shard splits a --folder: give --folder DIR --csv OUT with it.")
    if args.shard is not None:
        from .shard import parse_shard

        args.shard = parse_shard(args.shard)  # checked before the model is loaded
    predictor = Predictor.load(args.model, tta=args.tta)
    if args.folder:
        return _predict_folder(predictor, args)
    if not args.files:
        raise ConfigError("Give image files, or --folder DIR with --csv OUT.")
    rows, failures = [], 0
    for f in args.files:
        try:
            pred = predictor.predict(Path(f), name=str(f))
        except ImageError as e:
            failures += 1
            print(f"error: {e}", file=sys.stderr)
            continue
        row = pred.as_row()
        rows.append(row)
        probs = "  ".join(f"{c} {p:6.1%}" for c, p in pred.probabilities.items())
        refer = "  REFER: low confidence" if pred.referred else ""
        print(f"{f}: {pred.predicted} ({pred.confidence:.1%})  [{probs}]{refer}")
    if args.csv and rows:
        with open(args.csv, "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
        print(f"wrote {len(rows)} rows to {args.csv}", file=sys.stderr)
    print(f"model {predictor.card.label}: {len(rows)} predicted, {failures} failed", file=sys.stderr)
    return 0 if not failures else 1


def _predict_folder(predictor, args) -> int:
    import resource

    from tqdm import tqdm

    from .predict import predict_folder
    from .shard import iter_shard_files

    if not args.csv:
        raise ConfigError("--folder needs --csv OUT (results stream into it; re-running resumes).")
    if not Path(args.folder).is_dir():
        raise ConfigError(f"{args.folder} is not a folder.")
    total = sum(1 for _ in iter_shard_files(args.folder, args.shard))
    bar = tqdm(total=total, desc="predict", unit="img", file=sys.stderr, dynamic_ncols=True)

    def progress(c):
        bar.n = c["predicted"] + c["failed"] + c["skipped"]
        bar.refresh()

    counts = predict_folder(predictor, args.folder, args.csv, progress=progress, shard=args.shard)
    bar.close()
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    shard = f" (shard {args.shard[0]}/{args.shard[1]})" if args.shard else ""
    print(f"model {predictor.card.label}{shard}: {counts['predicted']} predicted, {counts['failed']} failed, "
          f"{counts['skipped']} already in {args.csv}; peak memory {peak_mb:.0f} MB", file=sys.stderr)
    return 0 if not counts["failed"] else 1


def cmd_shortcut(args) -> int:
    from .data import resolve_data_root
    from .shortcut import run_study

    study = run_study(resolve_data_root(args.data), args.external or [])
    if args.out:
        Path(args.out).write_text(json.dumps(study, indent=1))
        print(f"wrote {args.out}", file=sys.stderr)
    print(f"style-only baseline ({study['model']}; {study['features']})")
    parts = [("Kaggle Training, grouped 5-fold CV", study.get("cv")), ("Kaggle Testing", study.get("testing")),
             *study["external"].items()]
    for label, r in parts:
        if r:
            print(f"  {label:<36} accuracy {r['accuracy']:.1%}  (majority class {r['majority_baseline']:.1%}, "
                  f"n={r['n']})")
    return 0


def cmd_audit_labels(args) -> int:
    from .data import discover, resolve_data_root
    from .label_audit import audit_labels

    root = resolve_data_root(args.data)
    ds = discover(root)
    samples = [s for name, ss in ds.splits.items() if name.lower() not in ("training", "train") or args.all
               for s in ss]
    rows = None
    if args.model:
        from .evaluate import evaluate_samples
        from .predict import Predictor

        rows = evaluate_samples(Predictor.load(args.model, tta=False), samples, root)["predictions"]
    found = audit_labels(samples, root, rows)
    if args.json:
        print(json.dumps({"n": len(samples), "suspicious": found}, indent=1))
        return 0
    print(f"{len(found)} of {len(samples)} images to review in {root}:")
    for f in found:
        print(f"  {f['path']}  [{f['label']}]  " + "; ".join(f["reasons"]))
    if rows:
        flagged = {f["path"] for f in found}
        kept = [r for r in rows if r["path"] not in flagged]
        acc = lambda rr: sum(r["true"] == r["pred"] for r in rr) / max(len(rr), 1)  # noqa: E731
        print(f"model accuracy: {acc(rows):.2%} on all {len(rows)}; {acc(kept):.2%} on the {len(kept)} not listed")
    return 0


def cmd_merge_csv(args) -> int:
    from .shard import merge_csvs

    report = merge_csvs(args.out, args.inputs, folder=args.folder)
    shown = 20
    for name, where in list(report.duplicates.items())[:shown]:
        print(f"duplicate: {name} in {', '.join(where)}", file=sys.stderr)
    if len(report.duplicates) > shown:
        print(f"duplicate: ... and {len(report.duplicates) - shown} more", file=sys.stderr)
    for name in (report.missing or [])[:shown]:
        print(f"missing: {name}", file=sys.stderr)
    if report.missing and len(report.missing) > shown:
        print(f"missing: ... and {len(report.missing) - shown} more", file=sys.stderr)
    print(report.summary(), file=sys.stderr)
    return 0 if report.ok else 1


def cmd_dedup(args) -> int:
    from .data import discover, resolve_data_root
    from .dedup import dedup_report, format_dedup_report

    data = resolve_data_root(args.data)
    bar = _CountBar("hash")
    report = dedup_report(discover(data), threshold=args.threshold, progress=bar)
    bar.close()
    print(json.dumps(report, indent=1) if args.json else format_dedup_report(report, args.show))
    return 0


def cmd_bench(args) -> int:
    from .bench import main as bench_main
    from .data import resolve_data_root

    return bench_main(args.model, str(resolve_data_root(args.data)), args.json_out, not args.no_app, args.runs)


def _add_tta_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tta", action=argparse.BooleanOptionalAction, default=None,
                        help="flip test-time augmentation: average with the mirrored slice (default: as the model "
                        "card says, chosen on validation)")


def build_parser() -> argparse.ArgumentParser:
    from . import ARCHITECTURE_NAMES, DEFAULT_ARCHITECTURE

    p = argparse.ArgumentParser(prog="python -m brainclf", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train a model and save it with its card",
                       description="Train an architecture on DATA (Training/Testing layout or pooled class "
                       "folders) and save MODELS_DIR/NAME.keras with NAME.json. Resumes an interrupted run.")
    t.add_argument("--data", help="dataset root (default: $BRAINCLF_DATA)")
    t.add_argument("--name", default="default", help="model name (file name in --models-dir)")
    t.add_argument("--arch", default=DEFAULT_ARCHITECTURE, help=f"one of {', '.join(ARCHITECTURE_NAMES)}")
    t.add_argument("--size", type=int, help="input size in pixels (default: the architecture's)")
    t.add_argument("--channels", type=int, choices=(1, 3), help="1 grayscale, 3 RGB")
    t.add_argument("--epochs", type=int, default=50)
    t.add_argument("--batch-size", type=int, default=32)
    t.add_argument("--lr", type=float, default=3e-3, help="peak learning rate")
    t.add_argument("--optimizer", default="adamw", choices=("adamw", "adam"))
    t.add_argument("--precision", default="float32", choices=PRECISIONS,
                   help="training arithmetic: mixed_bfloat16 is ~1.7x faster on CPUs with bfloat16 units "
                   "(AVX512-BF16/AMX); the saved model is float32 either way")
    t.add_argument("--patience", type=int, default=12, help="early-stopping patience in epochs")
    t.add_argument("--no-augment", action="store_true")
    t.add_argument("--intensity-augment", action="store_true",
                   help="add random gamma, brightness and noise (differences between sources)")
    t.add_argument("--extra-data", action="append", metavar="DIR[:WEIGHT]",
                   help="another labelled folder of class sub-folders (any subset of the classes); repeatable. "
                        "Split by case groups into train/validation/held-out test; WEIGHT multiplies its loss")
    t.add_argument("--seed", type=int, default=42)
    t.add_argument("--max-images", type=int, help="train on a stratified subset (smoke tests)")
    t.add_argument("--models-dir", default="models")
    t.add_argument("--no-resume", action="store_true", help="start over even if a run exists")
    t.add_argument("--finish-now", action="store_true",
                   help="end an interrupted run where it stands: save its best checkpoint so far with the card")
    t.add_argument("--strategy", default="default", choices=("default", "mirrored", "multiworker"),
                   help="tf.distribute strategy: one device, all local GPUs, or several machines (TF_CONFIG)")
    t.set_defaults(func=cmd_train)

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
    _add_tta_flag(e)
    e.add_argument("--train-data", help="dataset root holding the model's training images, for the clean-subset "
                   "metrics (default: next to --data, or $BRAINCLF_DATA)")
    e.set_defaults(func=cmd_evaluate)

    pr = sub.add_parser("predict", help="class probabilities for image files",
                        description="Print each file's class probabilities; bad files are reported and skipped.")
    pr.add_argument("--model", required=True)
    pr.add_argument("files", nargs="*", metavar="FILE")
    pr.add_argument("--folder", help="predict every image under this folder, streaming into --csv (resumable)")
    pr.add_argument("--csv", help="also write the results to this CSV file")
    pr.add_argument("--shard", metavar="I/N", help="with --folder: only the files whose path hash falls in shard I "
                    "(0-based) of N, for N machines covering one folder (merge their CSVs with merge-csv)")
    _add_tta_flag(pr)
    pr.set_defaults(func=cmd_predict)

    m = sub.add_parser("merge-csv", help="join the CSVs of sharded predict --folder runs",
                       description="Write the rows of the shard CSVs into OUT (header once, sorted by file) and "
                       "report files found in more than one shard and, with --folder, files found in none. "
                       "Exit code 1 when there are any.")
    m.add_argument("out", metavar="OUT", help="merged CSV to write")
    m.add_argument("inputs", nargs="+", metavar="SHARD_CSV", help="CSVs written by predict --folder --shard")
    m.add_argument("--folder", help="the predicted folder: also report its image files that no CSV covers")
    m.set_defaults(func=cmd_merge_csv)

    d = sub.add_parser("dedup", help="report exact and near-duplicate images",
                       description="Exact (same bytes) and near (difference-hash) duplicates within and across "
                       "splits of DATA.")
    d.add_argument("--data", help="dataset root (default: $BRAINCLF_DATA)")
    d.add_argument("--threshold", type=int, default=None, help="Hamming distance out of 256 (default 12)")
    d.add_argument("--show", type=int, default=10, help="example pairs to list per category")
    d.add_argument("--json", action="store_true")
    d.set_defaults(func=cmd_dedup)

    sc = sub.add_parser("shortcut", help="style-only baseline: how much of the class image style alone predicts",
                        description="Fit a logistic regression on style features (size, colour mode, file size, "
                                    "gray-level histogram) on Kaggle Training; score it in and out of source.")
    sc.add_argument("--data", help="Kaggle root with Training/ and Testing/ (default: $BRAINCLF_DATA)")
    sc.add_argument("--external", action="append", metavar="DIR", help="a labelled folder of another source")
    sc.add_argument("--out", help="also write the results as JSON here")
    sc.set_defaults(func=cmd_shortcut)

    al = sub.add_parser("audit-labels", help="list images whose label a person should check",
                        description="CT slices in an MRI dataset (bright skull ring) and, with --model, images "
                                    "the model confidently assigns to another class. Lists; never relabels.")
    al.add_argument("--data", help="folder of class sub-folders or a Training/Testing root")
    al.add_argument("--model", help="a model that did not train on these images (for the disagreement signal)")
    al.add_argument("--all", action="store_true", help="include a Training split too")
    al.add_argument("--json", action="store_true")
    al.set_defaults(func=cmd_audit_labels)

    b = sub.add_parser("bench", help="measure speed on this machine (not a test)",
                       description="Model load, single-image latency (preprocess, forward, Grad-CAM) vs the naive "
                       "path, evaluation throughput, training s/epoch, peak memory and app cold start.")
    b.add_argument("--model", nargs="+", default=["models/seed.keras", "models/default.keras"])
    b.add_argument("--data", help="dataset root with Testing/ (default: $BRAINCLF_DATA)")
    b.add_argument("--runs", type=int, default=50, help="timed runs per latency figure (after warm-up)")
    b.add_argument("--json-out", default="bench.json", help="also write the results here")
    b.add_argument("--no-app", action="store_true", help="skip the app cold-start measurement")
    b.set_defaults(func=cmd_bench)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except BrainclfError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
