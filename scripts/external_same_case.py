"""How much of a split run's external held-out figure comes from neighbouring slices of cases it trained on.

The extra sources are split by case groups: near duplicates (perceptual hash within NEAR_DUP_THRESHOLD bits of
256) joined with file-name series. Radiopaedia slices named by a hash have no series, and neighbouring slices of
one case differ by more than that threshold, so some held-out slices have a neighbour of their own case in
training. This prints, per model, the held-out accuracy overall and on the held-out slices with no training or
validation slice of the same source within D bits (the card's per-image rows; no prediction is run).

    .venv/bin/python scripts/external_same_case.py MODEL.keras... --extra-data ../shared/data/external-radiopaedia \
        [--bits 16 20 25]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from brainclf.data.dedup import hamming_matrix, hash_files  # noqa: E402
from brainclf.data.sources import split_key  # noqa: E402
from brainclf.model import read_card  # noqa: E402


def nearest_development_bits(card, root: Path) -> tuple[np.ndarray, np.ndarray]:
    """(each held-out row's distance in bits to the nearest training/validation slice of its source, right)."""
    files = card.training.get("files") or {}
    dev = [root / rel for key in files.get("train", []) + files.get("val", [])
           for source, rel in [split_key(str(key))] if source == root.name]
    rows = card.external_predictions.get(root.name) or []
    if not dev or not rows:
        raise SystemExit(f"{card.name}: no {root.name} training files or held-out rows in its card")
    held = hash_files([root / r["path"] for r in rows])
    bits = hamming_matrix(held.dhash, hash_files(dev).dhash).min(1)
    return bits, np.array([r["true"] == r["pred"] for r in rows])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("models", nargs="+", type=Path)
    ap.add_argument("--extra-data", type=Path, required=True, help="the extra source's folder")
    ap.add_argument("--bits", type=int, nargs="+", default=[16, 20, 25])
    args = ap.parse_args(argv)
    root = args.extra_data.resolve()
    for path in args.models:
        card = read_card(path)
        bits, right = nearest_development_bits(card, root)
        print(f"{card.name}: external held-out {right.mean():.1%} of {len(right)}")
        for d in args.bits:
            far = bits > d
            print(f"  {int((~far).sum())} held-out slices have a development slice within {d} bits "
                  f"({_share(right[~far])} right); the other {int(far.sum())}: {_share(right[far])}")
    return 0


def _share(right: np.ndarray) -> str:
    return f"{right.mean():.1%}" if len(right) else "—"


if __name__ == "__main__":
    sys.exit(main())
