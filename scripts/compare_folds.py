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
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from compare_on_validation import add_data_args, data_roots, print_decision  # noqa: E402

from brainclf.errors import BrainclfError  # noqa: E402
from brainclf.evaluation.crossval import (  # noqa: E402
    fold_scores,
    pool_folds,
    pooled_difference,
    pooled_groups,
    summarise_pooled,
)
from brainclf.inference import Predictor  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--recipe", nargs="+", action="append", required=True, metavar=("NAME", "MODEL"),
                    help="a recipe's name and its fold models (.keras, cards beside them); the first is the incumbent")
    args = add_data_args(ap).parse_args(argv)
    roots = data_roots(args)
    try:
        names = [r[0] for r in args.recipe]
        if len(set(names)) != len(names) or any(len(r) < 3 for r in args.recipe):
            raise BrainclfError("give each recipe a name of its own and at least two fold models.")
        pooled = {r[0]: pool_folds([fold_scores(Predictor.load(Path(m), tta=args.tta), roots) for m in r[1:]])
                  for r in args.recipe}
        groups = pooled_groups(pooled[names[0]])
        differences = {n: pooled_difference(p, pooled[names[0]], groups) for n, p in pooled.items() if n != names[0]}
    except BrainclfError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    results = {n: summarise_pooled(p) for n, p in pooled.items()}
    return print_decision(
        args, results, differences, names[0],
        f"grouped {len(args.recipe[0]) - 1}-fold validation, calibrated, {{tta}} flip TTA (out of fold: each file "
        "scored by the fold model that did not learn from it; * = the same files in every fold, mean loss)",
        lambda source, r: source + ("" if r["out_of_fold"] else "*"))


if __name__ == "__main__":
    raise SystemExit(main())
