"""A site's labelled slices: found, checked for size, and split by case groups into the three parts the
site workflow uses.

    adaptation part = "tune" (fine-tuning) + "calibration" (temperature, refer rule, epoch choice)
    held-out part   = "heldout" (never used for anything but the before/after figures)

The split is the one `train --extra-data` makes for an extra source (brainclf.data.datasets.split_extra_source: case
groups of near duplicates and file-name series never straddle it), with the same fractions and seed, so the
held-out part of a site measured here is the held-out part a from-scratch multi-source training reports.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .. import CLASS_NAMES, DISPLAY_NAMES
from ..data import Sample, discover, fingerprint, relative_path, split_extra_source
from ..data.dedup import hash_files
from ..data.sources import file_case_grouping
from ..errors import ConfigError, DataError, ImageError
from ..input.reading import read_image_file
from ..model.card import check_card_rows

CALIBRATION_FRACTION = 0.15
HELDOUT_FRACTION = 0.30
SEED = 42
# Below these a held-out figure says nothing: ~20 held-out slices in ~4 case groups would give an accuracy
# interval wider than ±20 points.
MIN_SLICES = 60
MIN_GROUPS = 12
# A class needs a case group in each part; the calibration part takes 15 % of them, so about 7 give it one (3 passed
# this check and then failed the split, check_parts, with another number).
MIN_GROUPS_PER_CLASS = 7
SITE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,47}")  # fullmatch: "$" would let a final newline in
PARTS = ("tune", "calibration", "heldout")


@dataclass
class SiteSplit:
    """The site's parts (lists of Samples), the folder they came from and its fingerprint."""

    name: str
    root: Path
    parts: dict[str, list[Sample]]
    groups: int
    fingerprint: dict
    # Slices not used (relative paths), by reason: "learnt" (the model's own training images), "same_case" (the rest
    # of their case groups), "unreadable".
    left_out: dict[str, list[str]] = field(default_factory=dict)
    # What the case grouping could not use (a file-name scheme shared by too many slices), to say beside the split.
    warnings: list[str] = field(default_factory=list)

    @property
    def adaptation(self) -> list[Sample]:
        return self.parts["tune"] + self.parts["calibration"]

    def counts(self) -> dict[str, int]:
        return {part: len(samples) for part, samples in self.parts.items()}

    def classes(self) -> list[str]:
        present = {s.label for samples in self.parts.values() for s in samples}
        return [c for i, c in enumerate(CLASS_NAMES) if i in present]

    def to_dict(self) -> dict:
        """The split as relative paths (run state, card): reading it back needs only the folder."""
        parts = {part: [relative_path(s.path, self.root) for s in samples] for part, samples in self.parts.items()}
        return {**parts, "left_out": self.left_out, "warnings": self.warnings}


def check_site_name(name: str) -> str:
    if not isinstance(name, str) or not SITE_NAME.fullmatch(name):
        raise DataError("A site name is 1-48 ASCII letters, digits, '.', '_' or '-' (starting with a letter or "
                        f"digit); got {str(name)[:60]!r}.")
    return name


def check_enough(samples: list[Sample], groups) -> None:
    """Refuse a site set too small to validate, saying what is needed.

    Raises:
        DataError: fewer than MIN_SLICES slices or MIN_GROUPS case groups, or a class with too few case groups.
    """
    n_groups = len(set(groups.tolist()))
    need = (f"A site set needs at least {MIN_SLICES} labelled slices from at least {MIN_GROUPS} different cases, "
            f"and {MIN_GROUPS_PER_CLASS} cases of each class it holds (so each class has cases in the "
            "adaptation and the held-out part)")
    if len(samples) < MIN_SLICES or n_groups < MIN_GROUPS:
        raise DataError(f"{need}; this one has {len(samples)} slices in {n_groups} case groups.")
    per_class = Counter()
    for label, _group in set(zip((s.label for s in samples), groups.tolist())):
        per_class[label] += 1
    thin = [f"{DISPLAY_NAMES[CLASS_NAMES[c]]} ({k})" for c, k in sorted(per_class.items()) if k < MIN_GROUPS_PER_CLASS]
    if thin:
        raise DataError(f"{need}; too few cases of {', '.join(thin)}: add cases or leave that class folder out.")


def check_parts(parts: dict[str, list[Sample]]) -> None:
    """Every class the site holds must have slices in every part: the calibration part fits the refer rule and
    picks the adapted epoch, the held-out part measures; a class missing from one is neither fitted nor measured.

    Raises:
        DataError: naming the classes and parts that lack them.
    """
    check_card_rows({"the held-out part": parts["heldout"]})
    present = {s.label for samples in parts.values() for s in samples}
    missing = [f"{DISPLAY_NAMES[CLASS_NAMES[c]]} (none in the {part} part)" for c in sorted(present)
               for part, samples in parts.items() if c not in {s.label for s in samples}]
    if missing:
        raise DataError(f"Split by case, this site set leaves a class out of a part: {', '.join(missing)}. Add cases "
                        f"of that class (at least {MIN_GROUPS_PER_CLASS} give each part one) or leave its folder out.")


def split_site(root: str | Path, name: str, progress=None, exclude=None) -> SiteSplit:
    """Find the site's class folders (any subset of the classes), leave out unreadable slices and those
    `exclude(samples)` marks (the model's own training images), check there are enough, split by case groups.

    Raises:
        DataError: no class folders or images, a bad site name, or a set too small to validate.
    """
    check_site_name(name)
    root = Path(root)
    samples = discover(root, source=name).all_samples()
    if progress:
        progress(0, 1)  # said (and a cancel heard) before the check against the model's own images, which has none
    learnt = exclude(samples) if exclude and samples else [False] * len(samples)
    hashed = hash_files([s.path for s in samples], progress) if samples else None
    readable = hashed.readable if hashed else []
    sha_of = dict(zip(map(str, hashed.paths), hashed.sha256)) if hashed else {}  # the fingerprint reuses them
    # Grouped with the learnt slices, so the rest of a case the model learnt from is left out too: such a case's
    # other slices are no new patient (neighbouring slices read as well as the one learnt, "Results" in README).
    usable = [(s, bool(own)) for s, own, ok in zip(samples, learnt, readable) if ok]
    # Grouped by case from the hashes just taken, not read again.
    grouping = file_case_grouping([s.path for s, _ in usable],
                                  hashes=hashed.subset(np.flatnonzero(readable)) if hashed else None)
    seen_cases = {int(g) for (_, own), g in zip(usable, grouping.groups) if own}
    same_case = np.array([not own and int(g) in seen_cases for (_, own), g in zip(usable, grouping.groups)], bool)
    keep = np.array([not own for _, own in usable], bool) & ~same_case
    kept, groups = [s for (s, _), k in zip(usable, keep) if k], grouping.groups[keep]
    left_out = {"learnt": [relative_path(s.path, root) for s, own in zip(samples, learnt) if own],
                "same_case": [relative_path(s.path, root) for (s, _), sc in zip(usable, same_case) if sc],
                "unreadable": [relative_path(s.path, root) for s, own, ok in zip(samples, learnt, readable)
                               if not ok and not own]}
    try:
        check_enough(kept, groups)
        splits = split_extra_source(kept, CALIBRATION_FRACTION, HELDOUT_FRACTION, SEED)
        parts = {"tune": splits.train, "calibration": splits.val, "heldout": splits.test}
        check_parts(parts)
    except (DataError, ConfigError) as e:
        raise DataError(f"{e}{left_out_words(left_out)}") from None
    return SiteSplit(name, root, parts, len(set(groups.tolist())), _fingerprint(root, parts, sha_of), left_out,
                     list(grouping.warnings))


def check_adaptable(split: SiteSplit) -> None:
    """Fine-tuning needs tumour and no-tumour slices in the tuning part: a review's site of normals only, adapted,
    called every one of that site's tumours 'no tumour' while its held-out figure rose to 100 %.

    Raises:
        DataError: the tuning part lacks one side; validate works with any classes, calibrate with tumours.
    """
    labels = {s.label for s in split.parts["tune"]}
    notumor = CLASS_NAMES.index("notumor")
    if notumor not in labels or not labels - {notumor}:
        missing = "no-tumour" if notumor not in labels else "tumour"
        raise DataError(f"Adapting needs both tumour and no-tumour slices from the site: its tuning part has no "
                        f"{missing} slices, and fine-tuning on one side teaches the model to give that answer to "
                        "everything from this site. Validate works with any classes (calibrate needs tumour "
                        "slices); add cases of the missing kind to adapt.")


def check_calibratable(split: SiteSplit) -> None:
    """A site profile's refer rule needs tumour slices in the adaptation part: its strict bar for "no tumour" is
    set by the tumours the model called "no tumour" there. A review's site of normals only, calibrated, had no
    such tumour, so the bar fell to the others' and a temperature fitted on normals alone (0.46) sharpened every
    answer: a later tumour read as "no tumour" at 0.75 was answered, where the starting model referred it.

    Raises:
        DataError: the adaptation part has no tumour slices; validate works with any classes.
    """
    notumor = CLASS_NAMES.index("notumor")
    if all(s.label == notumor for s in split.adaptation):
        raise DataError("Calibrating needs tumour slices from the site: the refer rule's bar for 'no tumour' is set "
                        "by the tumours the model calls 'no tumour', and this site's adaptation part has none (a "
                        "profile fitted on normals alone would answer tumours its starting model refers). Validate "
                        "works with any classes; add tumour cases to calibrate.")


LEFT_OUT_REASONS = {"learnt": "the model trained or validated on", "same_case": "more of cases the model learnt from",
                    "unreadable": "unreadable"}


def left_out_words(left_out: dict[str, list[str]] | None) -> str:
    """' (Left out of this site run: …)' for a message, or '' when nothing was."""
    said = [f"{len(rels)} {LEFT_OUT_REASONS.get(why, why)}" for why, rels in (left_out or {}).items() if rels]
    total = sum(len(rels) for rels in (left_out or {}).values())
    listed = ", ".join(said[:-1]) + f" and {said[-1]}" if len(said) > 1 else "".join(said)
    return f" (Left out of this site run: {listed} {'slice' if total == 1 else 'slices'}.)" if said else ""


def _fingerprint(root: Path, parts: dict[str, list[Sample]], sha_of: dict[str, str] | None = None) -> dict:
    """The data's fingerprint (counts, file list) and a hash of the parts' file contents: a slice replaced under
    the same name changes it. `sha_of`: file hashes already computed (by path), so a split reads each file once."""
    def sha(path) -> str:
        return (sha_of or {}).get(str(path)) or hashlib.sha256(read_image_file(path)).hexdigest()

    try:
        listing = sorted(f"{part}:{relative_path(s.path, root)}:{sha(s.path)}"
                         for part, samples in parts.items() for s in samples)
    except (OSError, ImageError):
        raise DataError("A slice of the site folder can no longer be read (moved or its permissions changed while "
                        "the site run read it): give another site name (from the command line: or another "
                        "--run-dir) for a new site run once the folder is settled.") from None
    return {**fingerprint(root, parts), "content_sha256": hashlib.sha256("\n".join(listing).encode()).hexdigest()}


def saved_split(root: str | Path, name: str, saved: dict, content_sha256: str | None = None) -> SiteSplit:
    """A split recorded by to_dict, read back from the folder; refuses one whose files changed (`content_sha256`:
    the recorded fingerprint's, when it has one: contents changed under the same names too).

    Raises:
        DataError: a recorded file is gone or now holds other bytes, or the folder holds files the split does
            not know.
    """
    root = Path(root)
    by_rel = {relative_path(s.path, root): s for s in discover(root, source=name).all_samples()}
    left_out = saved.get("left_out") or {}
    recorded = {rel for part in PARTS for rel in saved.get(part, [])} | {r for rels in left_out.values() for r in rels}
    if recorded != set(by_rel):
        gone, new = len(recorded - set(by_rel)), len(set(by_rel) - recorded)
        raise DataError(f"The site folder changed since this site run split it ({gone} slices gone, {new} new): "
                        "give another site name (from the command line: or another --run-dir) for a new site run "
                        "with the new set.")
    parts = {part: [by_rel[rel] for rel in saved[part]] for part in PARTS}
    now = _fingerprint(root, parts)
    if content_sha256 and now["content_sha256"] != content_sha256:
        raise DataError("Slices in the site folder were replaced since this site run split it (the same file names, "
                        "other contents): give another site name (from the command line: or another --run-dir) for "
                        "a new site run with them.")
    return SiteSplit(name, root, parts, int(saved.get("groups", 0)), now, left_out, list(saved.get("warnings") or []))
