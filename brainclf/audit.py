"""Optional audit log (off by default): one JSON line per prediction with the time, the SHA-256 of the input
bytes, the model's name and version, and the output. Never pixels, file names (they may carry a patient's
name) or DICOM tags."""

from __future__ import annotations

import hashlib
import json
import threading
import time
from pathlib import Path

_LOCK = threading.Lock()  # lines from concurrent sessions must not interleave


def audit_record(data: bytes, prediction=None, error: str | None = None, model: str = "", version: str = "") -> dict:
    rec = {"timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
           "input_sha256": hashlib.sha256(data).hexdigest(), "input_bytes": len(data)}
    if prediction is not None:
        rec.update(model=prediction.model_name, model_version=prediction.model_version,
                   output={"predicted": prediction.predicted,
                           "probabilities": {k: round(v, 6) for k, v in prediction.probabilities.items()},
                           "refer": prediction.referred, "out_of_distribution": prediction.out_of_distribution})
    else:
        # Error messages name the upload; keep only the part after the name.
        rec.update(model=model, model_version=version, error=(error or "").split(": ", 1)[-1])
    return rec


def append_audit(path: str | Path, record: dict) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps(record, sort_keys=True) + "\n"
    with _LOCK, open(path, "a", encoding="utf-8") as f:
        f.write(line)
