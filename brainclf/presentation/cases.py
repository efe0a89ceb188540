"""A session's cases: uploads identified by their content (SHA-256), and their results per model.

The app keeps one CaseBook per browser session (in memory, never on disk), so uploads and results survive
moving between pages and every case of the session can be opened again. Widgets that belong to one image
are keyed by `widget_key`: the image's content hash and the model that analysed it, never the image's
position in an upload list (a position is reused by the next upload, a content hash is not). No Streamlit here.
"""

from __future__ import annotations

import copy
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import UTC, datetime

from ..errors import BrainclfError
from ..escaping import visible_text
from ..input import decode_upload, limits, upload_alias, without_alias
from .batch_table import content_hash, history_row
from .wording import plural


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


def result_nbytes(result) -> int:
    """Bytes a stored result's pictures take (its model input and Grad-CAM map); 0 for an error message."""
    return sum(int(getattr(getattr(result, k, None), "nbytes", 0)) for k in ("model_input", "heatmap"))


def _without_pictures(result):
    """A copy of a Prediction without its arrays: the history keeps its answer, showing it again recomputes it."""
    light = copy.copy(result)
    light.model_input = light.heatmap = None
    return light


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
    """The cases of one session by content hash, oldest first; at most `max_cases` studies and `max_upload_bytes` of
    uploads with those its user holds in other sessions (`others_held()`: the budget is the user's), and their
    results' pictures within `max_result_bytes` (admit)."""

    def __init__(self, max_cases: int = 50, max_result_bytes: int | None = None, max_upload_bytes: int | None = None,
                 others_held=lambda: 0, others_results=lambda: 0, admit_lock=None):
        self.max_cases, self.others_held = max_cases, others_held  # bytes its user holds in other sessions
        # Results its user holds in other sessions, and a lock they share (two tabs must not count on one room).
        self.others_results, self.admit_lock = others_results, admit_lock or threading.Lock()
        # What admit reserved, read by other sessions' threads: only admit lowers it (a batch being computed
        # counts in full, not slice by slice as it is stored).
        self.held_result_bytes = 0
        self.max_result_bytes = limits.MAX_SESSION_RESULT_BYTES if max_result_bytes is None else max_result_bytes
        self.max_upload_bytes = limits.MAX_SESSION_UPLOAD_BYTES if max_upload_bytes is None else max_upload_bytes
        self.held_bytes = 0  # upload_bytes() as of the last change, read by other sessions' threads
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
        if case is not None:
            return self._seen_again([case])[0]
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
            return self._seen_again(known)
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
            return self._seen_again(known)
        self._count += 1
        now = datetime.now(UTC)
        cases = [Case(frame_digest(study, i), name, data, self._count, now, n_frames=len(uploads), series_index=i)
                 for i, (name, data) in enumerate(uploads)]
        self._cases.update((c.digest, c) for c in cases)
        self._evict()
        return [c for c in cases if c.digest in self._cases]

    def _seen_again(self, cases: list[Case]) -> list[Case]:
        """A study uploaded again is the newest again: the eviction takes older ones first (it may be in the box)."""
        for c in cases:
            self._cases.move_to_end(c.digest)
        return cases

    def _evict(self) -> None:
        """The oldest uploads go first, a study with all its slices, while there are more than max_cases studies or
        max_upload_bytes of uploads with the user's other sessions' (a file's frames counted once); the newest stays."""
        room = self.max_upload_bytes - self.others_held()
        while (len(studies := {c.study for c in self._cases.values()}) > self.max_cases
               or (len(studies) > 1 and self.upload_bytes() > room)):
            oldest = next(iter(self._cases.values())).study
            for d in [d for d, c in self._cases.items() if c.study == oldest]:
                del self._cases[d]
        self.held_bytes = self.upload_bytes()

    def upload_bytes(self) -> int:
        """Bytes of the uploads the book holds, each file once."""
        return sum(len(data) for data in {id(c.data): c.data for c in self._cases.values()}.values())

    def get(self, digest: str) -> Case | None:
        return self._cases.get(digest)

    def cases(self) -> list[Case]:
        return list(self._cases.values())

    def store(self, digest: str, model: str, result) -> None:
        """Record a Prediction (or an error message) of a case under the model label that produced it, in place of
        any other model's: a case holds one model's result (switched back, the page computes it again)."""
        case = self._cases[digest]
        case.results = {model: result}
        case.analysed = {model: datetime.now(UTC)}
        self.held_result_bytes = max(self.held_result_bytes, self.result_bytes())

    def result(self, digest: str, model: str):
        case = self._cases.get(digest)
        return None if case is None else case.results.get(model)

    def usable(self, digest: str, model: str):
        """The case's result under `model` as the page can show it again (an error message, or a Prediction with
        its model input); None when it must be computed: it never was, or its pictures were let go (admit)."""
        res = self.result(digest, model)
        return res if isinstance(res, str) or getattr(res, "model_input", None) is not None else None

    def result_bytes(self) -> int:
        """Bytes the pictures of every stored result take: what max_result_bytes bounds."""
        return sum(result_nbytes(r) for c in self._cases.values() for r in c.results.values())

    def admit(self, digests: list[str], model: str, contract, keep=()) -> tuple[list[str], str | None]:
        """Which of `digests` (in order; a study's whole or none) fit max_result_bytes with `model`'s results, and
        what to tell the user of the others (None: all fit). Room is made by letting go of pictures: another model's
        first, then those of cases neither in `digests` nor in `keep`, oldest first (recomputed if shown again).
        The budget is its user's: what their other sessions hold (`others_results()`) is taken off it."""
        with self.admit_lock:
            return self._admit(digests, model, contract, keep)

    def _admit(self, digests: list[str], model: str, contract, keep) -> tuple[list[str], str | None]:
        budget = self.max_result_bytes - self.others_results()
        for case in self._cases.values():
            self._release(case, but=model)
        each = self._slice_bytes(model, contract)
        missing = {d: 0 if self.usable(d, model) is not None else each for d in digests}
        held, need, protect = self.result_bytes(), sum(missing.values()), {*digests, *keep}
        for case in list(self._cases.values()):
            if held + need <= budget:
                break
            if case.digest not in protect:
                held -= self._release(case)
        admitted, refused, studies = [], [], {}
        for d in digests:
            studies.setdefault(self._cases[d].study, []).append(d)
        for frames in studies.values():
            cost = sum(missing[d] for d in frames)
            fits = held + cost <= budget
            held += cost if fits else 0
            (admitted.extend if fits else refused.append)(frames)
        self.held_result_bytes = held
        return admitted, self._refusal(refused, each, len(protect), budget) if refused else None

    def _release(self, case: Case, but: str | None = None) -> int:
        """Let go of the pictures of the case's results (all, or all but model label `but`'s); the bytes freed."""
        freed = 0
        for label, res in case.results.items():
            if label != but and (n := result_nbytes(res)):
                case.results[label] = _without_pictures(res)
                freed += n
        return freed

    def _slice_bytes(self, model: str, contract) -> int:
        """One slice's result under `model`: as measured on one held (its arrays' real types), else from the
        model's input contract (float32 input and map)."""
        held = (result_nbytes(c.results.get(model)) for c in reversed(self._cases.values()))
        return next((n for n in held if n), 0) or contract.size ** 2 * (contract.channels + 1) * 4

    def _refusal(self, refused: list[list[str]], each: int, on_page: int, budget: int) -> str:
        """Which slices are not analysed, the limit, and what to do about it (case ids only: no file names)."""
        refs = [case_ref(self._cases[f[0]].study) for f in refused]
        listed = ", ".join(refs[:5]) + (f" and {len(refs) - 5:,} more" if len(refs) > 5 else "")
        elsewhere = (f"; your other tabs of this app hold {limits.size_text(self.max_result_bytes - budget)} of it, "
                     "and closing them frees it" if budget < self.max_result_bytes else "")
        return (f"Not analysed: {plural(sum(map(len, refused)), 'slice')} ({listed}). Each user holds the "
                f"results of at most {plural(self.max_result_bytes // each, 'slice')} with this model "
                f"({limits.size_text(self.max_result_bytes)}{elsewhere}), and the cases on this page have "
                f"{plural(on_page, 'slice')}. Remove a study from the upload box to analyse the others.")

    def history_rows(self, model: str, show_names: bool = True, rule=None) -> list[dict]:
        """One row per case, newest first (batch_table.history_row)."""
        return [history_row(case, model, show_names, rule) for case in reversed(self._cases.values())]
