"""Files written whole or not at all: a temporary name beside the target that no other writer picks, renamed over
it, and no debris left when the write fails (a full disk, a kill between write and rename leaves only a hidden
temporary file, never a half-written target). Run states, site runs, model cards and exported CSVs all go
through here."""

from __future__ import annotations

import csv
import json
import os
import secrets
from collections.abc import Iterable
from pathlib import Path

from .escaping import CSV_QUOTING, CSV_TEXT, csv_row

__all__ = ["private_temporary", "write_csv_atomically", "write_json_atomically", "write_text_atomically"]


def private_temporary(path: Path, suffix: str = ".tmp") -> Path:
    """A temporary name beside `path` that no other writer (process or thread) picks: two writers sharing one
    temporary file would rename each other's half-written bytes into place."""
    return path.with_name(f".{path.stem}.{os.getpid()}-{secrets.token_hex(4)}{suffix}")


def write_text_atomically(path: str | os.PathLike, text: str) -> None:
    path = Path(path)
    tmp = private_temporary(path)
    try:
        tmp.write_text(text)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def write_json_atomically(path: str | os.PathLike, data: dict) -> None:
    write_text_atomically(path, json.dumps(data, indent=1))


def write_csv_atomically(path: str | os.PathLike, fieldnames: list[str], rows: Iterable[dict]) -> None:
    """A CSV of `rows` (each through escaping.csv_row; every text cell quoted)."""
    path = Path(path)
    tmp = private_temporary(path)
    try:
        with open(tmp, "w", newline="", **CSV_TEXT) as fh:
            writer = csv.DictWriter(fh, fieldnames=fieldnames, quoting=CSV_QUOTING)
            writer.writeheader()
            writer.writerows(csv_row(r) for r in rows)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
