"""tf.distribute.MirroredStrategy without GPUs: the CPU split into two logical devices, in a fresh process
(tests/mirrored_cpu_check.py), because the split must happen before TensorFlow initialises its devices and
this test process has long done that."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).with_name("mirrored_cpu_check.py")
TOLERANCE = 1e-5  # float32 round-off of summing two half-batch gradients instead of one batch's


def run_check(*args: str) -> dict:
    r = subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_mirrored_epoch_over_two_logical_cpus_equals_single_device():
    result = run_check("compare")
    assert result["logical_cpus"] == ["/device:CPU:0", "/device:CPU:1"]
    # brainclf's --strategy mirrored picks up both logical CPUs, not only the GPUs it was written for.
    assert result["brainclf_mirrored_replicas"] == 2
    for optimizer in ("sgd", "adamw"):
        r = result[optimizer]
        assert r["replicas"] == 2
        # The epoch really moved the weights (far more than the tolerance), and both runs moved them alike.
        assert r["max_update"] > 100 * TOLERANCE, (optimizer, r)
        assert r["max_diff"] < TOLERANCE, (optimizer, r)


def test_brainclf_train_runs_mirrored_over_two_logical_cpus(synthetic_dataset):
    result = run_check("train", str(synthetic_dataset))
    assert result["brainclf_mirrored_replicas"] == 2
    assert result["epoch"] == 1 and result["saved"]
    assert math.isfinite(result["loss"]) and result["loss"] > 0
