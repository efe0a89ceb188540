"""Compare candidate models on their shared validation files, per source, and say which one the rule keeps.

The first model is the incumbent (the bundled one); it stays unless a challenger's validation negative
log-likelihood (averaged over sources; calibrated; without flip TTA unless --tta) is lower beyond doubt: the
whole 95 % paired bootstrap interval over case groups of the difference below 0. The lowest mean NLL is printed
too. Test sets never enter. The candidates must have been trained on one split (same validation file list).

    .venv/bin/python scripts/compare_on_validation.py INCUMBENT.keras CHALLENGER.keras ... --data $BRAINCLF_DATA \
        --extra-data ../shared/data/external-radiopaedia [--tta] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from brainclf.errors import BrainclfError  # noqa: E402
from brainclf.evaluation.selection import (  # noqa: E402
    PRIMARY,
    choose,
    decide,
    mean_nll,
    nll_difference,
    shared_validation_samples,
    summarise,
    validation_groups,
    validation_scores,
)
from brainclf.inference import Predictor  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("models", nargs="+", type=Path,
                    help="candidate .keras files (cards beside them); the first is the incumbent")
    args = add_data_args(ap).parse_args(argv)
    roots = data_roots(args)
    try:
        if len({m.stem for m in args.models}) != len(args.models):
            raise BrainclfError("two candidates share a name: give each model file a name of its own.")
        predictors = {m.stem: Predictor.load(m, tta=args.tta) for m in args.models}
        samples = shared_validation_samples([p.card for p in predictors.values()], roots)
        scores = {name: validation_scores(p, samples) for name, p in predictors.items()}
        groups = validation_groups(samples)
    except BrainclfError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    results = {name: summarise(s) for name, s in scores.items()}
    incumbent = args.models[0].stem
    differences = {name: nll_difference(s, scores[incumbent], groups)
                   for name, s in scores.items() if name != incumbent}
    return print_decision(args, results, differences, incumbent, "validation, calibrated, {tta} flip TTA (each "
                          "temperature was fitted on these same files: a small optimism shared by every candidate)")


def add_data_args(ap: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The options every comparison script takes: where the sources are, TTA, JSON output."""
    ap.add_argument("--data", type=Path, required=True, help="the primary dataset's root")
    ap.add_argument("--extra-data", type=Path, action="append", default=[], help="an extra source's folder")
    ap.add_argument("--tta", action="store_true", help="score with flip TTA (default: without)")
    ap.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    return ap


def data_roots(args) -> dict:
    return {PRIMARY: args.data, **{p.resolve().name: p for p in args.extra_data}}


def print_decision(args, results: dict, differences: dict, incumbent: str, header: str,
                   source_label=lambda source, result: source) -> int:
    """Print each candidate's per-source results, its difference to the incumbent and the rule's choice (a table
    under `header`, whose {tta} says with or without flip TTA; or one JSON object with --json)."""
    chosen = decide(incumbent, differences)
    if args.json:
        print(json.dumps({"tta": args.tta, "results": results, "mean_nll": {k: mean_nll(v) for k, v in results.items()},
                          "incumbent": incumbent, "differences": differences, "lowest_mean_nll": choose(results),
                          "chosen": chosen}))
        return 0
    print(header.format(tta="with" if args.tta else "without"))
    for name, res in results.items():
        parts = "; ".join(f"{source_label(src, r)} n={r['n']} acc {r['accuracy']:.2%} NLL {r['nll']:.4f}"
                          for src, r in res.items())
        d = differences.get(name)
        vs = (f"; vs {incumbent} {d['difference']:+.4f} [{d['interval'][0]:+.4f}, {d['interval'][1]:+.4f}]" if d
              else " (incumbent)")
        print(f"{name}: {parts}; mean NLL {mean_nll(res):.4f}{vs}{'  <- kept' if name == chosen else ''}")
    print(f"lowest mean NLL: {choose(results)}; kept: {chosen} (a challenger replaces the incumbent only when the "
          "interval of its difference lies below 0)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
