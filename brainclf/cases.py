"""A session's cases: uploads identified by their content (SHA-256), and their results per model.

The app keeps one CaseBook per browser session (in memory, never on disk), so uploads and results survive
moving between pages and every case of the session can be opened again. Widgets that belong to one image
are keyed by `widget_key`: the image's content hash and the model that analysed it, never the image's
position in an upload list (a position is reused by the next upload, a content hash is not).
No Streamlit here.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import UTC, datetime

from . import DISPLAY_NAMES
from .wording import HEADLINES, pct


def content_hash(data: bytes) -> str:
    """SHA-256 of the uploaded bytes (hex), the case's identity."""
    return hashlib.sha256(data).hexdigest()


def case_ref(digest: str) -> str:
    """The short reference shown in tables and reports (no file name: names may carry a patient's name)."""
    return digest[:12]


def model_label(name: str, version: str, tta: bool = False, sha256: str = "") -> str:
    """Which model produced a result: name, card version, the file's hash (two files can share a name and
    version: an upload's are whatever its card says) and whether flip TTA was on."""
    return f"{name} {version}".strip() + (f" {sha256}" if sha256 else "") + (" +TTA" if tta else "")


def widget_key(kind: str, digest: str, model: str) -> str:
    """Key of a per-image widget: what it is, which image (content hash) and which model (label)."""
    return f"{kind}::{model}::{digest}"


@dataclass
class Case:
    digest: str
    name: str  # the upload's name: shown in this session's app only, never in reports or logs
    data: bytes = field(repr=False)  # in memory only
    number: int  # 1, 2, … in the order the session first saw it
    added: datetime
    results: dict = field(default_factory=dict, repr=False)  # model label → Prediction or error message
    dicom_tags: dict | None = None  # the whitelisted technical tags of a DICOM upload (shown in the app only)
    analysed: dict = field(default_factory=dict, repr=False)  # model label → when the result was computed

    @property
    def ref(self) -> str:
        return case_ref(self.digest)


class CaseBook:
    """The cases of one session by content hash, oldest first; at most `max_cases` (the oldest go first)."""

    def __init__(self, max_cases: int = 50):
        self.max_cases = max_cases
        self._cases: OrderedDict[str, Case] = OrderedDict()
        self._count = 0

    def __len__(self) -> int:
        return len(self._cases)

    def __contains__(self, digest: str) -> bool:
        return digest in self._cases

    def add(self, name: str, data: bytes) -> Case:
        """The case of these bytes, created on first sight (the same image uploaded again is the same case)."""
        digest = content_hash(data)
        case = self._cases.get(digest)
        if case is None:
            self._count += 1
            case = self._cases[digest] = Case(digest, name, data, self._count, datetime.now(UTC))
            while len(self._cases) > self.max_cases:
                self._cases.popitem(last=False)
        return case

    def get(self, digest: str) -> Case | None:
        return self._cases.get(digest)

    def cases(self) -> list[Case]:
        return list(self._cases.values())

    def store(self, digest: str, model: str, result) -> None:
        """Record a Prediction (or an error message) of a case under the model label that produced it."""
        case = self._cases[digest]
        case.results[model] = result
        case.analysed[model] = datetime.now(UTC)

    def result(self, digest: str, model: str):
        case = self._cases.get(digest)
        return None if case is None else case.results.get(model)

    def history_rows(self, model: str) -> list[dict]:
        """One row per case, newest first: its result under `model` if there is one, else its latest."""
        rows = []
        for case in reversed(self._cases.values()):
            label = model if model in case.results else next(reversed(case.results), None)
            res = case.results.get(label) if label else None
            row = {"#": case.number, "added (UTC)": case.added.strftime("%H:%M:%S"), "case": case.ref,
                   "file": case.name, "prediction": "", "confidence": None, "status": "not analysed",
                   "model": label or ""}
            if isinstance(res, str):
                row["status"] = "not processed"
            elif res is not None:
                row.update(prediction=DISPLAY_NAMES.get(res.predicted, res.predicted),
                           confidence="—" if res.out_of_distribution else pct(res.confidence),
                           status=HEADLINES["ood" if res.out_of_distribution else
                                            "refer" if res.referred else "accept"])
            rows.append(row)
        return rows
