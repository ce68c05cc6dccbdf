"""Distributed training: the `lensing_train` and `cenn_train` stages with `strategy: mirrored` over two logical CPU
devices (how a two-GPU node looks to TensorFlow) give the losses of single-device training, epoch by epoch: the
global batch is split between the replicas, not multiplied by them."""

import json
import subprocess
import sys

import pytest

from tests.integration.conftest import sh

pytestmark = pytest.mark.slow

SMOKE = ["scale=smoke", "cenn=B"]  # what the CENN pipeline test ran: its datasets come from the run cache

# One process per experiment, as a stage is: the logical devices must be set before TensorFlow starts, and
# collective ops of a second MirroredStrategy in the same process clash with the first's.
DRIVER = r"""
import json, sys
import tensorflow as tf

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

import importlib
from stages.cli import params_compose
from cmbml.common.training import distribution_strategy

experiment, smoke = sys.argv[1], json.loads(sys.argv[2])
out = {}
for strategy in ("single", "mirrored"):
    params_compose([*smoke, f"{experiment}_train.strategy={strategy}"], "params.yaml")
    importlib.import_module(f"stages.{experiment}_train").main()
    setup = importlib.import_module(f"cmbml.{experiment}.setup").load()
    out[strategy] = json.loads(setup.paths.history.read_text())["history"]
out["replicas"] = distribution_strategy("mirrored").num_replicas_in_sync
print("RESULT " + json.dumps(out))
"""


@pytest.mark.parametrize("experiment", ["lensing", "cenn"])
def test_mirrored_training_on_two_devices_matches_single_device_training(repo_copy, tmp_path, experiment):
    root, env = repo_copy
    sh(["cmbml", "params", "compose", *SMOKE], root, env)
    gate = {"lensing": "lensing_validate", "cenn": "cenn_validate@training"}[experiment]  # the training data, gated
    sh(["dvc", "repro", gate], root, env)
    run_env = {**env, "PYTHONPATH": "src:.", "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"}
    try:
        out = subprocess.run(
            [sys.executable, "-c", DRIVER, experiment, json.dumps(SMOKE)],
            cwd=root,
            env=run_env,
            capture_output=True,
            text=True,
            timeout=1800,
        )
    finally:
        sh(["cmbml", "params", "compose", *SMOKE], root, env)
    assert out.returncode == 0, out.stderr[-4000:]
    result = json.loads(out.stdout.split("RESULT ", 1)[1])
    assert result["replicas"] == 2
    single, mirrored = result["single"], result["mirrored"]
    assert len(single) == len(mirrored) == 2  # smoke: 2 epochs
    for a, b in zip(single, mirrored):
        for key in ("loss", "val_loss"):
            assert b[key] == pytest.approx(a[key], rel=1e-4), (a["epoch"], key, a[key], b[key])
    assert single[0]["loss"] != single[1]["loss"]  # the model learned: a constant would match trivially
