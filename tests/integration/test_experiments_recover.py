"""Experiments in a fresh clone: one that fails after its first stage leaves nothing that breaks the next.

The clone has only data/ in its cache (no pipeline outputs), like a new user's. The failing experiment runs
`spectra` (its cosmology is valid) and stops at `cmb_maps` (a target channel the instrument table lacks);
the valid one reuses `spectra` from the run cache and runs a targeted part of the lensing pipeline. Both
run in DVC's temporary executors, as queued sweeps do.
"""

import json

import pytest

from tests.integration.conftest import sh

pytestmark = pytest.mark.slow


def test_a_failed_temporary_experiment_then_a_valid_one(repo_copy):
    import subprocess

    root, env = repo_copy
    failing = subprocess.run(
        ["dvc", "exp", "run", "--temp", "-n", "bad-target", "cmb_maps", "-S", "instrument.target_GHz=150"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=1800,
    )
    assert failing.returncode != 0
    assert "failed to reproduce 'cmb_maps'" in failing.stderr and "exited with 2" in failing.stderr  # the check's exit
    out = sh(["dvc", "exp", "run", "--temp", "-n", "after-failure", "lensing_validate", "-S", "scale=smoke"], root, env)
    assert "failed to load directory" not in out.stdout + out.stderr
    shown = json.dumps(json.loads(sh(["dvc", "exp", "show", "--json"], root, env).stdout))
    assert "after-failure" in shown
