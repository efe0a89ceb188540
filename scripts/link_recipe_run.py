"""Record in a refit model's card the external held-out figures of its recipe's split run (brainclf.training.refit).

    .venv/bin/python scripts/link_recipe_run.py runs/refit_models/REFIT.keras models/SPLIT.keras
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from brainclf.errors import BrainclfError  # noqa: E402
from brainclf.model import card_path, read_card  # noqa: E402
from brainclf.training.refit import link_recipe_run  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("refit", type=Path, help="the --refit model (.keras; its card is rewritten)")
    ap.add_argument("split", type=Path, help="the split run of the same recipe (.keras)")
    args = ap.parse_args(argv)
    try:
        refit, split = read_card(args.refit), read_card(args.split)
        refit.extra = {**(refit.extra or {}), "recipe_run": link_recipe_run(refit, split)}
    except BrainclfError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    refit.save(card_path(args.refit))
    print(f"{refit.name}: recipe run {split.name} recorded ({', '.join(refit.extra['recipe_run']['external'])})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
