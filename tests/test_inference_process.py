"""brainclf.inference.inference_process: the model runs in a process of its own and answers exactly as in-process."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import copy_model

from brainclf import CLASS_NAMES
from brainclf.errors import ModelError
from brainclf.inference import ModelProcess, ProcessPredictor, inference_process, model_replies
from brainclf.inference.model_worker import identity

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def model_process():
    process = ModelProcess()
    yield process
    process.stop()


@pytest.mark.parametrize("tta", [False, True])
def test_answers_match_the_in_process_predictor(smoke_model, smoke_predictor, model_process, make_image, tta):
    remote = ProcessPredictor.start(smoke_model, process=model_process).with_tta(tta)
    local = smoke_predictor.with_tta(tta)
    image = make_image("meningioma", seed=3)
    got, want = remote.predict(image, name="a.png", explain=True), local.predict(image, name="a.png", explain=True)
    assert got.probabilities == pytest.approx(want.probabilities, abs=1e-6)
    np.testing.assert_allclose(got.heatmap, want.heatmap, atol=1e-5)
    assert (got.model_name, got.model_version) == (want.model_name, want.model_version)
    assert (got.out_of_distribution, got.refer_threshold) == (want.out_of_distribution, want.refer_threshold)
    x = np.stack([local.preprocess(make_image(c, seed=i)) for i, c in enumerate(CLASS_NAMES)])
    np.testing.assert_allclose(remote.predict_arrays(x), local.predict_arrays(x), atol=1e-6)
    np.testing.assert_allclose(remote.gradcam(x[0], 2), local.gradcam(x[0], 2), atol=1e-5)  # another class
    np.testing.assert_allclose(remote.penultimate_features(x), local.penultimate_features(x), atol=1e-5)


def test_a_broken_model_is_a_clear_error_and_the_process_carries_on(smoke_model, model_process, tmp_path):
    broken = copy_model(smoke_model, tmp_path, "broken")
    broken.write_bytes(b"not a keras file")  # the card is still valid: only the model process finds out
    predictor = ProcessPredictor.start(broken, process=model_process)
    with pytest.raises(ModelError) as err:
        predictor.wait_ready()
    assert "broken" in str(err.value)
    assert ProcessPredictor.start(smoke_model, process=model_process).wait_ready().card.name == "smoke"


def test_a_model_replaced_after_its_card_was_read_is_refused(smoke_model, model_process, tmp_path):
    path = copy_model(smoke_model, tmp_path, "swapped")
    predictor = ProcessPredictor.start(path, process=model_process)
    with pytest.raises(ModelError, match="changed"):
        model_process.call(path, ("smoke", predictor.card.version, "0" * 64), "load", False)  # another file
    assert predictor.wait_ready() is predictor


def test_only_the_model_calls_are_answered(smoke_model, model_process):
    expected = identity(ProcessPredictor.start(smoke_model, process=model_process).card)
    for method in ("__init__", "with_tta", "predict", "load_model"):
        with pytest.raises(ModelError, match="does not run"):
            model_process.call(smoke_model, expected, method, False)


def test_a_process_that_died_while_idle_is_replaced_without_failing_the_request(smoke_model, make_image):
    process = ModelProcess()
    try:
        predictor = ProcessPredictor.start(smoke_model, process=process).wait_ready()
        first = process.pid
        process._process.kill()
        process._process.wait()
        assert predictor.predict(make_image()).model_name == "smoke"  # loads again in a new process
        assert process.pid not in (None, first)
    finally:
        process.stop()


def test_a_process_that_dies_mid_call_is_an_error_once_then_starts_again(smoke_model, make_image, monkeypatch):
    process = ModelProcess()
    try:
        predictor = ProcessPredictor.start(smoke_model, process=process).wait_ready()
        send = ModelProcess._send

        def send_then_die(self, message):
            # Stopped first, so it cannot answer before it dies (on a busy machine it sometimes did, and the call
            # succeeded): the message is sent to a live process that then dies without a reply.
            os.kill(self._process.pid, signal.SIGSTOP)
            send(self, message)
            self._process.kill()

        monkeypatch.setattr(ModelProcess, "_send", send_then_die)
        with pytest.raises(ModelError, match="stopped"):
            predictor.predict(make_image())
        assert process.pid is None
        monkeypatch.setattr(ModelProcess, "_send", send)
        assert predictor.predict(make_image()).model_name == "smoke"
    finally:
        process.stop()


def test_a_session_waits_for_others_only_so_long(smoke_model, model_process):
    busy = ModelProcess(busy_timeout=0.05)
    busy._lock.acquire()  # another session's long call
    try:
        with pytest.raises(ModelError, match="busy"):
            ProcessPredictor.start(smoke_model, process=busy)
    finally:
        busy._lock.release()
        busy.stop()


def test_large_batches_go_in_chunks_and_come_back_whole(smoke_model, smoke_predictor, model_process, monkeypatch):
    sizes = []
    call = ModelProcess.call

    def counting(self, path, expected, method, tta, *args):
        if method == "raw_probs_and_features":
            sizes.append(len(args[0]))
        return call(self, path, expected, method, tta, *args)

    monkeypatch.setattr(ModelProcess, "call", counting)
    x = np.random.default_rng(1).random((inference_process.CHUNK * 2 + 5, 32, 32, 1), np.float32)
    remote = ProcessPredictor.start(smoke_model, process=model_process)
    probs, feats = remote.raw_probs_and_features(x)
    want_probs, want_feats = smoke_predictor.with_tta(remote.tta).raw_probs_and_features(x)
    np.testing.assert_allclose(probs, want_probs, atol=1e-6)
    np.testing.assert_allclose(feats, want_feats, atol=1e-5)
    assert sizes == [inference_process.CHUNK, inference_process.CHUNK, 5]
    empty_probs, _ = remote.raw_probs_and_features(x[:0])
    assert empty_probs.shape == (0, len(CLASS_NAMES))


def test_replies_are_rebuilt_as_arrays_and_plain_values_only():
    import io
    import os
    import pickle

    ok = pickle.dumps(("ok", (np.arange(6, dtype=np.float32).reshape(2, 3), None, "text", 1.5)))
    status, (arr, none, text, number) = model_replies.ReplyUnpickler(io.BytesIO(ok)).load()
    assert status == "ok" and arr.shape == (2, 3) and (none, text, number) == (None, "text", 1.5)
    evils = (os.system, ("ok", subprocess.Popen), np.testing.assert_allclose)  # numpy, but not an array
    for evil in map(pickle.dumps, evils):
        with pytest.raises(pickle.UnpicklingError):
            model_replies.ReplyUnpickler(io.BytesIO(evil)).load()


@pytest.mark.parametrize("reply", ["garbage", ("ok",), ("error", "no class"), ("maybe", 1), ("error", (1, 2))])
def test_a_reply_that_is_not_an_answer_stops_the_process(reply):
    from multiprocessing import Pipe
    from types import SimpleNamespace

    process = ModelProcess()
    ours, theirs = Pipe()
    stopped = []
    process._conn, process._process = ours, SimpleNamespace(poll=lambda: None, pid=1)
    process._finalizer = lambda: stopped.append(True)
    theirs.send(reply)
    with pytest.raises(ModelError, match="not an answer"):
        process._receive(5)
    assert stopped and process.pid is None


def test_a_preloaded_process_that_died_before_answering_is_replaced(smoke_model, make_image):
    process = ModelProcess()
    try:
        predictor = ProcessPredictor.start(smoke_model, process=process)  # its preload is not answered yet
        process._process.kill()
        process._process.wait()
        assert predictor.predict(make_image()).model_name == "smoke"
    finally:
        process.stop()


def test_an_empty_batch_gets_empty_answers_without_a_call(smoke_model, model_process):
    remote = ProcessPredictor.start(smoke_model, process=model_process)
    empty = np.zeros((0, 32, 32, 1), np.float32)
    assert [a.shape for a in remote._explained(empty)] == [(0, 32, 32), (0, len(CLASS_NAMES)), (0, 0)]
    probs, feats = remote.explain_arrays(empty)
    assert probs.shape == (0, len(CLASS_NAMES)) and feats.shape == (0, 32, 32)


def test_no_answer_in_time_stops_the_process(smoke_model, monkeypatch):
    process = ModelProcess(call_timeout=0.0)
    monkeypatch.setattr(inference_process, "LOAD_TIMEOUT_S", 0.01)  # far less than loading TensorFlow takes
    try:
        with pytest.raises(ModelError, match="no answer within"):
            ProcessPredictor.start(smoke_model, process=process).wait_ready()
        assert process.pid is None
    finally:
        process.stop()


def test_the_server_process_never_imports_tensorflow(smoke_model, make_image, tmp_path):
    """The point of the model process: predictions with Grad-CAM while TensorFlow stays out of the caller."""
    make_image().save(tmp_path / "slice.png")
    code = ("import json, sys; from brainclf.inference.inference_process import ProcessPredictor; "
            f"p = ProcessPredictor.start({str(smoke_model)!r}); "
            f"r = p.predict({str(tmp_path / 'slice.png')!r}, explain=True); "
            "print(json.dumps([r.model_name, list(r.heatmap.shape), 'tensorflow' in sys.modules, "
            "'keras' in sys.modules]))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert json.loads(out.stdout.strip().splitlines()[-1]) == ["smoke", [32, 32], False, False]


def test_many_sessions_at_once_get_the_serial_answers(smoke_model, model_process, make_image):
    """Sessions share one model process: their calls queue on its pipe and never get each other's answers
    (half of them with flip TTA, half without)."""
    from concurrent.futures import ThreadPoolExecutor

    predictor = ProcessPredictor.start(smoke_model, process=model_process).wait_ready()
    images = [make_image(c, seed=i) for i, c in enumerate(CLASS_NAMES * 4)]

    def run(i: int):
        return predictor.with_tta(i % 2 == 0).predict(images[i], name=str(i), explain=True)

    serial = [run(i) for i in range(len(images))]
    with ThreadPoolExecutor(8) as pool:
        together = list(pool.map(run, range(len(images))))
    for s, t in zip(serial, together):
        assert (t.name, t.probabilities) == (s.name, pytest.approx(s.probabilities, abs=1e-6))
        np.testing.assert_allclose(t.heatmap, s.heatmap, atol=1e-5)


@pytest.mark.parametrize("array", [np.array([1, "x", None], dtype=object), np.zeros(2, dtype=[("a", "O")]),
                                   np.array(["text"]), np.zeros(2, dtype="V8"), np.zeros(2, dtype=[("a", "f4")])])
def test_a_reply_with_anything_but_a_numeric_array_is_refused(array):
    """A forged object array used to pass the unpickler and crash the server (SIGSEGV) in np.concatenate."""
    import io
    import pickle
    from multiprocessing import Pipe
    from types import SimpleNamespace

    with pytest.raises(pickle.UnpicklingError, match="dtype"):
        model_replies.ReplyUnpickler(io.BytesIO(pickle.dumps(("ok", array)))).load()
    process = ModelProcess()
    ours, theirs = Pipe()
    process._conn, process._process = ours, SimpleNamespace(poll=lambda: None, pid=1)
    process._finalizer = lambda: None
    theirs.send(("ok", (array, np.zeros(2, np.float32))))
    with pytest.raises(ModelError, match="not an answer"):
        process._receive(5)
    for fine in (np.zeros(3, bool), np.arange(3, dtype=np.int64), np.zeros(2, np.complex64), np.float32(1.5)):
        assert model_replies.ReplyUnpickler(io.BytesIO(pickle.dumps(fine))).load().dtype == fine.dtype


def test_the_model_process_keeps_every_shipped_model_loaded_when_users_alternate(tmp_path, monkeypatch):
    """With 4 kept and 5 shipped, five users on five models made every call load a model again (~1 s each, under
    the model lock)."""
    from collections import OrderedDict
    from types import SimpleNamespace

    from brainclf.inference import model_worker

    loads = []

    class Stub:
        card = SimpleNamespace(name="m", version="1", file_sha256="x")
        contract = SimpleNamespace(shape=(4, 4, 1))

        @classmethod
        def load(cls, path):
            loads.append(path)
            return cls()

        def _explained(self, x):
            return None

    monkeypatch.setattr(model_worker, "Predictor", Stub)
    monkeypatch.setattr(model_worker, "identity", lambda card: "same")
    paths = []
    for k in range(len(list(Path("models").glob("*.keras")))):
        (tmp_path / f"m{k}.keras").write_bytes(b"x")
        paths.append(str(tmp_path / f"m{k}.keras"))
    models = OrderedDict()
    for _ in range(3):
        for p in paths:
            model_worker._loaded(models, p, "same")
    assert len(paths) >= 5 and len(loads) == len(paths)


def test_an_unexpected_failure_in_the_model_process_is_logged_there_and_answered_without_its_text(monkeypatch,
                                                                                                   caplog):
    """The caller gets "the model failed (TypeError)", never the error's words (they may quote a path); the model
    process's log keeps the traceback, so the bug can be found."""
    import multiprocessing
    import threading

    from brainclf.inference import model_worker

    class Broken:
        def with_tta(self, tta):
            return self

        def gradcam(self, *args):
            raise TypeError("inside /srv/secret/path")

    monkeypatch.setattr(model_worker, "_loaded", lambda models, path, expected: Broken())
    server, worker = multiprocessing.Pipe()
    serving = threading.Thread(target=model_worker._serve, args=(worker,))
    with caplog.at_level("ERROR", logger=model_worker.__name__):
        serving.start()
        server.send(("gradcam", "m.keras", (), False, ()))
        answer = server.recv()
        server.close()
        serving.join(timeout=10)
    assert answer == ("error", ("ModelError", "the model failed (TypeError)"))
    assert "/srv/secret" not in str(answer)
    logged = [r for r in caplog.records if r.exc_info]
    assert logged and "inside /srv/secret/path" in caplog.text
