"""The starting model's own data, as its card lists it: its training images (replayed by adapt), the primary
dataset's `Testing` split (the forgetting check), and which of a site's slices the model learnt from.

A site's held-out figures mean something only on slices the model never saw: a site folder that is (or holds a
copy of) one of the model's own training sources would make "validated at SITE" a training-set score, so those
slices are left out of the site run before it is split (`learnt_from`).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .. import CLASS_NAMES
from ..data import Sample, discover
from ..data.dedup import clean_mask
from ..errors import DataError
from ..evaluation import learnt_mask, primary_files, root_holding, training_paths_for

REPLAY_MAX = 2000


def replay_samples(card, data_root: str | Path | None, part: str = "train", limit: int = REPLAY_MAX,
                   seed: int = 0) -> list[Sample]:
    """The model's own training (or, `part="val"`, validation) images of its primary source, as its card lists
    them, found under `data_root` or $BRAINCLF_DATA; at most `limit`, in random order; [] when not there."""
    rel = primary_files(card, (part,))
    root = root_holding(rel, [data_root, os.environ.get("BRAINCLF_DATA")])
    if root is None:
        return []
    samples = [Sample(root / r, CLASS_NAMES.index(Path(r).parent.name)) for r in rel
               if Path(r).parent.name in CLASS_NAMES]
    # Shuffled: any leading share of the list is a random draw over the classes.
    return [samples[i] for i in np.random.default_rng(seed).permutation(len(samples))[:limit]]


def kaggle_test_samples(data_root: str | Path | None) -> list[Sample]:
    """The primary dataset's `Testing` split (the forgetting check), or [] without one."""
    if not data_root:
        return []
    try:
        return discover(data_root).splits.get("Testing", [])
    except DataError:
        return []


def learnt_from(card, samples: list[Sample], site_root: str | Path, data_root: str | Path | None) -> np.ndarray:
    """True for each site slice the model trained or validated on: one of its files (brainclf.evaluation's
    learnt_mask, as `evaluate` leaves them out) or, where the primary training images can be found, an exact or
    near duplicate of one of them (a copy under another name). A copy of an extra source under another name is
    not caught: the card does not say where that source's folder is."""
    site_root = Path(site_root)
    training = training_paths_for(card, site_root, data_root)
    learnt = learnt_mask(card, samples, site_root, training)
    rest = np.flatnonzero(~learnt)
    if training and len(rest):
        learnt[rest] = ~clean_mask([samples[k].path for k in rest], training)
    return learnt


def replay_or_refuse(card, data_root: str | Path | None, cfg) -> list[Sample]:
    """The model's own training images to replay while adapting (`cfg`: its AdaptConfig).

    Raises:
        DataError: none were found under the data folder, and the recipe replays.
    """
    replay = replay_samples(card, data_root)
    if not replay and cfg.replay_per_site_slice > 0:
        where = (card.training.get("fingerprint") or {}).get("root_name", "unrecorded")
        raise DataError("Adapting needs the model's own training images to replay (so it keeps what it learnt): "
                        f"none of them were found under the data folder (the model was trained on {where}).")
    return replay
