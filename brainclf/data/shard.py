"""Batch prediction across machines: a stable hash of each file's path picks its shard, and merge_csvs joins
the shard CSVs into one, reporting files predicted twice or not at all.

`predict --folder DIR --csv OUT --shard I/N` predicts the files whose path relative to DIR hashes (SHA-256)
to I modulo N. The hash depends on nothing but that relative path, so N processes on N machines, each with
the archive mounted anywhere, cover it exactly once without talking to each other, and each shard's CSV
resumes like an unsharded one.
"""

from __future__ import annotations

import csv
import hashlib
import logging
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ConfigError, DataError
from ..escaping import csv_value
from ..files import write_csv_atomically
from ..input.preprocess import UPLOAD_SUFFIXES

log = logging.getLogger(__name__)
_SHARD_SPEC = re.compile(r"\s*(-?\d+)\s*/\s*(-?\d+)\s*")


def parse_shard(spec: str) -> tuple[int, int]:
    """Parse an "I/N" shard spec (0-based I).

    Args:
        spec: the text given to --shard, e.g. "0/4" or "3/4".

    Returns:
        (index, count) with 0 <= index < count.

    Raises:
        ConfigError: the text is not I/N with integers, N < 1, or I is outside 0..N-1.
    """
    m = _SHARD_SPEC.fullmatch(str(spec))
    if not m:
        raise ConfigError(f"--shard must be I/N with whole numbers, shard I (0-based) of N, e.g. 0/4; got {spec!r}.")
    index, count = int(m.group(1)), int(m.group(2))
    if count < 1:
        raise ConfigError(f"--shard {spec}: the number of shards N must be at least 1, got {count}.")
    if not 0 <= index < count:
        raise ConfigError(f"--shard {spec}: the shard index I must be between 0 and {count - 1} (0-based); "
                          f"got {index}. A 1-based array index (Slurm --array=1-{count}) needs I minus 1.")
    return index, count


def shard_of(rel: str, count: int) -> int:
    """The shard of one file: SHA-256 of its relative path, first 8 bytes as an integer, modulo `count`.

    Python's hash() is salted per process; this is the same on every machine and Python version.

    Args:
        rel: the file's path relative to the predicted folder, with "/" separators (as in the CSV).
        count: the number of shards, at least 1.

    Returns:
        An integer in 0..count-1.
    """
    digest = hashlib.sha256(rel.encode("utf-8", "surrogateescape")).digest()
    return int.from_bytes(digest[:8], "big") % count


def in_shard(rel: str, shard: tuple[int, int] | None) -> bool:
    """Whether the file `rel` belongs to `shard` ((index, count); None: every file does).

    Args:
        rel: the file's path relative to the predicted folder, "/"-separated.
        shard: (index, count) from parse_shard, or None for no sharding.

    Returns:
        True when the file is this shard's to predict.
    """
    return shard is None or shard_of(rel, shard[1]) == shard[0]


def iter_image_files(folder: str | Path, quiet: bool = False):
    """Image files under `folder` (recursive, sorted per directory), yielded lazily: 100,000 files are
    never listed in memory at once. Links to folders are not followed (a link back to a parent would loop; the
    evaluation's walk does not follow them either, so both see the same files). A sub-folder that cannot be listed
    (no permission) is skipped with a logged warning naming it (unless `quiet`): one locked folder of an archive
    does not stop the rest; `folder` itself unlisted raises its OSError."""
    stack = [Path(folder)]
    while stack:
        d = stack.pop()
        try:
            with os.scandir(d) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as e:
            if d == Path(folder):
                raise
            if not quiet:
                log.warning("warning: skipped %s, which cannot be listed (%s): its images are left out", d,
                            e.strerror or e)
            continue
        for e in reversed([e for e in entries if e.is_dir(follow_symlinks=False)]):
            stack.append(Path(e.path))
        for e in entries:
            if e.is_file() and e.name.lower().endswith(UPLOAD_SUFFIXES):
                yield Path(e.path)


def iter_shard_files(folder: str | os.PathLike, shard: tuple[int, int] | None, quiet: bool = False) -> Iterator[Path]:
    """The image files under `folder` (iter_image_files order) that belong to `shard`.

    Args:
        folder: the folder being predicted.
        shard: (index, count), or None for every file.
        quiet: no warning for a sub-folder that cannot be listed (a first pass that only counts).

    Returns:
        An iterator of paths, lazily (the folder is never listed in memory at once).
    """
    folder = Path(folder)
    for path in iter_image_files(folder, quiet):
        if in_shard(path.relative_to(folder).as_posix(), shard):
            yield path


@dataclass
class MergeReport:
    """What merge_csvs found: rows written, files in more than one place, files in no shard."""

    out: Path
    inputs: list[Path]
    rows: int = 0  # rows written to `out`, one per file
    errors: int = 0  # of those, rows of files that could not be read (non-empty "error" column)
    duplicates: dict[str, list[str]] = field(default_factory=dict)  # file -> the CSVs holding it (2+ entries)
    missing: list[str] | None = None  # files under --folder in no CSV (None: no folder given)
    models: list[str] = field(default_factory=list)  # distinct "model version hash TTA" labels in the rows
    cut: list[str] = field(default_factory=list)  # rows left out, cut short or overlong ("CSV line N")

    @property
    def ok(self) -> bool:
        """No duplicate, missing or cut file, and one model (and TTA setting) behind every row."""
        return not self.duplicates and not self.missing and not self.cut and len(self.models) <= 1

    def summary(self) -> str:
        """One line: rows merged, duplicates, missing files (or that nothing was checked), cut rows, models."""
        missing = "missing not checked (no --folder)" if self.missing is None else f"{len(self.missing)} missing"
        cut = f"; {len(self.cut)} rows cut short or overlong, left out" if self.cut else ""
        models = (f"; {len(self.models)} different models or TTA settings: {', '.join(self.models)}"
                  if len(self.models) > 1 else "")
        return (f"{'ok' if self.ok else 'PROBLEMS'}: merged {self.rows} files ({self.errors} with errors) from "
                f"{len(self.inputs)} CSVs into {self.out}; {len(self.duplicates)} duplicate, {missing}{cut}{models}")


def flagged_but_answered(row: dict) -> bool:
    """Whether a predict --folder CSV row is an older version's: an out-of-distribution slice written as answered
    (refer False), from before a flag meant refer."""
    return row.get("out_of_distribution") == "True" and row.get("refer") == "False"


def merge_csvs(out: str | os.PathLike, inputs: Iterable[str | os.PathLike],
               folder: str | os.PathLike | None = None) -> MergeReport:
    """Join shard CSVs into `out`: the header once, one row per file, sorted by file.

    A file found more than once (in two shards, or twice in one) is a duplicate: the first row in the order the CSVs
    are given is kept, and the report lists every CSV it came from. With `folder`, files no CSV names are missing.

    Args:
        out: the merged CSV to write; must not be one of `inputs`.
        inputs: the shard CSVs (written by predict --folder --csv, with or without --shard).
        folder: the predicted folder, to check that every file is covered; None skips the check.

    Returns:
        A MergeReport; `report.ok` is False on duplicate, missing or cut files or rows of two models.

    Raises:
        ConfigError: no inputs, `out` among them, or the CSVs do not share one header with a "file" column.
        DataError: an input is missing or empty, or `folder` is not a folder.
    """
    out, inputs = Path(out), [Path(p) for p in inputs]
    if not inputs:
        raise ConfigError("merge-csv needs at least one shard CSV to merge.")
    if any(p.resolve() == out.resolve() for p in inputs):
        raise ConfigError(f"{out} is also an input: write the merged CSV to another path.")
    if folder is not None and not Path(folder).is_dir():
        raise DataError(f"{folder} is not a folder.")
    if out.is_dir():
        raise ConfigError(f"{out} is a folder: give the merged CSV a file name.")
    out.parent.mkdir(parents=True, exist_ok=True)  # before the work: a folder that cannot be made stops it now
    header, rows, seen_in = _read_shard_csvs(inputs, cut := [])
    report = MergeReport(out=out, inputs=inputs, rows=len(rows), cut=cut)
    report.duplicates = {f: where for f, where in sorted(seen_in.items()) if len(where) > 1}
    report.errors = sum(1 for r in rows.values() if r.get("error"))
    report.models = sorted({" ".join(filter(None, (r.get("model"), r.get("model_version"), r.get("model_sha256"),
                                                   f"TTA {r['tta']}" if r.get("tta") else "")))
                            for r in rows.values()} - {""})
    if folder is not None:
        folder = Path(folder)
        report.missing = [rel for rel in (p.relative_to(folder).as_posix() for p in iter_shard_files(folder, None))
                          if rel not in rows]
    try:
        write_csv_atomically(out, header, (_numbers_as_numbers(rows[f]) for f in sorted(rows)))
    except OSError as e:  # named as given, not as the hidden temporary file beside it
        raise DataError(f"{out}: cannot write the merged CSV ({e.strerror or e}).") from None
    return report


def _numbers_as_numbers(row: dict) -> dict:
    """A row read back from a shard's CSV (all text) with its probability cells (`confidence`, `p_CLASS`) numbers
    again, so the merged file quotes only text, as the shards do (escaping.CSV_QUOTING)."""
    def typed(key: str, value):
        if (key == "confidence" or key.startswith("p_")) and value:
            try:
                return float(value)
            except ValueError:  # not a number after all: kept as the text it was
                return value
        return value
    return {k: typed(k, v) for k, v in row.items()}


def _read_shard_csvs(inputs: list[Path], cut: list[str]) -> tuple[list[str], dict[str, dict], dict[str, list[str]]]:
    """(the shared header, the first row of each file, every CSV each file appears in); rows cut short or with too
    many cells are left out and named in `cut` ("CSV line N")."""
    header: list[str] | None = None
    rows: dict[str, dict] = {}
    seen_in: dict[str, list[str]] = {}
    for path in inputs:
        if not path.is_file():
            raise DataError(f"{path} does not exist or is not a file.")
        with open(path, "rb") as raw:
            if raw.read(2) in (b"\xff\xfe", b"\xfe\xff"):  # read leniently below, UTF-16 would be one long garble
                raise DataError(f"{path} is not UTF-8 text (UTF-16): save it as UTF-8 CSV.")
        with open(path, newline="", encoding="utf-8-sig", errors="surrogateescape") as fh:
            reader = csv.DictReader(fh)
            if not reader.fieldnames:
                raise DataError(f"{path} is empty: no header row.")
            if "file" not in reader.fieldnames:
                raise ConfigError(f"{path} has no 'file' column: is it a predict --folder CSV?")
            if header is None:
                header = list(reader.fieldnames)
            elif list(reader.fieldnames) != header:
                raise ConfigError(f"{path} has other columns than {inputs[0]}: {reader.fieldnames} vs {header}.")
            for row in csv_rows(reader, path):
                # Fewer cells than columns (a shard killed mid-write, two writers at once) or more: not a result.
                if None in row or None in row.values():
                    cut.append(f"{path} line {reader.line_num}")
                    continue
                row = {k: csv_value(v) for k, v in row.items()}  # as written
                if flagged_but_answered(row):
                    row["refer"] = "True"  # a flagged slice is no answer, whatever its confidence
                name = row["file"]
                seen_in.setdefault(name, []).append(str(path))
                rows.setdefault(name, row)
    return header, rows, seen_in


def csv_rows(reader: csv.DictReader, path: Path) -> Iterator[dict]:
    """The rows of a CSV being read; a cell over the csv module's limit (128 KiB: no predict CSV has one) or another
    CSV syntax error is a DataError naming the file and line, not a traceback (the limit is not raised: memory)."""
    try:
        yield from reader
    except csv.Error as e:
        raise DataError(f"{path} line {reader.line_num} cannot be read as a predict --folder CSV ({e}); nothing "
                        "was written.") from None

