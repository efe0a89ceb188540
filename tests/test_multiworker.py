"""--strategy multiworker: brainclf.training.distributed's training loop, and two real worker processes on 127.0.0.1.

The two-worker test kills a worker during the second epoch and restarts the job, as a cluster scheduler would,
then checks that training resumed from the chief's last finished epoch, that both workers ended with the same
weights, and that only the chief wrote the run dir, the model and its card."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from brainclf.errors import ConfigError
from brainclf.training import distributed

ROOT = Path(__file__).resolve().parents[1]
EPOCHS = 4


def test_loop_matches_model_fit_on_one_device():
    """One epoch of the custom loop equals Model.fit's on the same data in the same order (tiny BatchNorm-free
    model, SGD, sample weights, a partial last batch): same weights, same logged loss and accuracy."""
    import keras
    import tensorflow as tf

    rng = np.random.default_rng(0)
    n, batch = 21, 8
    x = rng.uniform(0, 1, (n, 12, 12, 1)).astype(np.float32)
    y, w = rng.integers(0, 4, n), rng.choice([1.0, 2.0], n).astype(np.float32)

    def build():
        keras.utils.set_random_seed(0)
        inputs = keras.Input((12, 12, 1))
        h = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(4, 3, activation="relu")(inputs))
        model = keras.Model(inputs, keras.layers.Dense(4, activation="softmax")(h))
        model.compile(optimizer=keras.optimizers.SGD(0.5), loss="sparse_categorical_crossentropy",
                      metrics=["accuracy"])
        return model

    def dataset():
        return tf.data.Dataset.from_tensor_slices((x, y, w)).batch(batch)

    class End:  # stands in for brainclf.training.callbacks.EpochEnd
        def begin(self):
            pass

        def batch(self, i):
            self.batches = i + 1

        def __call__(self, model, epoch, logs):
            self.logs = logs
            return False

    reference = build()
    history = reference.fit(dataset(), epochs=1, shuffle=False, verbose=0).history
    model, end = build(), End()
    sizes = distributed.batch_sizes(n, batch, False)
    cancelled = distributed.fit(model, tf.distribute.get_strategy(), dataset(), sizes, 1, 0, end, None)
    assert not cancelled and end.batches == 3
    moved = max(float(np.abs(a - b).max()) for a, b in zip(reference.get_weights(), build().get_weights()))
    diff = max(float(np.abs(a - b).max()) for a, b in zip(reference.get_weights(), model.get_weights()))
    assert moved > 1e-2 and diff < 1e-6, (moved, diff)
    assert end.logs["loss"] == pytest.approx(history["loss"][0], rel=1e-5)
    assert end.logs["accuracy"] == pytest.approx(history["accuracy"][0], rel=1e-5)


def test_batch_sizes():
    assert distributed.batch_sizes(21, 8, False) == [8, 8, 5]
    assert distributed.batch_sizes(17, 8, True) == [8, 8]
    assert distributed.batch_sizes(16, 8, False) == [8, 8]


def tf_config(ports: list[int], index: int, task_type: str = "worker", chief: bool = False) -> str:
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    if chief:
        cluster = {"chief": cluster["worker"][:1], "worker": cluster["worker"][1:]}
    return json.dumps({"cluster": cluster, "task": {"type": task_type, "index": index}})


def test_worker_role(monkeypatch, tmp_path):
    monkeypatch.delenv(distributed.SCRATCH_ENV, raising=False)
    monkeypatch.setenv("TF_CONFIG", tf_config([1, 2, 3], 0))
    role = distributed.worker_role()
    assert role.chief and role.workers == 3 and role.write_dir(tmp_path / "run") == tmp_path / "run"
    monkeypatch.setenv("TF_CONFIG", tf_config([1, 2, 3], 1))
    role = distributed.worker_role()
    assert not role.chief and role.write_dir(tmp_path / "run").name == "run-worker1"
    assert tmp_path not in role.write_dir(tmp_path / "run").parents  # a temporary dir, not the run dir
    monkeypatch.setenv(distributed.SCRATCH_ENV, str(tmp_path / "w1"))
    # Named for its worker: two workers sharing one scratch folder each hold their own (folder_lock).
    assert role.write_dir(tmp_path / "run") == tmp_path / "w1" / "run-worker1"
    # With a "chief" task in the cluster, worker 0 is an ordinary worker.
    monkeypatch.setenv("TF_CONFIG", tf_config([1, 2, 3], 0, chief=True))
    assert not distributed.worker_role().chief
    monkeypatch.setenv("TF_CONFIG", tf_config([1, 2, 3], 0, "chief", chief=True))
    assert distributed.worker_role().chief and distributed.worker_role().workers == 3
    for bad in ("", "{not json", json.dumps({"cluster": {"worker": ["a:1"]}})):
        monkeypatch.setenv("TF_CONFIG", bad)
        with pytest.raises(ConfigError, match="TF_CONFIG"):
            distributed.worker_role()
    # What TensorFlow refused only after the run's state was saved, with a traceback: now refused up front.
    two = {"worker": ["h:1", "h:2"]}
    for cluster, task, message in ((two, {"type": "worker", "index": 5}, "lists 2 worker address"),
                                   (two, {"type": "worker", "index": -1}, "lists 2 worker address"),
                                   ({"worker": "host:2222"}, {"type": "worker", "index": 0}, "a list of"),
                                   ({"chief": ["h:0", "h:9"], **two}, {"type": "chief", "index": 1}, "one chief"),
                                   (two, {"type": "chief", "index": 0}, "lists 0 chief address")):
        monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": cluster, "task": task}))
        with pytest.raises(ConfigError, match=message):
            distributed.worker_role()


def free_ports(n: int) -> list[int]:
    """Ports the OS hands out for port 0 (all bound at once, so they differ), released for the workers."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def start_workers(data: Path, tmp: Path, log_name: str) -> list[subprocess.Popen]:
    ports = free_ports(2)
    procs = []
    for i in range(2):
        env = {**os.environ, "TF_CONFIG": tf_config(ports, i), "BRAINCLF_RUNS": str(tmp / "runs"),
               distributed.SCRATCH_ENV: str(tmp / f"w{i}"), "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": ""}
        args = [sys.executable, "-m", "brainclf", "train", "--data", str(data), "--name", "mw", "--arch", "seed",
                "--size", "32", "--epochs", str(EPOCHS), "--batch-size", "8", "--max-images", "28",
                "--models-dir", str(tmp / "models"), "--strategy", "multiworker"]
        with open(tmp / f"{log_name}{i}.log", "w") as log:
            procs.append(subprocess.Popen(args, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT))
    return procs


def kill(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGKILL)
        p.wait(timeout=30)


def chief_epoch(tmp: Path) -> int:
    try:
        return json.loads((tmp / "runs" / "mw" / "state.json").read_text())["epoch"]
    except (FileNotFoundError, json.JSONDecodeError):
        return 0


def weights(path: Path) -> list[np.ndarray]:
    import keras

    return keras.models.load_model(path, safe_mode=True).get_weights()


def test_two_workers_resume_after_a_kill_and_end_alike(synthetic_dataset, tmp_path):
    procs = start_workers(synthetic_dataset, tmp_path, "first")
    try:
        deadline = time.time() + 120
        # Wait for both workers' epoch-1 checkpoints (worker 1 writes last.keras after best.keras): were worker 1
        # killed mid-save, a restart that never beats epoch 1 would leave it no best.keras to compare below.
        worker1_last = tmp_path / "w1" / "mw-worker1" / "last.keras"
        while ((chief_epoch(tmp_path) < 1 or not worker1_last.exists()) and time.time() < deadline
               and all(p.poll() is None for p in procs)):
            time.sleep(0.05)
        # Worker 1 dies during the second epoch; the chief would stop on its own once worker 1 misses its
        # heartbeats, but a scheduler restarting the job ends it too.
        kill(procs[1:])
        kill(procs[:1])
    finally:
        kill(procs)
    logs = "\n".join((tmp_path / f"first{i}.log").read_text()[-3000:] for i in range(2))
    resumed_from = chief_epoch(tmp_path)
    assert 1 <= resumed_from < EPOCHS, logs

    procs = start_workers(synthetic_dataset, tmp_path, "second")
    try:
        codes = [p.wait(timeout=240) for p in procs]
    finally:
        kill(procs)
    out = [(tmp_path / f"second{i}.log").read_text() for i in range(2)]
    assert codes == [0, 0], "\n".join(o[-3000:] for o in out)

    state = json.loads((tmp_path / "runs" / "mw" / "state.json").read_text())
    assert state["epoch"] == EPOCHS and len(state["history"]["loss"]) == EPOCHS
    # The restart trained only the epochs after the resume point: its first finished epoch is the next one.
    for text in out:
        assert f"epoch {resumed_from + 1}/{EPOCHS} " in text and f"epoch {resumed_from}/{EPOCHS} " not in text

    # Both workers hold the same weights at the end, and the saved model is the chief's best checkpoint.
    chief, other = tmp_path / "runs" / "mw", tmp_path / "w1" / "mw-worker1"
    for name in ("last.keras", "best.keras"):
        for a, b in zip(weights(chief / name), weights(other / name), strict=True):
            np.testing.assert_array_equal(a, b)
    for a, b in zip(weights(chief / "best.keras"), weights(tmp_path / "models" / "mw.keras"), strict=True):
        np.testing.assert_array_equal(a, b)

    card = json.loads((tmp_path / "models" / "mw.json").read_text())
    assert card["training"]["distribution"] == {"strategy": "multiworker", "workers": 2, "replicas": 2}
    assert card["training"]["epochs_run"] == EPOCHS
    # Only the chief wrote the run dir and the model; worker 1 wrote its scratch dir, worker 0 none.
    assert sorted(p.name for p in (tmp_path / "models").iterdir()) == ["mw.json", "mw.keras"]
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["mw"]
    assert not (tmp_path / "w0").exists()
    assert "the chief saves the model" in out[1]
