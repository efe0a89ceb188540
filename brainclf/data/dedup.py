"""Exact and near-duplicate detection, so that near-twins never straddle train/validation/test.

Near duplicates are found with a 16x16 difference hash (256 bits): the image is reduced to 17x16
grayscale and each bit says whether a pixel is brighter than its right neighbour. Two images are near
duplicates when their hashes differ in at most NEAR_DUP_THRESHOLD of the 256 bits. The threshold sits
in the valley of this dataset's histogram of each Testing image's distance to its nearest Training
image (measured: 0 bits: 255 images, 1-2: 106, 3-5: 86, 6-10: 42, 11-15: 24, 16-20: 61, 21-25: 83,
26-30: 101, 31-40: 139): the first mode is the same slice re-encoded, rescaled or slightly shifted;
the second, from ~16 bits on, is different slices that merely look alike.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import ConfigError, ImageError
from ..input.preprocess import decode_image, pad_to_square, to_8bit
from ..input.reading import read_image_file
from .pool import decode_many

HASH_SIZE = 16
NEAR_DUP_THRESHOLD = 12  # Hamming distance, out of HASH_SIZE * HASH_SIZE = 256 bits
# The most a report accepts (the CLI's --threshold says the same): past ~64 bits nearly every pair of slices is
# "near" and the report would hold millions of pairs (a 5,700-image folder at 256 ran out of memory).
MAX_NEAR_THRESHOLD = 64
EXAMPLES_KEPT = 1000  # example pairs a report keeps per category (conflicts first), whatever the number of pairs


def dhash(img: Image.Image, hash_size: int = HASH_SIZE) -> np.ndarray:
    """Difference hash: `hash_size`² booleans packed into bytes."""
    gray = pad_to_square(to_8bit(img).convert("L"))
    small = np.asarray(gray.resize((hash_size + 1, hash_size), Image.Resampling.BILINEAR), dtype=np.int16)
    bits = small[:, 1:] > small[:, :-1]
    return np.packbits(bits.ravel())


@dataclass
class FileHashes:
    paths: list[Path]
    sha256: list[str]  # of the file bytes: exact duplicates
    dhash: np.ndarray  # (n, 32) uint8: near duplicates
    readable: np.ndarray  # (n,) bool: an unreadable file's zero hash is no image's, so it is near nothing

    def subset(self, indices) -> FileHashes:
        """The hashes of the files at `indices`, in that order."""
        return FileHashes([self.paths[i] for i in indices], [self.sha256[i] for i in indices],
                          self.dhash[np.asarray(indices, int)], self.readable[np.asarray(indices, int)])

    def near(self, threshold: int = NEAR_DUP_THRESHOLD) -> list[tuple[int, int, int]]:
        """near_pairs among the readable files (indices into paths)."""
        return [p for p in near_pairs(self.dhash, threshold=threshold) if self.readable[p[0]] and self.readable[p[1]]]


# Each file's hashes by (path, size, modification and change times, device, inode), for the life of the process: an
# evaluation's clean subset hashes the model's ~7,000 training images (15 s on 2 cores) and a server's next
# evaluation needs them again. A write, chmod or touch changes the change time, so such a file gets another key.
# About 700 bytes an entry: the cap keeps it near 35 MB.
_SEEN: OrderedDict[tuple, tuple[str | None, np.ndarray, bool]] = OrderedDict()
_SEEN_MAX = 50_000
_SEEN_LOCK = threading.Lock()
# Modification times tick every few milliseconds: a file rewritten within one tick keeps its key ("racy git"), so
# only files unchanged for this long are remembered.
_SETTLED_NS = 2_000_000_000


def _hash_one(p: Path) -> tuple[str | None, np.ndarray, bool]:
    """(SHA-256 of the bytes, dHash, decodable) of one file; an unreadable file: (None, zeros, False)."""
    none = np.zeros(HASH_SIZE * HASH_SIZE // 8, np.uint8)
    try:
        st = os.stat(p)
        key = (os.fspath(p), st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_dev, st.st_ino)
        with _SEEN_LOCK:
            if key in _SEEN:
                _SEEN.move_to_end(key)
                return _SEEN[key]
        data = read_image_file(p)  # a regular file within the one-file limit, as every image read from disk
    except (OSError, ImageError):  # gone, unreadable or over the limit: no exact or near duplicate of anything
        return None, none, False
    try:
        found = hashlib.sha256(data).hexdigest(), dhash(decode_image(data, name=Path(p).name)), True
    except ImageError:
        found = hashlib.sha256(data).hexdigest(), none, False
    if time.time_ns() - max(st.st_mtime_ns, st.st_ctime_ns) > _SETTLED_NS:  # one changed this instant could again
        with _SEEN_LOCK:
            _SEEN[key] = found
            while len(_SEEN) > _SEEN_MAX:
                _SEEN.popitem(last=False)
    return found


def hash_files(paths: Sequence[Path], progress: Callable[[int, int], None] | None = None) -> FileHashes:

    shas, hashes, readable = [], [], []
    for s, h, ok in decode_many(paths, _hash_one, progress=progress):
        shas.append(s)
        hashes.append(h)
        readable.append(ok)
    arr = np.stack(hashes) if hashes else np.zeros((0, HASH_SIZE * HASH_SIZE // 8), np.uint8)
    return FileHashes(list(paths), shas, arr, np.array(readable, bool))


_POPCOUNT = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint16)


def hamming_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise Hamming distances between packed hashes a (n, k) and b (m, k) → (n, m) uint16."""
    out = np.zeros((len(a), len(b)), dtype=np.uint16)
    for j in range(a.shape[1]):
        out += _POPCOUNT[np.bitwise_xor(a[:, j][:, None], b[:, j][None, :])]
    return out


def near_pairs(a: np.ndarray, b: np.ndarray | None = None, threshold: int = NEAR_DUP_THRESHOLD,
               chunk: int = 1024) -> list[tuple[int, int, int]]:
    """All (i, j, distance) with distance <= threshold; within `a` (i < j) when b is None."""
    same = b is None
    b = a if b is None else b
    pairs = []
    for start in range(0, len(a), chunk):
        d = hamming_matrix(a[start:start + chunk], b)
        ii, jj = np.nonzero(d <= threshold)
        for i, j in zip(ii + start, jj):
            if not same or i < j:
                pairs.append((int(i), int(j), int(d[i - start, j])))
    return pairs


def linked_groups(n: int, pairs: Iterable[tuple[int, int]]) -> np.ndarray:
    """Group id per item 0..n-1: items linked by a chain of pairs share a group (union-find; the id is the
    group's smallest index)."""
    parent = list(range(n))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, j in pairs:
        ri, rj = find(i), find(j)
        if ri != rj:
            parent[max(ri, rj)] = min(ri, rj)
    return np.array([find(i) for i in range(n)], dtype=int)


def pairs_sharing(labels: Sequence) -> Iterator[tuple[int, int]]:
    """(first index, index) for every item whose label (not None) an earlier item already had."""
    first: dict = {}
    for i, label in enumerate(labels):
        if label is not None:
            if label in first:
                yield first[label], i
            else:
                first[label] = i


def duplicate_groups(hashes: FileHashes, threshold: int = NEAR_DUP_THRESHOLD) -> np.ndarray:
    """Group id per file: files linked by an exact or near duplicate chain share a group (union-find)."""
    near = ((i, j) for i, j, _ in hashes.near(threshold))
    return linked_groups(len(hashes.paths), itertools.chain(pairs_sharing(hashes.sha256), near))


def clean_mask(paths: Sequence[Path], training_paths: Sequence[Path],
               threshold: int = NEAR_DUP_THRESHOLD) -> np.ndarray:
    """True for each image with no exact or near duplicate among `training_paths` (the clean subset)."""
    test, train = hash_files(paths), hash_files(training_paths)
    known = set(train.sha256) - {None}
    exact = np.array([s in known for s in test.sha256], bool)
    if not train.readable.any():
        return ~exact
    near = (nearest_distance(test.dhash, train.dhash[train.readable]) <= threshold) & test.readable
    return ~(exact | near)


def nearest_distance(a: np.ndarray, b: np.ndarray, chunk: int = 1024) -> np.ndarray:
    """Each hash of `a`'s Hamming distance to its nearest in `b` (non-empty), `chunk` rows of `a` at a time: a
    whole matrix for a 100,000-image folder against 7,000 training images would take 1.4 GB, a chunk 14 MB."""
    nearest = np.empty(len(a), np.uint16)
    for start in range(0, len(a), chunk):
        nearest[start:start + chunk] = hamming_matrix(a[start:start + chunk], b).min(1)
    return nearest


def dedup_report(ds, threshold: int | None = None, progress: Callable[[int, int], None] | None = None) -> dict:
    """Exact and near duplicates within each split and across each pair of splits.

    Args:
        ds: a discovered dataset (brainclf.data.datasets.discover): `.root` and `.splits` of samples with `.path`
            and `.label` (taken as an argument so that this module does not import data.py: no cycle).
    """
    threshold = NEAR_DUP_THRESHOLD if threshold is None else threshold
    if not 0 <= threshold <= MAX_NEAR_THRESHOLD:
        raise ConfigError(f"The near-duplicate threshold must be between 0 and {MAX_NEAR_THRESHOLD} bits of 256, got "
                          f"{threshold}.")
    root = Path(ds.root)
    names = list(ds.splits)
    samples = ds.all_samples()
    hashes = hash_files([s.path for s in samples], progress)
    split_of = np.array([n for n in names for _ in ds.splits[n]])
    label_of = np.array([s.label for s in samples])
    rel = [_listed_path(s.path, root) for s in samples]
    exact = [(first, i, 0) for first, i in pairs_sharing(hashes.sha256)]
    near = hashes.near(threshold)
    cats = _pair_categories({"exact": exact, "near": near}, split_of, label_of, rel)
    report = {"root": str(root), "threshold": threshold, "hash": f"dhash {HASH_SIZE}x{HASH_SIZE}",
              "splits": {n or "all": len(ds.splits[n]) for n in names}, "pairs": cats,
              "groups": int(len(set(duplicate_groups(hashes, threshold)))), "files": len(samples),
              "unreadable": [r for r, ok in zip(rel, hashes.readable) if not ok]}
    train = next((n for n in names if n.lower() in ("training", "train")), None)
    if train is not None:
        ok, of_train = hashes.readable, (split_of == train) & hashes.readable
        report["leakage"] = {n: _leakage(hashes.dhash[(split_of == n) & ok], hashes.dhash[of_train], threshold)
                             for n in names if n != train}
    return report


def _listed_path(path: Path, root: Path) -> str:
    """A file's path as listed under `root`, relative to it and not resolved: a file linked from elsewhere keeps its
    place in the folder (its target may lie outside `root`)."""
    try:
        return Path(os.path.abspath(path)).relative_to(os.path.abspath(root)).as_posix()
    except ValueError:  # not listed under root after all: its own path
        return Path(path).as_posix()


def _pair_categories(pairs_by_kind: dict[str, list], split_of: np.ndarray, label_of: np.ndarray,
                     rel: list[str]) -> dict[str, dict]:
    """Duplicate pairs counted per split or pair of splits ('Testing x Training'), with up to EXAMPLES_KEPT
    examples each (label conflicts first, then the closest): the pairs are counted, not all kept."""
    def key(i, j):
        a, b = sorted((split_of[i] or "all", split_of[j] or "all"))
        return a if a == b else f"{a} x {b}"

    cats: dict[str, dict] = {}
    for kind, pairs in pairs_by_kind.items():
        for i, j, d in pairs:
            c = cats.setdefault(key(i, j), {"exact_pairs": 0, "near_pairs": 0, "label_conflicts": 0, "examples": []})
            c[f"{kind}_pairs"] += 1
            conflict = label_of[i] != label_of[j]
            c["label_conflicts"] += int(conflict and kind == "near")
            c["examples"].append({"a": rel[i], "b": rel[j], "distance": d, "same_label": not conflict})
            if len(c["examples"]) >= 2 * EXAMPLES_KEPT:  # trimmed now and then: bounded, and cheap
                _keep_best(c)
    for c in cats.values():
        _keep_best(c)
    return cats


def _keep_best(category: dict) -> None:
    """A category's examples sorted (conflicts first, then by distance; stable) and cut to EXAMPLES_KEPT."""
    category["examples"].sort(key=lambda e: (e["same_label"], e["distance"]))
    del category["examples"][EXAMPLES_KEPT:]


_LEAKAGE_EDGES = [0, 1, 3, 6, 11, 16, 21, 31, 51, 257]


def _leakage(split: np.ndarray, training: np.ndarray, threshold: int) -> dict:
    """How many hashes of a split have a near duplicate among the training hashes, and the histogram of
    each one's distance to its nearest training image."""
    if not len(training):  # no readable training image: nothing can leak
        dmin = np.full(len(split), 256)
    else:
        dmin = nearest_distance(split, training)
    return {"n": len(split), "with_near_duplicate_in_training": int((dmin <= threshold).sum()),
            "clean": int((dmin > threshold).sum()),
            "nearest_distance_histogram": {"edges": _LEAKAGE_EDGES,
                                           "counts": np.histogram(dmin, bins=_LEAKAGE_EDGES)[0].tolist()}}


def format_dedup_report(report: dict, show: int = 10) -> str:
    lines = [f"{report['files']} files in {report['root']}  ({report['hash']}, near = Hamming <= "
             f"{report['threshold']}/256)", f"splits: {report['splits']}",
             f"duplicate groups: {report['groups']} (a group = files linked by exact or near duplicates)", ""]
    if report.get("unreadable"):
        lines.append(f"unreadable (left out of near duplicates): {len(report['unreadable'])}, e.g. "
                     + ", ".join(report["unreadable"][:show]))
    if not report["pairs"]:
        lines.append("no exact or near duplicates found")
    for name, c in sorted(report["pairs"].items()):
        lines.append(f"{name}: {c['exact_pairs']} exact pairs, {c['near_pairs']} near pairs "
                     f"({c['label_conflicts']} near pairs with different labels)")
        for e in c["examples"][:show]:
            flag = "" if e["same_label"] else "  [LABEL CONFLICT]"
            lines.append(f"    {e['distance']:>3}  {e['a']}  ~  {e['b']}{flag}")
    for name, lk in report.get("leakage", {}).items():
        lines += ["", f"{name}: {lk['with_near_duplicate_in_training']} of {lk['n']} images have a near duplicate "
                  f"in training; clean subset: {lk['clean']}"]
    return "\n".join(lines)
