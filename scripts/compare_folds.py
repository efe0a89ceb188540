"""Compare training recipes by grouped k-fold over the extra sources' cases, on validation only, and say which one
the rule keeps.

Each recipe is trained once per fold (`python -m brainclf train ... --extra-val-fold K`, K = 0 .. 4 with the default
fractions; a job array's index fits there; fold 0 is the usual split). Each fold model is scored on its own
validation files (calibrated; without flip TTA unless --tta); an extra source's development cases are then each
scored once, out of fold, and the primary source's validation images get the mean over the folds. The first recipe
is the incumbent: it stays unless a challenger's pooled mean NLL (averaged over sources) is lower beyond doubt (the
whole 95 % paired bootstrap interval over case groups below 0). Test sets never enter.

    .venv/bin/python scripts/compare_folds.py --recipe default f0.keras f1.keras ... --recipe wider g0.keras ... \
        --data $BRAINCLF_DATA --extra-data ../shared/data/external-radiopaedia [--tta] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from brainclf.errors import BrainclfError  # noqa: E402
from brainclf.evaluation.crossval import (  # noqa: E402
    fold_scores,
    pool_folds,
    pooled_difference,
    pooled_groups,
    summarise_pooled,
)
from brainclf.evaluation.selection import PRIMARY, choose, decide, mean_nll  # noqa: E402
from brainclf.inference import Predictor  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--recipe", nargs="+", action="append", required=True, metavar=("NAME", "MODEL"),
                    help="a recipe's name and its fold models (.keras, cards beside them); the first is the incumbent")
    ap.add_argument("--data", type=Path, required=True, help="the primary dataset's root")
    ap.add_argument("--extra-data", type=Path, action="append", default=[], help="an extra source's folder")
    ap.add_argument("--tta", action="store_true", help="score with flip TTA (default: without)")
    ap.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    args = ap.parse_args(argv)
    roots = {PRIMARY: args.data, **{p.resolve().name: p for p in args.extra_data}}
    try:
        names = [r[0] for r in args.recipe]
        if len(set(names)) != len(names) or any(len(r) < 3 for r in args.recipe):
            raise BrainclfError("give each recipe a name of its own and at least two fold models.")
        pooled = {r[0]: pool_folds([fold_scores(Predictor.load(Path(m), tta=args.tta), roots) for m in r[1:]])
                  for r in args.recipe}
        groups = pooled_groups(pooled[names[0]])
        incumbent = names[0]
        differences = {n: pooled_difference(p, pooled[incumbent], groups) for n, p in pooled.items() if n != incumbent}
    except BrainclfError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    results = {n: summarise_pooled(p) for n, p in pooled.items()}
    chosen = decide(incumbent, differences)
    if args.json:
        print(json.dumps({"tta": args.tta, "results": results, "mean_nll": {k: mean_nll(v) for k, v in results.items()},
                          "incumbent": incumbent, "differences": differences, "lowest_mean_nll": choose(results),
                          "chosen": chosen}))
        return 0
    print(f"grouped k-fold validation, calibrated, {'with' if args.tta else 'without'} flip TTA (out of fold: each "
          "file scored by the fold model that did not learn from it; * = the same files in every fold, mean loss)")
    for name, res in results.items():
        parts = "; ".join(f"{src}{'' if r['out_of_fold'] else '*'} n={r['n']} acc {r['accuracy']:.2%} "
                          f"NLL {r['nll']:.4f}" for src, r in res.items())
        d = differences.get(name)
        vs = (f"; vs {incumbent} {d['difference']:+.4f} [{d['interval'][0]:+.4f}, {d['interval'][1]:+.4f}]" if d
              else " (incumbent)")
        print(f"{name} ({next(iter(res.values()))['folds']} folds): {parts}; mean NLL {mean_nll(res):.4f}{vs}"
              f"{'  <- kept' if name == chosen else ''}")
    print(f"lowest mean NLL: {choose(results)}; kept: {chosen} (a challenger replaces the incumbent only when the "
          "interval of its difference lies below 0)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
