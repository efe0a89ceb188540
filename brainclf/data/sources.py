"""Data sources for multi-source training: which folders, their weights and licences, and case groups.

A model trained on one source learns the source (see README, "The shortcut"), so training can add
labelled folders from other sources (`train --extra-data DIR[:WEIGHT]`). Each extra source is split on
its own into train/validation/test by *case groups*: near-duplicate groups (dedup.py) joined with
file-name series (slices of one case saved as `..._12.jpg`, `..._13.jpg`, or screenshots of one case
taken minutes apart) and with what a path says of its case (case_names.py: a patient folder, a leading
patient id), so no case straddles the split. Samples of an extra source are named
`<source>::<path relative to its folder>` in run state and cards; the primary source keeps plain
relative paths, so older runs and cards read as before.
"""

from __future__ import annotations

import itertools
import logging
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import ConfigError
from .case_names import case_folder, case_id
from .dedup import FileHashes, duplicate_groups, hash_files, linked_groups, pairs_sharing

logger = logging.getLogger(__name__)

SOURCE_SEPARATOR = "::"
# A "series" larger than this share of a source is a naming scheme (Tr-gl_0001 ... Tr-gl_1321), not one
# case: its members fall back to their near-duplicate groups.
MAX_SERIES_SHARE = 0.10
MIN_SERIES_CAP = 50
_SOURCE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")  # fullmatch: '$' would let "clinic\n" through

# Licences of the sources this project knows; any other folder may carry a LICENCE/LICENSE file.
KNOWN_LICENCES = {
    "brain-tumor-mri": "CC0 1.0 (Kaggle 'Brain Tumor MRI Dataset', M. Nickparvar); figshare part CC BY 4.0 "
                       "(Cheng et al. 2015)",
    "external-radiopaedia": "CC BY-NC-SA 3.0 (Radiopaedia.org cases): non-commercial research and evaluation "
                            "only, attribute Radiopaedia.org and its case contributors; derived models inherit "
                            "these terms",
}
NON_COMMERCIAL = ("NC",)


@dataclass(frozen=True)
class Source:
    """A labelled folder of class sub-folders taking part in training."""

    name: str
    root: Path
    weight: float = 1.0  # multiplies the loss of this source's training images

    def describe(self) -> dict:
        return {"name": self.name, "weight": self.weight, "licence": licence_of(self.root)}


def parse_extra_data(spec: str) -> Source:
    """'DIR' or 'DIR:WEIGHT' → Source named after the folder.

    Raises:
        ConfigError: a weight that is not a positive number, or a folder name unfit as a source name.
    """
    path, weight = spec, 1.0
    head, sep, tail = spec.rpartition(":")
    if sep and head and re.fullmatch(r"[0-9.eE+-]+", tail):
        try:
            weight = float(tail)
        except ValueError:
            raise ConfigError(f"--extra-data weight must be a number, got {tail!r}.") from None
        path = head
    elif sep and head and Path(head).expanduser().is_dir() and not Path(spec).expanduser().exists():
        raise ConfigError(f"--extra-data weight must be a number, got {tail[:40]!r}.")  # not a folder named 'DIR:x'
    return source_at(Path(path).expanduser(), weight, what="--extra-data weight")


def source_at(root: Path, weight: float = 1.0, what: str = "A source's weight") -> Source:
    """The labelled folder `root` as a training source named after the folder, its loss weighted `weight`.

    Raises:
        ConfigError: a weight outside (0, 100], or a folder name unfit as a source name.
    """
    if not 0 < weight <= 100:
        raise ConfigError(f"{what} must be in (0, 100], got {weight}.")
    name = Path(root).resolve().name
    if not _SOURCE_NAME.fullmatch(name):
        raise ConfigError(f"The folder name {name!r} cannot name a data source: use letters, digits, '.', '_' "
                          "or '-' (at most 64).")
    return Source(name, Path(root), weight)


def licence_of(root: Path) -> str:
    """A source's licence: a LICENCE/LICENSE file in the folder, else a known name, else 'unknown'."""
    for fname in ("LICENCE", "LICENSE", "LICENCE.txt", "LICENSE.txt"):
        f = Path(root) / fname
        if f.is_file():
            return f.read_text(errors="replace")[:300].strip()
    return KNOWN_LICENCES.get(Path(root).resolve().name, "unknown: check the source's terms before use")


def is_non_commercial(licence: str) -> bool:
    return any(tag in licence for tag in NON_COMMERCIAL)


def sample_key(source: str, rel: str) -> str:
    """How run state and cards name a file: plain for the primary source, `source::rel` for extras."""
    return f"{source}{SOURCE_SEPARATOR}{rel}" if source else rel


def split_key(key: str) -> tuple[str, str]:
    """Inverse of sample_key: (source name or '', relative path)."""
    source, sep, rel = key.partition(SOURCE_SEPARATOR)
    return (source, rel) if sep else ("", key)


_TIMESTAMP = re.compile(r"(\d{4}-\d{2}-\d{2})[_ ]\d{2}[_.]\d{2}[_.]\d{2}")
_SEQUENCE = re.compile(r"_(t1c\+|t1c|t1|t2|flair|dwi|adc)_", re.IGNORECASE)
_HASH = re.compile(r"[0-9a-f]{20,}")


def series_key(path: str | Path) -> str | None:
    """The file-name series a slice belongs to, or None when its name says nothing about its case.

    A leading patient/case id names the series by itself ('P012_s3.png' → 'p12', case_names.case_id).
    'Astrocitoma_T1C+__astro_infraT__13_.jpg' → 'astrocitoma__astro_infrat__#_'; screenshots of one case
    title on one day share a key whatever the time; names ending in a long hex hash are their own case.
    The sequence token is dropped: T1 and T2 slices of one case belong together.
    """
    named = case_id(path)
    if named:
        return named
    stem = Path(path).stem.lower()
    stem = re.sub(r"_big_gallery$", "", stem)
    if _HASH.search(stem):
        return None
    stem = _SEQUENCE.sub("_", stem)
    stem = _TIMESTAMP.sub(r"\1", stem)
    if _TIMESTAMP.search(Path(path).stem):
        return stem
    if not re.search(r"\d", stem):
        return None
    return re.sub(r"\d+", "#", stem)


@dataclass(frozen=True)
class CaseGrouping:
    """Case groups and what the caller should tell the user about them (a naming scheme left unused)."""

    groups: np.ndarray  # group id per file: equal ids = one case group that must stay on one side of a split
    warnings: tuple[str, ...] = ()


def case_grouping(paths: list[Path], near_dup_groups: np.ndarray) -> CaseGrouping:
    """Near-duplicate groups joined (union-find) with patient folders, leading patient ids and file-name series.

    A slice in a patient folder is not linked by its file name too ('slice3.png' in every patient's folder is no
    case), nor by a file-name pattern when its name starts with a patient id. A folder, id or pattern shared by
    more than MAX_SERIES_SHARE of the files is no one case (a sequence or export folder, a dataset prefix such as
    'BraTS2021_', a naming scheme): it links nothing, and a warning says so, because those slices then stay
    together only through what else names their case, or where their images are alike.

    Args:
        paths: the files of one source.
        near_dup_groups: dedup.duplicate_groups for the same files.
    """
    n = len(paths)
    cap = max(MIN_SERIES_CAP, int(MAX_SERIES_SHARE * n))
    folders, big_folders = _capped([str(f) if (f := case_folder(p)) else None for p in paths], cap)
    named = [case_id(p) for p in paths]
    ids, big_ids = _capped(named, cap)
    # A file with an id gets no name pattern even when its id was too common: the pattern (the id's own, or the
    # name with numbers generalised) would cover those same files and be dropped and reported a second time.
    series, schemes = _capped([None if folder or name else series_key(p)
                               for p, folder, name in zip(paths, folders, named)], cap)
    links = itertools.chain(pairs_sharing([int(g) for g in near_dup_groups]), pairs_sharing(folders),
                            pairs_sharing(ids), pairs_sharing(series))
    said = [*(_scheme_warning(f"sub-folder '{Path(k).parent.name}/{Path(k).name}'", c, n, cap)
              for k, c in big_folders.items()),
            *(_scheme_warning(f"leading id '{k}'", c, n, cap) for k, c in big_ids.items()),
            *(_scheme_warning(f"file-name pattern '{k}' ('#' stands for any number)", c, n, cap)
              for k, c in schemes.items())]
    return CaseGrouping(linked_groups(n, links), tuple(said))


def _capped(keys: list[str | None], cap: int) -> tuple[list[str | None], dict[str, int]]:
    """`keys` with those held by more than `cap` files set to None (no one case holds so many), and those keys
    with their counts."""
    too_many = {k: c for k, c in Counter(k for k in keys if k is not None).items() if c > cap}
    return [None if k in too_many else k for k in keys], too_many


def _scheme_warning(what: str, count: int, n: int, cap: int) -> str:
    return (f"{count} of {n} slices share the {what}, more than one case could hold (at most {cap}), so it was "
            "not used to group them: they stay together only through what else names their case, or where their "
            "images are near duplicates or neighbouring slices. If one patient's slices can look unalike, put "
            "each patient in a sub-folder of its class folder (glioma/P012/slice3.png) or start the names with a "
            "patient id (P012_s3.png).")


def _logged(grouping: CaseGrouping) -> CaseGrouping:
    for warning in grouping.warnings:
        logger.warning("Case groups: %s", warning)
    return grouping


# Neighbouring slices of one case: within this many of the 256 dHash bits (dedup.NEAR_DUP_THRESHOLD, 12, is for
# re-encodings of one slice). Radiopaedia slices named by a hash have no file-name series, and at 12 bits 106 of
# default_split's 427 external held-out slices had a neighbour of their own case in training within 25 bits (seen
# side by side: the same patient and lesion a slice apart); at 25 bits no Radiopaedia case group mixes classes but
# one. Grouping by it since 2026-12-06: earlier runs' stored splits keep the 12-bit groups.
SAME_CASE_THRESHOLD = 25
GROUPED_SINCE = "2026-12-06"  # runs started on or after it split by SAME_CASE_THRESHOLD (RunState.started)


def file_case_grouping(paths: list[Path], progress: Callable[[int, int], None] | None = None,
                       threshold: int = SAME_CASE_THRESHOLD, hashes: FileHashes | None = None) -> CaseGrouping:
    """case_grouping of files on disk: groups of perceptual hashes within `threshold` bits (neighbouring slices of
    one case) joined with patient folders, patient ids and file-name series; with its warnings to show. `hashes`:
    the files' hashes where the caller has just taken them (not read again)."""
    return case_grouping(paths, duplicate_groups(hash_files(paths, progress) if hashes is None else hashes,
                                                 threshold))


def file_case_groups(paths: list[Path], progress: Callable[[int, int], None] | None = None,
                     threshold: int = SAME_CASE_THRESHOLD) -> np.ndarray:
    """file_case_grouping's group id per file; its warnings are logged."""
    return _logged(file_case_grouping(paths, progress, threshold)).groups
