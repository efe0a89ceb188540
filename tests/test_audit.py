"""Audit log: JSON lines with hash, model and output; never pixels, names or DICOM tags."""

from __future__ import annotations

import hashlib
import json
import threading

import pytest

from brainclf.inference import Prediction
from brainclf.serving import append_audit, audit_record


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
    assert rec["error"] == "not an image" and "Doe" not in log.read_text()


def test_a_name_with_a_colon_never_reaches_the_log(tmp_path):
    """The probe: an empty upload named 'DOE JOHN: MRN 12345.jpg'. Splitting the message at its first ': '
    left 'MRN 12345.jpg: the file is empty (0 bytes).' in the audit log."""
    from brainclf.errors import ImageError
    from brainclf.input import decode_image

    name = "DOE JOHN: MRN 12345.jpg"
    with pytest.raises(ImageError) as e:
        decode_image(b"", name=name)
    log = tmp_path / "log.jsonl"
    for error in (e.value, str(e.value)):
        append_audit(log, audit_record(b"", error=error, model="m", version="v"))
    text = log.read_text()
    assert "DOE" not in text and "MRN" not in text and "12345" not in text
    assert [json.loads(line)["error"] for line in text.splitlines()] == ["empty file", "empty file"]
    assert json.loads(text.splitlines()[0])["error_type"] == "ImageError"


def test_dicom_header_values_never_reach_the_log():
    rec = audit_record(b"x", error="upload.dcm: DICOM modality is CT, not MR; this model only reads MR brain "
                       "slices.")
    assert rec["error"] == "not an MR image" and "CT" not in json.dumps(rec)


def test_every_error_text_is_from_the_fixed_list():
    from brainclf.serving import OTHER_REASON, REFUSAL_REASONS

    reasons = {r for _, r in REFUSAL_REASONS} | {OTHER_REASON}
    for message in ("Jane Roe 1970-01-01", "x: weird failure Jane", "", None):
        assert audit_record(b"x", error=message)["error"] in reasons
        assert "Jane" not in json.dumps(audit_record(b"x", error=message))


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
