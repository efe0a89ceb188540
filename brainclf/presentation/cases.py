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

from .. import DISPLAY_NAMES
from ..errors import BrainclfError
from ..escaping import visible_text
from ..input import decode_upload, upload_alias, without_alias
from .wording import HEADLINES, ReferRule, pct, result_status, summary_row


def content_hash(data: bytes) -> str:
    """SHA-256 of the uploaded bytes (hex), the case's identity."""
    return hashlib.sha256(data).hexdigest()


def case_ref(digest: str) -> str:
    """The short reference shown in headings, tables and reports (no file name: names may carry a patient's
    name); a study's slice (digest 'HASH:FRAME') adds its 1-based slice number: 'abcdef123456-3'."""
    content, _, frame = digest.partition(":")
    return content[:12] + (f"-{int(frame) + 1}" if frame else "")


def frame_digest(content: str, frame: int) -> str:
    """The identity of one frame of a multi-frame upload: its file's content hash and the 0-based frame."""
    return f"{content}:{frame}"


def model_label(name: str, version: str, tta: bool = False, sha256: str = "") -> str:
    """Which model produced a result: name, card version, the file's hash (two files can share a name and
    version: an upload's are whatever its card says) and whether flip TTA was on."""
    return f"{name} {version}".strip() + (f" {sha256}" if sha256 else "") + (" +TTA" if tta else "")


def widget_key(kind: str, digest: str, model: str) -> str:
    """Key of a per-image widget: what it is, which image (content hash) and which model (label)."""
    return f"{kind}::{model}::{digest}"


def batch_row(case_ref: str, file: str, rule: ReferRule, probabilities: dict[str, float], predicted: str,
              out_of_distribution: bool = False) -> dict[str, str]:
    """One row of the Predict page's batch table, narrow enough for an 800 px window (wording.summary_row's nine
    columns scrolled sideways there): the case, its file when names are shown, the answer with its status in
    one cell, and every class's probability in one cell, most likely first ('—' for a flagged slice)."""
    row = summary_row(case_ref, file, rule, probabilities, predicted, out_of_distribution)
    kind = result_status(rule, probabilities, out_of_distribution).kind
    answer = {"ood": f"{row['Status']} {row['Answer']}", "refer": row["Answer"]}.get(
        kind, f"{row['Answer']}, {row['Confidence']} · {row['Status']}")
    ranked = sorted(probabilities.items(), key=lambda cp: -cp[1])
    # No break inside "No tumour 0.2 %": the cell wraps between classes only.
    probs = " · ".join(f"{DISPLAY_NAMES.get(c, c)} {pct(p)}".replace(" ", "\u00a0") for c, p in ranked)
    return {"Case": case_ref, **({"File": file} if file else {}), "Answer": answer,
            "Probabilities": "—" if kind == "ood" else probs}


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
    frame: int | None = None  # a study's slice: the 0-based frame of a multi-frame DICOM
    n_frames: int = 1  # how many slices its study has (1: a single image)
    series_index: int | None = None  # a study's slice: the 0-based place of a single-frame slice in its series

    def __post_init__(self):
        self.name = visible_text(self.name)  # a bidi override in a file name would turn the text after it around

    @property
    def position(self) -> int | None:
        """Its 0-based place in its study (a multi-frame file's frame, or a series' slice); None: a single image."""
        return self.frame if self.frame is not None else self.series_index

    @property
    def ref(self) -> str:
        return case_ref(self.digest)

    @property
    def study(self) -> str:
        """The content hash of the upload it comes from (its own digest for a single image; for a series' slice,
        the hash of its slices' hashes in order)."""
        return self.digest.partition(":")[0]

    def label(self, show_names: bool) -> str:
        """How tables and messages name it: its file name when the user shows names, else its case id."""
        return self.name if show_names else f"Case {self.ref}"

    def predict(self, predictor):
        """Decode this upload and predict it, with Grad-CAM from the same pass where the model's card names usable
        layers (else without). Keeps only the whitelisted technical DICOM tags (`dicom_tags`); decoder messages
        never carry the file name (it may name the patient).

        Raises:
            ModelError: the model failed (nothing to store: the next try may work).
            BrainclfError: this upload cannot be read, or this model cannot analyse it.
        """
        alias = upload_alias(self.name)
        try:
            image, self.dicom_tags = decode_upload(self.data, alias, self.frame)
        except BrainclfError as e:
            raise type(e)(without_alias(str(e), alias)) from None
        try:
            return predictor.predict(image, name=self.name, explain=True)
        except ValueError:  # a model whose card names unusable Grad-CAM layers: still give the prediction
            try:
                return predictor.predict(image, name=self.name)
            except ValueError:  # not Grad-CAM after all: this image, with this model, gets no answer
                raise BrainclfError("the model could not analyse this image") from None


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
            self._evict()
        return case

    def add_upload(self, name: str, data: bytes, count_frames) -> list[Case]:
        """The cases of one upload: itself, or one per frame when `count_frames()` (called on first sight only)
        says it is a stack of 2 or more (its frames share the bytes; the study counts as one of max_cases)."""
        digest = content_hash(data)
        known = [c for c in self._cases.values() if c.study == digest]
        if known:
            return known
        n = count_frames()
        if n <= 1:
            return [self.add(name, data)]
        self._count += 1
        now = datetime.now(UTC)
        cases = [Case(frame_digest(digest, i), name, data, self._count, now, frame=i, n_frames=n) for i in range(n)]
        self._cases.update((c.digest, c) for c in cases)
        self._evict()
        return [c for c in cases if c.digest in self._cases]

    def add_series(self, uploads: list[tuple[str, bytes]]) -> list[Case]:
        """The cases of single-frame slices of one series (dicom_stack.series_groups), in series order: one study
        (one of max_cases), each slice a case of its own bytes, numbered like a multi-frame file's frames."""
        study = content_hash("".join(content_hash(data) for _, data in uploads).encode())
        known = [c for c in self._cases.values() if c.study == study]
        if known:
            return known
        self._count += 1
        now = datetime.now(UTC)
        cases = [Case(frame_digest(study, i), name, data, self._count, now, n_frames=len(uploads), series_index=i)
                 for i, (name, data) in enumerate(uploads)]
        self._cases.update((c.digest, c) for c in cases)
        self._evict()
        return [c for c in cases if c.digest in self._cases]

    def _evict(self) -> None:
        """The oldest uploads go first, a study with all its slices."""
        while len({c.study for c in self._cases.values()}) > self.max_cases:
            oldest = next(iter(self._cases.values())).study
            for d in [d for d, c in self._cases.items() if c.study == oldest]:
                del self._cases[d]

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

    def history_rows(self, model: str, show_names: bool = True) -> list[dict]:
        """One row per case, newest first: its result under `model` if there is one, else its latest; the file
        column blank when names are hidden."""
        rows = []
        for case in reversed(self._cases.values()):
            label = model if model in case.results else next(reversed(case.results), None)
            res = case.results.get(label) if label else None
            row = {"#": case.number, "added (UTC)": case.added.strftime("%H:%M:%S"), "case": case.ref,
                   "file": case.name if show_names else "", "prediction": "", "confidence": "—",
                   "status": "not analysed", "model": label or ""}
            if isinstance(res, str):
                row["status"] = "not processed"
            elif res is not None:
                row.update(prediction=DISPLAY_NAMES.get(res.predicted, res.predicted),
                           confidence="—" if res.out_of_distribution else pct(res.confidence),
                           status=HEADLINES["ood" if res.out_of_distribution else
                                            "refer" if res.referred else "accept"])
            rows.append(row)
        return rows
