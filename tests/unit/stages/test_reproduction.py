"""`cmbml check-reproduction`: a run on this machine against the committed one. Outputs of the stages no network
enters must match dvc.lock byte for byte; the metrics files' figures must agree within a relative tolerance."""

import json
import subprocess

import yaml

from stages.reproduction import Reproduction, compare_figures, compare_locks, lock_outputs
from tests.conftest import REPO
from tests.helpers import run_cmbml

LOCK = {
    "stages": {
        "simulate": {"deps": [{"path": "src"}], "outs": [{"path": "datasets/x.h5", "md5": "a"}]},
        "train": {"deps": [{"path": "datasets/x.h5"}], "outs": [{"path": "models/lensing", "md5": "m.dir"}]},
        "evaluate": {"deps": [{"path": "models/lensing"}], "outs": [{"path": "metrics/l.json", "md5": "e"}]},
        "gate": {"deps": [{"path": "datasets/x.h5"}], "outs": [{"path": "reports/v.json", "md5": "g"}]},
    }
}


def test_stages_are_sorted_by_whether_a_network_enters_them():
    fresh = json.loads(json.dumps(LOCK))
    fresh["stages"]["simulate"]["outs"][0]["md5"] = "b"  # another machine's bits
    fresh["stages"]["evaluate"]["outs"][0]["md5"] = "f"  # a network's figures: compared as figures instead
    del fresh["stages"]["gate"]
    result = Reproduction()
    compare_locks(lock_outputs(yaml.safe_dump(LOCK)), lock_outputs(yaml.safe_dump(fresh)), ["models/lensing"], result)
    assert result.differing == {"simulate": ["datasets/x.h5"]} and sorted(result.network) == ["evaluate", "train"]
    assert result.not_run == ["gate"] and not result.ok


def test_figures_are_equal_close_or_outside():
    diff = {
        "metrics/l.json": {
            "rho_qe_mean": {"old": 0.918, "new": 0.918},
            "rho_cnn_mean": {"old": 0.919, "new": 0.919 * (1 + 3e-7)},
            "mse": {"old": 1.0, "new": 1.01},
            "n_evaluation": {"old": 1000, "new": 1000},
        }
    }
    result = Reproduction()
    compare_figures(diff, rtol=1e-3, atol=1e-9, result=result)
    assert (result.figures_equal, result.figures_close) == (2, 1) and len(result.outside) == 1
    assert "metrics/l.json: mse 1 -> 1.01" in result.outside[0] and 0.0099 < result.largest_relative < 0.0100


def run(cwd, *args):
    return run_cmbml("check-reproduction", *args, cwd=cwd)


def test_the_committed_run_reproduces_itself_and_a_changed_one_is_named(tmp_path):
    """On a clone of the repository (its dvc.lock and metrics as committed) the check passes; a simulated sky with
    other bits (its md5 in dvc.lock changed) and a figure 5% off (beyond the 2% tolerance) fail it, each named, with exit status 1."""
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(REPO), str(clone)], check=True)
    out = run(clone)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "reproduced: this run agrees with HEAD" in out.stdout and " 0 outside" in out.stdout
    lock = yaml.safe_load((clone / "dvc.lock").read_text())
    lock["stages"]["cmb_maps"]["outs"][0]["md5"] = "0" * 32 + ".dir"
    (clone / "dvc.lock").write_text(yaml.safe_dump(lock, sort_keys=False))
    metrics = json.loads((clone / "metrics" / "lensing.json").read_text())
    key = next(k for k, v in metrics.items() if isinstance(v, float) and v > 0)
    metrics[key] *= 1.05
    (clone / "metrics" / "lensing.json").write_text(json.dumps(metrics))
    out = run(clone)
    assert out.returncode == 1, out.stdout + out.stderr
    assert "cmb_maps: differs in" in out.stdout and f"metrics/lensing.json: {key}" in out.stdout
