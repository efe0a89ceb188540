"""Optional audit log (off by default): one JSON line per prediction with the time, who asked (their user id), the
SHA-256 of the input bytes, the case reference the app, its CSV and its reports show (a study's slice: its slice
number), whether flip TTA was on, the model's name, version and file SHA-256, and the output; one line each time an
admin switches the log on or off (switch_record); and one each time a model is uploaded, removed, restored or
deleted for good, or a training or site step that will make one is started (model_event_record). Never pixels,
file names (they may carry a patient's name) or DICOM tags.

A refused input is recorded with a reason from a fixed list (REFUSAL_REASONS), never with the error's text:
decoder messages can quote the upload's name (a name may itself contain ': ', so no split can strip it) or
values read from its header (a DICOM modality, say).
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from pathlib import Path

from ..model.card_schema import plain_label

_LOCK = threading.Lock()  # lines from concurrent sessions must not interleave

# (words in the message, reason recorded): first match wins. The reasons are the only error text an audit
# line can hold.
REFUSAL_REASONS = (
    ("empty", "empty file"),
    ("above the limit", "over a size limit"),
    ("too large", "over a size limit"),
    ("larger than", "over a size limit"),
    ("inflates to", "over a size limit"),
    ("not MR", "not an MR image"),
    ("modality", "not an MR image"),
    ("no pixel data", "no pixel data"),
    ("not a DICOM", "not a readable DICOM file"),
    ("not a readable DICOM", "not a readable DICOM file"),
    ("transfer syntax", "unsupported DICOM encoding"),
    ("frame", "unsupported frame layout"),
    ("PDF", "not an image"),
    ("not a recognised image", "not an image"),
    ("files are accepted", "unsupported image format"),
    ("corrupt", "corrupt or truncated"),
    ("truncated", "corrupt or truncated"),
    ("elongated", "not a slice shape"),
    ("pixels; an MRI slice", "too small"),
)
OTHER_REASON = "refused"


def refusal_reason(error: str | BaseException | None) -> str:
    """The fixed-vocabulary reason for a refused input (what the audit log records instead of the message)."""
    text = str(error or "")
    return next((reason for words, reason in REFUSAL_REASONS if words in text), OTHER_REASON)


def audit_record(data: bytes, prediction=None, error: str | BaseException | None = None, model: str = "",
                 version: str = "", model_sha256: str = "", user: str = "", case: str = "",
                 tta: bool | None = None) -> dict:
    """The audit line for one analysis by `user` of case `case` (its reference: case_ref): a prediction's output,
    or for a refused input its fixed reason and the error's type. Holds no file name, no DICOM tag and no text
    taken from the input."""
    rec = {"timestamp": _now(), "user": user, "case": case, "input_sha256": hashlib.sha256(data).hexdigest(),
           "input_bytes": len(data)}
    if tta is not None:
        rec["tta"] = bool(tta)
    if prediction is not None:
        rec.update(model=prediction.model_name, model_version=prediction.model_version,
                   model_sha256=prediction.model_sha256,
                   output={"predicted": prediction.predicted,
                           "probabilities": {k: round(v, 6) for k, v in prediction.probabilities.items()},
                           "refer": prediction.unanswered, "out_of_distribution": prediction.out_of_distribution})
    else:
        rec.update(model=model, model_version=version, model_sha256=model_sha256, error=refusal_reason(error),
                   error_type=type(error).__name__ if isinstance(error, BaseException) else "refused")
    return rec


def switch_record(enabled: bool, user: str) -> dict:
    """The line that says who switched the audit log on or off, and when: written as the last line before it goes
    off and the first after it comes on, so a gap in the log always has its reason."""
    return {"timestamp": _now(), "user": user, "event": "audit log on" if enabled else "audit log off"}


MODEL_EVENTS = ("model uploaded", "model removed", "model restored", "model deleted for good", "training started",
                "site step started")


def model_event_record(event: str, user: str, model: str, sha256: str = "") -> dict:
    """The line that says who changed which model (or started the job that will make one), and when: an
    upload, a removal, a restore, a deletion, a training or a site step started (`event`: one of MODEL_EVENTS;
    `model`: its name, a plain label; `sha256`: the model file's hash where there is one)."""
    if event not in MODEL_EVENTS:
        raise ValueError(f"not a model event: {event!r}")
    return {"timestamp": _now(), "user": user, "event": event, "model": plain_label(model, 128),
            **({"model_sha256": sha256} if sha256 else {})}


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def append_audit(path: str | Path, record: dict) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps(record, sort_keys=True) + "\n"
    with _LOCK, open(path, "a", encoding="utf-8") as f:
        f.write(line)
