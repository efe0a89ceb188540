"""Uploaded models (brainclf.model.uploads, inference_process.add_uploaded_model): Keras opens them in the memory-capped
model process only, and an upload cannot pass itself off as a model installed on this server."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import copy_model
from test_model_config import archive, dense_model

from brainclf.errors import ModelError
from brainclf.inference import ModelProcess, add_uploaded_model
from brainclf.inference.model_worker import _as_message
from brainclf.input import limits
from brainclf.model import add_model, card_path, file_sha256, read_card

REPO = Path(__file__).resolve().parent.parent


def test_the_model_page_upload_opens_models_in_the_model_process_only(smoke_model, tmp_path):
    """The Model page's path (add_uploaded_model): a good upload lands, a 20000-unit one is refused, and the
    server's process never imports TensorFlow (it used to load the upload itself: 1.7 → 3.7 GB)."""
    big = archive(tmp_path / "big.keras", dense_model(20000, 20000))
    big_card = card_path(big)
    big_card.write_text(card_path(smoke_model).read_text())
    code = (
        "import json, sys; from pathlib import Path\n"
        "from brainclf.inference.inference_process import add_uploaded_model\n"
        "from brainclf.errors import ModelError\n"
        f"dest = Path({str(tmp_path / 'models')!r}); smoke = Path({str(smoke_model)!r})\n"
        "ok = add_uploaded_model('up', smoke.read_bytes(), smoke.with_suffix('.json').read_bytes(), dest, 'alice')\n"
        "try:\n"
        f"    add_uploaded_model('big', Path({str(big)!r}).read_bytes(), Path({str(big_card)!r}).read_bytes(), dest)\n"
        "    refused = ''\n"
        "except ModelError as e:\n    refused = str(e)\n"
        "print(json.dumps([ok.name, refused, 'tensorflow' in sys.modules, 'keras' in sys.modules]))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    name, refused, tf, keras = json.loads(out.stdout.strip().splitlines()[-1])
    assert name == "up.keras" and "400,020,000 parameters" in refused and not tf and not keras
    assert sorted(p.name for p in (tmp_path / "models").iterdir() if p.name != ".uploads.lock") == ["up.json",
                                                                                                 "up.keras"]


def test_a_model_over_the_process_memory_cap_is_refused_and_the_next_one_loads(smoke_model, tmp_path):
    process = ModelProcess(memory_bytes=256 * limits.MiB)  # less than TensorFlow needs to start
    model, card = smoke_model.read_bytes(), card_path(smoke_model).read_bytes()
    try:
        with pytest.raises(ModelError, match=r"memory .*256 MB.*refused"):
            add_uploaded_model("up", model, card, tmp_path, process=process)
        assert not list(tmp_path.iterdir())  # nothing landed
        # the caller carries on (the capped process answered, or died and would start again); with the usual cap
        # the same upload loads
        process.stop()
        process.memory_bytes = limits.MODEL_PROCESS_DATA_BYTES
        assert add_uploaded_model("up", model, card, tmp_path, process=process).name == "up.keras"
    finally:
        process.stop()


def test_a_system_error_near_the_memory_cap_is_a_memory_refusal_and_far_from_it_stays_itself(monkeypatch):
    import resource
    from types import SimpleNamespace

    from brainclf.inference import model_worker

    usage = SimpleNamespace(ru_maxrss=200 * 1024)  # kilobytes: 200 MB of a 256 MB cap
    monkeypatch.setattr(model_worker.resource, "getrlimit", lambda which: (256 * limits.MiB, resource.RLIM_INFINITY))
    monkeypatch.setattr(model_worker.resource, "getrusage", lambda who: usage)
    assert _as_message(SystemError("returned NULL without setting an exception"))[1].startswith(
        "the model needs more memory than the model process may use (256 MB)")
    usage.ru_maxrss = 10 * 1024
    assert _as_message(SystemError("returned NULL"))[1] == "the model failed (SystemError)"


def test_running_out_of_memory_in_the_model_process_is_a_clear_refusal():
    exhausted = type("ResourceExhaustedError", (Exception,), {})  # TensorFlow's, by name (not imported here)
    import errno

    for error in (MemoryError(), exhausted("OOM when allocating tensor with shape[20000,20000]"),
                  OSError(errno.ENOMEM, "Cannot allocate memory"), RuntimeError("can't start new thread")):
        name, message = _as_message(error)
        assert name == "ModelError" and message.startswith("the model needs more memory than the model process")


def upload_card(smoke_model: Path, **changes) -> bytes:
    card = json.loads(card_path(smoke_model).read_text())
    return json.dumps({**card, **changes}).encode()


def test_an_upload_may_not_take_an_installed_models_name_or_version(smoke_model, tmp_path):
    """The attack: single.keras uploaded with default.json (only file_sha256 changed) was stamped 'default'."""
    installed = read_card(copy_model(smoke_model, tmp_path, "default"))  # its card's name is 'smoke'
    model = smoke_model.read_bytes()
    for name, card, clash in [
            ("mine", upload_card(smoke_model), "the name smoke"),
            ("mine", upload_card(smoke_model, name="default"), "the name default"),
            ("smoke", upload_card(smoke_model, name="other", version="v2"), "the name smoke"),
            ("mine", upload_card(smoke_model, name="other"), f"the version {installed.version}")]:
        with pytest.raises(ModelError, match=f"claims {clash}, which belongs to default, a model trained or "
                                             "installed on this server"):
            add_model(name, model, card, tmp_path)
    assert sorted(p.stem for p in tmp_path.glob("*.keras")) == ["default"]
    added = read_card(add_model("mine", model, upload_card(smoke_model, name="other", version="v2"),
                                tmp_path))
    assert (added.name, added.version, added.file_sha256) == ("mine", "v2", file_sha256(smoke_model))
    # another upload's version is no installed model's: a second upload of the same card is its own model
    again = add_model("again", model, upload_card(smoke_model, name="x", version="v2"), tmp_path)
    assert read_card(again).name == "again"


def test_one_account_has_a_bounded_number_of_uploads_and_an_upload_leaves_disk_free(smoke_model, tmp_path,
                                                                                     monkeypatch):
    from collections import namedtuple

    import brainclf.model.uploads as uploads

    monkeypatch.setattr(limits, "MAX_UPLOADS_PER_ACCOUNT", 2)
    model = smoke_model.read_bytes()
    for k in range(2):
        add_model(f"eve{k}", model, upload_card(smoke_model, name=f"e{k}", version=f"v{k}"), tmp_path,
                  uploaded_by="Eve", uploaded_by_id="sub:eve")
    with pytest.raises(ModelError, match=r"Your account has 2 uploaded models installed, the most one account may "
                                         r"have \(2\)"):
        add_model("eve2", model, upload_card(smoke_model, name="e2", version="v2"), tmp_path, uploaded_by="Eve",
                  uploaded_by_id="sub:eve")
    add_model("bob0", model, upload_card(smoke_model, name="b0", version="w0"), tmp_path, uploaded_by="Eve",
              uploaded_by_id="sub:bob")  # another account, though the same display name
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(uploads.shutil, "disk_usage", lambda p: usage(10 * limits.MiB ** 2, 0, 1000 * limits.MiB))
    with pytest.raises(ModelError, match=r"disk has 1,000 MB free; saving a model must leave 1 GB\. Ask an admin"):
        add_model("bob1", model, upload_card(smoke_model, name="b1", version="w1"), tmp_path, uploaded_by_id="sub:bob")
    assert sorted(p.stem for p in tmp_path.glob("*.keras")) == ["bob0", "eve0", "eve1"]


def test_an_upload_cannot_bring_its_own_site_block_or_a_card_the_caches_cannot_hold(smoke_model, tmp_path,
                                                                                    monkeypatch):
    """A made-up site block showed the uploader's external figure as measured here; a 44 MB card of made-up rows
    took 310 MB of the server's memory in each cache that held it."""
    model = smoke_model.read_bytes()
    site = {"name": "x", "scope": "validated at x: 99 % right", "adapted": False, "target": 0.98}
    added = read_card(add_model("mine", model, upload_card(smoke_model, name="m", version="v1", site=site),
                                tmp_path))
    assert added.site == {} and added.measured_site == {}
    monkeypatch.setattr(limits, "MAX_UPLOAD_CARD_BYTES", 1000)
    with pytest.raises(ModelError, match=r"above the limit of .* for an uploaded card"):
        add_model("big", model, upload_card(smoke_model, name="b", version="v2"), tmp_path)
    assert not (tmp_path / "big.keras").exists()


def test_a_site_profile_of_an_upload_does_not_count_as_its_uploaders_upload(smoke_model, tmp_path, monkeypatch):
    from brainclf.model.card import SITE_STEP

    monkeypatch.setattr(limits, "MAX_UPLOADS_PER_ACCOUNT", 1)
    profile = copy_model(smoke_model, tmp_path, "clinic-eve0")  # as a colleague's calibrate step saves it
    card = read_card(profile)
    card.provenance = {"uploaded_by": "Eve", "uploaded_by_id": "sub:eve", "uploaded": "2026-12-07",
                       "metrics_verified": True, "verified_by": SITE_STEP}
    card.save(card_path(profile))
    add_model("eve0", smoke_model.read_bytes(), upload_card(smoke_model, name="e0", version="v0"), tmp_path,
              uploaded_by_id="sub:eve")  # the profile is not hers to count
    with pytest.raises(ModelError, match="Your account has 1 uploaded models installed"):
        add_model("eve1", smoke_model.read_bytes(), upload_card(smoke_model, name="e1", version="v1"), tmp_path,
                  uploaded_by_id="sub:eve")
