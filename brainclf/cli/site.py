"""python -m brainclf site validate | calibrate | adapt | report | all: a hospital's own labelled slices, before
anyone relies on the model there (brainclf.site)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from ..errors import ConfigError
from ..input.limits import check_refer_confidence, check_refer_target
from ..presentation.scope import group_interval
from ..presentation.wording import refer_rule
from ..scoring.operating_point import refers_all
from ..site.config import AdaptConfig
from ..site.split import LEFT_OUT_REASONS, check_site_name, left_out_words
from ..site.step_lock import one_step_at_a_time
from ..site.summary import promise
from ..training.config import runs_dir
from .common import CountBar, pct, say
from .prediction import check_output_file

STEPS = ("validate", "calibrate", "adapt", "report", "all")


def _run_dir(args) -> Path:
    from ..site import site_run_dir

    return Path(args.run_dir) if args.run_dir else site_run_dir(
        Path(os.environ.get("BRAINCLF_RUNS", "runs")) / "site", args.site, args.model)


def _open(args, run_dir: Path):
    from ..site import SiteRun

    bar = CountBar("site slices read and grouped")
    run = SiteRun.open(run_dir, args.site_data, args.site, args.model, bar,
                       data_root=args.data or os.environ.get("BRAINCLF_DATA"))
    bar.close()
    counts = run.split.counts()
    say(f"site {args.site}: {counts['tune']} tuning + {counts['calibration']} calibration slices (adaptation "
        f"part), {counts['heldout']} held-out, {run.state['groups']} case groups; run dir {run_dir}"
        f"{left_out_words(run.split.left_out)}", file=sys.stderr)
    for why, rels in run.split.left_out.items():  # by name: a clinic wants to know which of its files
        if rels:
            say(f"  left out ({LEFT_OUT_REASONS.get(why, why)}): "
                f"{', '.join(rels[:10])}{' …' if len(rels) > 10 else ''}", file=sys.stderr)
    for warning in run.split.warnings:
        say(f"warning: {warning}", file=sys.stderr)
    return run


def cmd_site(args) -> int:
    check_site_name(args.site)  # before any path is built from it, let alone made ('../../x' once made a folder)
    _check_rule(args)
    steps = ("validate", "calibrate", "adapt", "report") if args.step == "all" else (args.step,)
    cfg = _adapt_config(args) if "adapt" in steps else None  # checked before any step runs
    if args.pdf and "report" in steps:  # a file named here is not replaced unasked (RUN_DIR's own report is)
        check_output_file(args.pdf, "--pdf", overwrite=args.overwrite)
    run_dir = _run_dir(args)
    with one_step_at_a_time(run_dir):  # not beside a step of the same run in the app or another shell
        _run_steps(args, steps, cfg, _open(args, run_dir))
    return 0


def _run_steps(args, steps: tuple[str, ...], cfg, run) -> None:
    from ..inference import Predictor
    from ..site import site_report_pdf

    data = args.data or os.environ.get("BRAINCLF_DATA")
    for step in steps:
        if step == "validate":
            with _Bars() as bars:
                validated = run.validate(Predictor.load(args.model), bars)
            say(format_step("validate", validated))
        elif step == "calibrate":
            with _Bars() as bars:
                result = run.calibrate(Predictor.load(args.model), args.target, args.models_dir, args.name, data,
                                       confidence=args.confidence, phase=bars, runs_root=runs_dir())
            say(format_step("calibrate", result))
        elif step == "adapt":
            result = run.adapt(cfg, data, args.target, args.models_dir, args.adapted_name, progress=_epoch_line,
                               confidence=args.confidence, runs_root=runs_dir())
            say(format_step("adapt", result))
        else:
            out = Path(args.pdf or run.run_dir / "go-live-report.pdf")
            out.write_bytes(site_report_pdf(run.state))
            say(f"go-live report: {out}")


class _Bars:
    """A site step's parts as progress bars on stderr, one at a time: bars(words) closes the last and gives the
    next one's progress(done, total) callback (brainclf.site.run.Phases)."""

    def __init__(self):
        self.bar: CountBar | None = None

    def __call__(self, words: str, saving: bool = False):
        self.close()
        if saving:  # one quick step: no bar
            return lambda done, total: None
        self.bar = CountBar(words)
        return self.bar

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _adapt_config(args) -> AdaptConfig:
    """The adapt step's settings from the flags given, validated (ConfigError naming the bad one)."""
    given = {"epochs": args.epochs, "learning_rate": args.lr, "replay_per_site_slice": args.replay,
             "site_weight": args.site_weight, "distill": args.distill, "freeze_early_layers": args.freeze_early,
             "freeze_batchnorm": args.freeze_batchnorm, "ema_momentum": args.ema, "anchor": args.anchor,
             "seed": args.seed}
    cfg = AdaptConfig(**{k: v for k, v in given.items() if v is not None})
    cfg.validate()
    return cfg


def _check_rule(args) -> None:
    """--target and --confidence in their ranges (before any work), else a ConfigError saying what is allowed."""
    try:
        check_refer_target(args.target)
        if args.confidence is not None:
            check_refer_confidence(args.confidence)
    except ValueError as e:
        raise ConfigError(f"{str(e)[0].upper()}{str(e)[1:]}.") from None


def format_heldout(report: dict) -> list[str]:
    """The held-out figures of one step, a few lines."""
    ci = (report.get("intervals") or {}).get("accuracy")
    lines = [f"  held-out: {report['n']} slices, accuracy {pct(report['accuracy'])}"
             + (f" [{pct(ci[0])}, {pct(ci[1])}]" if ci else "")
             + f" ({group_interval(report.get('intervals'), lead='95 % interval ')})"]
    tumour = next((r for r in report.get("rates", []) if r["finding"].startswith("Any tumour")), None)
    if tumour:
        lines.append(f"  any tumour: sensitivity {pct(tumour['sensitivity'])}, "
                     f"specificity {pct(tumour['specificity'])}")
    lines.append(f"  answered {pct(report.get('coverage'))} (right among answered "
                 f"{pct(report.get('accepted_accuracy'))}); tumours called 'no tumour' and answered: "
                 f"{report.get('called_notumor_unflagged', 0)}")
    for seq, sub in sorted(report.get("by_sequence", {}).items()):
        lines.append(f"  {seq}: {sub['n']} slices, accuracy {pct(sub['accuracy'])}")
    return lines


def format_step(step: str, result: dict) -> str:
    if step == "validate":
        m = result["model"]
        return "\n".join([f"validate: {m['name']} {m['version']} as it is", *format_heldout(result)])
    cal = result["calibration"]
    mode = "_tta" if cal.get("tta_default") else ""  # the mode the saved model runs in, and its rule
    rule = refer_rule(cal.get("refer_thresholds" + mode) or {}, cal, fallback=cal.get("refer_threshold" + mode, 0.0),
                      tta=bool(mode))
    strict = f", no tumour {rule.threshold('notumor'):.4f}" if rule.strict_notumor else ""
    bar = "none reached: every answer referred" if refers_all(rule.base) else f"{rule.base:.4f}{strict}"
    head = (f"{step}: saved {result['name']} ({result['model']}); {'flip TTA' if mode else 'single pass'}, "
            f"temperature {cal.get('temperature' + mode, cal['temperature']):.3f}, refer bar {bar} for "
            f"{pct(result['target'])} accepted accuracy (fitted on {cal['fitted_on']})")
    lines = [head, *(f"  {said}" for said in [promise(result)] if said), *format_heldout(result["heldout"])]
    if step == "adapt":
        a, k = result["adapt"], result["kaggle_test"]
        step_s = f", {a['step_seconds']:.0f} s in all" if a.get("step_seconds") else ""
        lines.append(f"  fine-tuned {a['epochs_run']} epochs ({a['seconds']:.0f} s{step_s}), kept epoch "
                     f"{a['best_epoch']}; "
                     f"{a['tune_slices']} site slices, {a['replay_images']} replayed training images")
        if k.get("before") and k.get("after"):
            lines.append(f"  Kaggle Testing ({k['after']['n']}): {pct(k['before']['accuracy'])} before, "
                         f"{pct(k['after']['accuracy'])} after")
    return "\n".join(lines)


def _epoch_line(p) -> None:
    if p.epoch_end or p.stage != "training":
        say(p.text() if p.stage != "training" else
            f"epoch {p.epoch}/{p.epochs}: calibration loss {p.history['calibration_loss'][-1]:.4f} "
            f"({p.train_elapsed_s:.0f}s)", file=sys.stderr)


def add_parsers(sub) -> None:
    s = sub.add_parser("site", help="validate, calibrate and adapt a model on a site's own labelled slices",
                       description="A site's labelled slices (class sub-folders, optional manifest.csv) are split "
                       "by case groups into an adaptation part and a held-out part. validate: the model on the "
                       "held-out part. calibrate: the site's temperature, refer thresholds and OOD guard from the "
                       "adaptation part, saved as a site profile (a new model). adapt: fine-tune on the adaptation "
                       "part replaying the model's training images, then calibrate and validate it (a new model). "
                       "report: the one-page go-live PDF. all: the four in turn.")
    s.add_argument("step", choices=STEPS)
    s.add_argument("--model", required=True, help="the starting model (.keras with its card)")
    s.add_argument("--site-data", required=True, help="the site's folder of class sub-folders")
    s.add_argument("--site", required=True, help="the site's name (letters, digits, '.', '_', '-')")
    s.add_argument("--data", help="the model's training dataset root, for replay and the Kaggle Testing check "
                   "(default: $BRAINCLF_DATA)")
    s.add_argument("--run-dir", help="where the site run keeps its split and figures (default: "
                   "$BRAINCLF_RUNS/site/SITE-MODEL)")
    s.add_argument("--models-dir", default="models", help="where the site profile and adapted model go")
    s.add_argument("--target", type=float, default=0.98, help="accepted accuracy the refer rule aims at on the "
                   "site (default 0.98)")
    s.add_argument("--confidence", type=float, help="ask the lower bound of the site's accuracy at this confidence "
                   "(e.g. 0.95), not only the share seen, to reach the target (default: the share seen)")
    s.add_argument("--name", help="the site profile's model name (default SITE-MODEL)")
    s.add_argument("--adapted-name", help="the adapted model's name (default SITE-MODEL-adapted)")
    s.add_argument("--epochs", type=int, help=f"fine-tuning epochs (default {AdaptConfig.epochs})")
    s.add_argument("--lr", type=float, help=f"fine-tuning peak learning rate (default {AdaptConfig.learning_rate})")
    s.add_argument("--replay", type=float, help="replayed training images per site slice each epoch (default "
                   f"{AdaptConfig.replay_per_site_slice:g})")
    s.add_argument("--site-weight", type=float, help="loss weight of a site slice; a replayed image weighs 1 "
                   "(default: AdaptConfig's)")
    s.add_argument("--distill", type=float, help="share of the starting model's own output in a replayed image's "
                   "target, 0-1 (default: AdaptConfig's)")
    s.add_argument("--freeze-early", action=argparse.BooleanOptionalAction, default=None,
                   help="keep the layers at half the input resolution or more as they are (faster)")
    s.add_argument("--freeze-batchnorm", action=argparse.BooleanOptionalAction, default=None,
                   help="keep BatchNorm's statistics as the model came with them")
    s.add_argument("--ema", type=float, help="momentum of a moving average of the weights that each epoch ends on, "
                   "e.g. 0.99 (default: off)")
    s.add_argument("--anchor", type=float, help="L2-SP: pull each trained weight towards the starting model's "
                   "with this strength, e.g. 0.0001 (default: off)")
    s.add_argument("--seed", type=int, help="seed of the replay draws and augmentation; another seed repeats a "
                   f"recipe to see its run-to-run spread (default {AdaptConfig.seed})")
    s.add_argument("--pdf", help="where the go-live report goes, a new file (default RUN_DIR/go-live-report.pdf, "
                   "replaced on each report)")
    s.add_argument("--overwrite", action="store_true", help="replace an existing --pdf file")
    s.set_defaults(func=cmd_site)

