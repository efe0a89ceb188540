"""Training under --strategy multiworker: tf.distribute.MultiWorkerMirroredStrategy, configured by TF_CONFIG.

Keras 3's Model.fit rejects a dataset distributed by this strategy (keras-team/keras#20585: "Attempt to convert
a value (PerReplica…) to a Tensor"), so the epochs run in TensorFlow's custom-training-loop form instead:
strategy.experimental_distribute_dataset, a tf.function step around strategy.run, tf.nn.compute_average_loss
over the global batch and strategy.reduce. The end of every epoch is brainclf.training.callbacks.EpochEnd, the same
code Model.fit's callback calls, so history, checkpoints, early stopping and state.json work as for one process.

Every worker runs the same command. Only the chief (task type "chief", or worker 0 when the cluster has no
chief) writes the run dir; the others write their checkpoints to a scratch dir (saving may involve collectives,
so every worker saves). Resuming reads the chief's state.json and last.keras on every worker, so with several
machines the run dir must be on storage they share; `agree` stops a worker that sees another resume point or
other start weights instead of letting it hang in a collective or train diverged copies. (A fresh model needs
no copying: variables created under this strategy take the chief's initial values, checked with two workers.)

Keras creates BatchNorm's moving statistics without a cross-replica aggregation, so during an epoch each
replica keeps its own; the precise-BN recalibration at the epoch end recomputes them from the same images on
every worker, which makes them equal again before validation and checkpointing.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import ConfigError

SCRATCH_ENV = "BRAINCLF_WORKER_DIR"  # where a non-chief worker writes (kept); default: a temporary dir, removed


@dataclass(frozen=True)
class WorkerRole:
    task_type: str
    index: int
    workers: int  # tasks in the cluster that train (chief + workers)
    has_chief: bool = False  # a "chief" task in the cluster; otherwise worker 0 is the chief

    @property
    def chief(self) -> bool:
        return self.task_type == "chief" or (self.task_type == "worker" and self.index == 0 and not self.has_chief)

    def write_dir(self, run_dir: Path) -> Path:
        """run_dir for the chief; a scratch dir named like it for the other workers."""
        if self.chief:
            return run_dir
        base = os.environ.get(SCRATCH_ENV)
        if not base:
            base = tempfile.mkdtemp(prefix=f"brainclf-{self.task_type}{self.index}-")
            atexit.register(shutil.rmtree, base, ignore_errors=True)
        return Path(base) / f"{run_dir.name}-{self.task_type}{self.index}"  # its own: each worker holds it alone


def worker_role() -> WorkerRole:
    """This process's place in the cluster, read from TF_CONFIG (without starting the strategy)."""
    try:
        config = json.loads(os.environ.get("TF_CONFIG") or "{}")
        cluster, task = config["cluster"], config["task"]
        role = WorkerRole(task["type"], int(task["index"]), len(cluster.get("chief", [])) + len(cluster["worker"]),
                          has_chief=bool(cluster.get("chief")))
    except (ValueError, KeyError, TypeError) as e:
        raise ConfigError(f"--strategy multiworker needs TF_CONFIG with a cluster and this task ({e!r}); see "
                          "docs/multiworker.md.") from None
    if role.task_type not in ("chief", "worker"):
        raise ConfigError(f"TF_CONFIG task type {role.task_type!r}: only 'chief' and 'worker' tasks train here.")
    _check_cluster(cluster, role)
    return role


def _check_cluster(cluster: dict, role: WorkerRole) -> None:
    """Refuse (ConfigError) a cluster TensorFlow would reject only after this run's state is saved, with a
    traceback: jobs that are not lists of host:port addresses, more than one chief, this task's index outside its
    job's list."""
    jobs = {name: cluster.get(name) for name in ("chief", "worker") if name in cluster}
    bad = [name for name, hosts in jobs.items()
           if not isinstance(hosts, list) or not all(isinstance(h, str) and ":" in h for h in hosts)]
    if bad:
        raise ConfigError(f"TF_CONFIG cluster {', '.join(bad)}: expected a list of \"host:port\" addresses.")
    if len(jobs.get("chief") or []) > 1:
        raise ConfigError("TF_CONFIG names more than one chief: a cluster has at most one.")
    hosts = jobs.get(role.task_type) or []
    if not 0 <= role.index < len(hosts):
        raise ConfigError(f"TF_CONFIG task {role.task_type} {role.index}: its cluster lists {len(hosts)} "
                          f"{role.task_type} address(es), numbered from 0.")


def gather(strategy, values: list[float]) -> np.ndarray:
    """Every replica's copy of `values` (one row per replica, across all workers): a collective."""
    import tensorflow as tf

    @tf.function  # run eagerly, the strategy warns of "significant overhead"
    def rows(local):
        return strategy.gather(strategy.run(tf.identity, args=(local,)), axis=0)

    return rows(tf.constant([values], tf.float64)).numpy()


def agree(strategy, **values: int) -> None:
    """Refuse to go on unless every worker holds the same `values` (resume epoch, training settings, split, weights
    digest): a worker started with another --lr would otherwise drift apart silently."""
    rows = gather(strategy, [float(v) for v in values.values()])
    differ = [k for j, k in enumerate(values) if not np.all(rows[:, j] == rows[0, j])]
    if differ:
        raise ConfigError(f"The workers disagree on {', '.join(differ)} ({rows.tolist()} per replica): each must "
                          "see the same data and the chief's run dir (shared storage when on several machines).")


def checksum(obj) -> int:
    """CRC32 of a JSON-able value (the split's file list), to compare across workers."""
    return zlib.crc32(json.dumps(obj).encode())


def digest(model) -> int:
    """CRC32 of the model's and optimizer's variables: equal on every worker when they start alike."""
    crc = 0
    for v in list(model.weights) + list(model.optimizer.variables):
        crc = zlib.crc32(np.ascontiguousarray(np.asarray(v)).tobytes(), crc)
    return crc


def batch_sizes(n: int, batch: int, drop_remainder: bool) -> list[int]:
    """The global size of each batch of an epoch of `n` images."""
    full, rest = divmod(n, batch)
    return [batch] * full + ([rest] if rest and not drop_remainder else [])


def fit(model, strategy, dataset, sizes: list[int], epochs: int, initial_epoch: int, end, cancel) -> bool:
    """Train `model` (compiled; built under `strategy`) on `dataset` of (x, y) or (x, y, sample weight) batches,
    whose global sizes are `sizes`, from `initial_epoch` to `epochs`; `end` (training.callbacks.EpochEnd) after each
    epoch.
    Returns True if cancelled (on any worker: every worker stops at the same step)."""
    import tensorflow as tf

    with strategy.scope():
        model.optimizer.build(model.trainable_variables)  # no-op when resumed with its optimizer state
    distributed = strategy.experimental_distribute_dataset(dataset)
    step = _global_step(model, strategy, distributed)

    for epoch in range(initial_epoch, epochs):
        end.begin()
        totals = np.zeros(4)
        for i, (size, batch) in enumerate(zip(sizes, distributed)):
            flag = float(cancel is not None and cancel.is_set())
            totals += step(batch, tf.constant(size, tf.int64), tf.constant(flag, tf.float32)).numpy()
            if totals[3] > 0:
                return True  # the epoch is incomplete: the last finished one stays the resume point
            end.batch(i)
        stop = end(model, epoch, {"loss": float(totals[0] / totals[2]), "accuracy": float(totals[1] / totals[2])})
        # Every worker computes the same validation, so they stop early alike; agreeing anyway means a stray
        # difference cannot leave one worker waiting in a collective for a worker that has stopped.
        if gather(strategy, [float(stop)]).max() > 0:
            if not stop:
                end.state.stop("early stopping on another worker")
            return False
    return False


def _global_step(model, strategy, distributed):
    """step(batch, global batch size, stop flag) → summed (weighted loss, correct, images, stop) over the replicas:
    one optimizer step of every replica on its part of a global batch of `distributed`. The replica step and its
    tf.function are closures over the model and the strategy."""
    import keras
    import tensorflow as tf

    def replica_step(global_n, stop, x, y, w=None):
        w = tf.ones(tf.shape(y), tf.float32) if w is None else tf.cast(w, tf.float32)
        with tf.GradientTape() as tape:
            probs = tf.cast(model(x, training=True), tf.float32)
            per_image = keras.losses.sparse_categorical_crossentropy(y, probs)
            # Mean over the global batch (what Model.fit minimises); the optimizer sums the replicas' gradients.
            loss = tf.nn.compute_average_loss(per_image, sample_weight=w, global_batch_size=global_n)
            if model.losses:
                loss += tf.nn.scale_regularization_loss(tf.add_n(model.losses))
        grads = tape.gradient(loss, model.trainable_variables)
        model.optimizer.apply_gradients(zip(grads, model.trainable_variables))
        correct = tf.cast(tf.equal(tf.argmax(probs, 1), tf.cast(y, tf.int64)), tf.float32)
        n = tf.cast(tf.shape(y)[0], tf.float32)
        # Sums for the epoch's loss (weighted) and accuracy (unweighted), as Model.fit logs them, and the cancel
        # flag: one collective tells every worker whether any was cancelled.
        return tf.stack([tf.reduce_sum(w * per_image), tf.reduce_sum(correct), n, stop])

    # One trace for every batch, the partial last one included (tracing this step takes seconds).
    @tf.function(input_signature=[distributed.element_spec, tf.TensorSpec([], tf.int64),
                                  tf.TensorSpec([], tf.float32)])
    def step(batch, global_n, stop):
        return strategy.reduce("SUM", strategy.run(replica_step, args=(global_n, stop, *batch)), axis=None)

    return step
