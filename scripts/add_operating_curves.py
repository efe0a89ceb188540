"""Add the refer rule's per-source validation curves (brainclf.scoring.operating_point) to the card of a model trained
before cards kept them. Its thresholds and every stored figure stay as they are; the curves let the Predict page
say what the thresholds measured and let a server's [refer] target_accuracy apply to it.

    .venv/bin/python scripts/add_operating_curves.py models/default.keras --data $BRAINCLF_DATA \
        --extra-data ../shared/data/external-radiopaedia
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from brainclf.errors import BrainclfError  # noqa: E402
from brainclf.evaluation import PRIMARY, operating_curves, validation_samples  # noqa: E402
from brainclf.inference import Predictor  # noqa: E402
from brainclf.model import card_path  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model", type=Path, help="the .keras file (its card beside it is rewritten)")
    ap.add_argument("--data", type=Path, required=True, help="the primary dataset's root")
    ap.add_argument("--extra-data", type=Path, action="append", default=[], help="an extra source's folder")
    args = ap.parse_args(argv)
    roots = {PRIMARY: args.data, **{p.resolve().name: p for p in args.extra_data}}
    try:
        predictor = Predictor.load(args.model)
        samples = validation_samples(predictor.card, roots)
        card = predictor.card
        for suffix, tta in (("", False), ("_tta", True)):
            card.calibration[f"operating{suffix}"] = operating_curves(predictor.with_tta(tta), samples)
        card.save(card_path(args.model))
    except BrainclfError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for source, curve in card.calibration["operating"]["curves"].items():
        print(f"{card.name}: {source} validation curve, {curve['n']} slices, {len(curve['threshold'])} cuts")
    return 0


if __name__ == "__main__":
    sys.exit(main())
