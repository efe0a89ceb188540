"""Audit log: JSON lines with hash, model and output; never pixels, names or DICOM tags."""

from __future__ import annotations

import hashlib
import json
import threading

from brainclf.audit import append_audit, audit_record
from brainclf.predict import Prediction


def _prediction():
    return Prediction(name="Doe_Jane_scan.jpg", probabilities={"glioma": 0.1, "meningioma": 0.7, "notumor": 0.1,
                                                              "pituitary": 0.1},
                      model_name="default", model_version="20260101-abcd", refer_threshold=0.9)


def test_record_has_hash_model_and_output_but_no_name_or_pixels(tmp_path):
    data = b"\xff\xd8\xff fake image bytes"
    log = tmp_path / "audit" / "log.jsonl"
    append_audit(log, audit_record(data, _prediction()))
    rec = json.loads(log.read_text().splitlines()[0])
    assert rec["input_sha256"] == hashlib.sha256(data).hexdigest()
    assert rec["model"] == "default" and rec["model_version"] == "20260101-abcd"
    assert rec["output"]["predicted"] == "meningioma" and rec["output"]["refer"] is True
    text = log.read_text()
    assert "Doe" not in text and "Jane" not in text and "fake image bytes" not in text


def test_error_record_drops_the_file_name(tmp_path):
    log = tmp_path / "log.jsonl"
    append_audit(log, audit_record(b"x", error="Doe_Jane.jpg: not a recognised image", model="m", version="v"))
    rec = json.loads(log.read_text())
    assert rec["error"] == "not a recognised image" and "Doe" not in log.read_text()


def test_concurrent_appends_do_not_interleave(tmp_path):
    log = tmp_path / "log.jsonl"
    threads = [threading.Thread(target=lambda i=i: [append_audit(log, audit_record(bytes([i]) * 10_000,
                                                                                   _prediction()))
                                                    for _ in range(20)]) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    lines = log.read_text().splitlines()
    assert len(lines) == 160 and all(json.loads(line)["model"] == "default" for line in lines)
