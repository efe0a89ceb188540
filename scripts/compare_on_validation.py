"""Compare candidate models on their shared validation files, per source, and say which one the rule picks
(lowest validation negative log-likelihood averaged over sources; calibrated; without flip TTA unless --tta).
Test sets never enter. The candidates must have been trained on one split (same validation file list).

    .venv/bin/python scripts/compare_on_validation.py MODEL.keras MODEL.keras ... --data $BRAINCLF_DATA \
        --extra-data ../shared/data/external-radiopaedia [--tta] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from brainclf.card import read_card  # noqa: E402
from brainclf.errors import BrainclfError  # noqa: E402
from brainclf.predict import Predictor  # noqa: E402
from brainclf.selection import PRIMARY, choose, mean_nll, validation_by_source, validation_samples  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("models", nargs="+", type=Path, help="candidate .keras files (cards beside them)")
    ap.add_argument("--data", type=Path, required=True, help="the primary dataset's root")
    ap.add_argument("--extra-data", type=Path, action="append", default=[], help="an extra source's folder")
    ap.add_argument("--tta", action="store_true", help="score with flip TTA (default: without)")
    ap.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    args = ap.parse_args(argv)
    roots = {PRIMARY: args.data, **{p.resolve().name: p for p in args.extra_data}}
    try:
        if len({m.stem for m in args.models}) != len(args.models):
            raise BrainclfError("two candidates share a name: give each model file a name of its own.")
        cards = {m.stem: read_card(m) for m in args.models}
        val_sets = {name: tuple(sorted(c.training.get("files", {}).get("val") or ())) for name, c in cards.items()}
        if len(set(val_sets.values())) != 1:
            raise BrainclfError("the candidates were validated on different files: train them on one split.")
        samples = validation_samples(next(iter(cards.values())), roots)
        results = {m.stem: validation_by_source(Predictor.load(m, tta=args.tta), samples) for m in args.models}
    except BrainclfError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    chosen = choose(results)
    if args.json:
        print(json.dumps({"tta": args.tta, "results": results, "mean_nll": {k: mean_nll(v) for k, v in results.items()},
                          "chosen": chosen}))
        return 0
    print(f"validation, calibrated, {'with' if args.tta else 'without'} flip TTA (each temperature was fitted on these "
          "same files: a small optimism shared by every candidate)")
    for name, res in results.items():
        parts = "; ".join(f"{src} n={r['n']} acc {r['accuracy']:.2%} NLL {r['nll']:.4f}" for src, r in res.items())
        print(f"{name}: {parts}; mean NLL {mean_nll(res):.4f}{'  <- chosen' if name == chosen else ''}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
