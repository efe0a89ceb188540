"""One shared Predictor serves many sessions at once: concurrent predictions and Grad-CAMs must equal the
serial ones, and a background training must not disturb predictions made meanwhile."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from brainclf import CLASS_NAMES
from brainclf.serving import TrainingJobs
from brainclf.training import TrainConfig

N_THREADS, ROUNDS = 8, 3


@pytest.fixture
def uploads(make_image, png_bytes) -> list[bytes]:
    """8 different synthetic PNG uploads, two per class."""
    return [png_bytes(make_image(CLASS_NAMES[i % 4], seed=200 + i)) for i in range(N_THREADS)]


def predict_and_explain(predictor, data: bytes) -> tuple[np.ndarray, np.ndarray]:
    pred = predictor.predict(data, name="upload.png")
    probs = np.array([pred.probabilities[c] for c in CLASS_NAMES])
    return probs, predictor.gradcam(pred.model_input)


def test_concurrent_predict_and_gradcam_equal_serial(smoke_predictor, uploads):
    serial = [predict_and_explain(smoke_predictor, data) for data in uploads]
    assert len({tuple(np.round(p, 6)) for p, _ in serial}) > 1  # the images really differ
    barrier = threading.Barrier(N_THREADS)

    def worker(i: int):
        out = []
        for _ in range(ROUNDS):
            barrier.wait(timeout=60)  # every round starts together
            out.append(predict_and_explain(smoke_predictor, uploads[i]))
        return out

    with ThreadPoolExecutor(N_THREADS) as pool:
        results = list(pool.map(worker, range(N_THREADS)))
    for i, per_round in enumerate(results):
        assert len(per_round) == ROUNDS
        for probs, heat in per_round:
            np.testing.assert_allclose(probs, serial[i][0], atol=1e-6, rtol=0)
            assert heat.shape == serial[i][1].shape
            np.testing.assert_allclose(heat, serial[i][1], atol=1e-6, rtol=0)


def test_predictions_unchanged_while_training_runs(smoke_predictor, uploads, synthetic_dataset, tmp_path,
                                                   monkeypatch):
    monkeypatch.setenv("BRAINCLF_RUNS", str(tmp_path / "runs"))
    before = [predict_and_explain(smoke_predictor, data) for data in uploads]
    jobs = TrainingJobs()
    status = jobs.start(TrainConfig(image_size=32, epochs=50, batch_size=8), synthetic_dataset, "background",
                        models_dir=tmp_path / "models", owner="sub:tester")
    try:
        deadline = time.time() + 120
        while not (status.progress and status.progress.stage == "training") and status.active:
            assert time.time() < deadline, "training never started"
            time.sleep(0.05)
        assert status.active, status.error
        start_batches = status.progress.epoch * status.progress.batches + status.progress.batch
        during: list[list[tuple[np.ndarray, np.ndarray]]] = []

        def predict_meanwhile():
            t_end = time.time() + 3
            while time.time() < t_end or not during:
                during.append([predict_and_explain(smoke_predictor, data) for data in uploads])

        t = threading.Thread(target=predict_meanwhile)
        t.start()
        t.join(timeout=120)
        assert not t.is_alive()
        p = status.progress
        assert status.state == "running", status.error
        assert p.epoch * p.batches + p.batch > start_batches  # the training advanced while we predicted
    finally:
        jobs.cancel("sub:tester")  # the owner
        jobs.wait(timeout=300)
    assert status.state == "cancelled", status.error
    for results in during:
        for (probs, heat), (probs0, heat0) in zip(results, before):
            np.testing.assert_allclose(probs, probs0, atol=1e-6, rtol=0)
            np.testing.assert_allclose(heat, heat0, atol=1e-6, rtol=0)
    after = [predict_and_explain(smoke_predictor, data) for data in uploads]
    for (probs, heat), (probs0, heat0) in zip(after, before):
        np.testing.assert_allclose(probs, probs0, atol=1e-6, rtol=0)
        np.testing.assert_allclose(heat, heat0, atol=1e-6, rtol=0)
