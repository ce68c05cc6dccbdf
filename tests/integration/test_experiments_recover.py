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


def run_failing(root, env, *args):
    """`dvc exp run --temp ARGS`, expected to fail: its completed process."""
    import subprocess

    return subprocess.run(
        ["dvc", "exp", "run", "--temp", *args],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=1800,
    )


def test_a_failed_temporary_experiment_then_a_valid_one(repo_copy):
    root, env = repo_copy
    failing = run_failing(root, env, "-n", "bad-target", "cmb_maps", "-S", "instrument.target_GHz=150")
    assert failing.returncode != 0
    assert "failed to reproduce 'cmb_maps'" in failing.stderr and "exited with 2" in failing.stderr  # the check's exit
    out = sh(["dvc", "exp", "run", "--temp", "-n", "after-failure", "lensing_validate", "-S", "scale=smoke"], root, env)
    assert "failed to load directory" not in out.stdout + out.stderr
    shown = json.dumps(json.loads(sh(["dvc", "exp", "show", "--json"], root, env).stdout))
    assert "after-failure" in shown


def test_an_experiment_that_failed_at_its_last_stage_does_not_break_the_next(repo_copy):
    """A temporary smoke experiment whose last lensing stage fails (after simulate, validate and train ran and went
    to the run cache), then the same experiment with the failure gone: the second restores the first three stages
    from the run cache and runs the evaluation (before, it stopped with "failed to load directory ('datasets',
    'lensing')": the listings of the outputs dvc.lock records were in no cache of a fresh clone)."""
    root, env = repo_copy
    head = sh(["git", "rev-parse", "HEAD"], root, env).stdout.strip()
    evaluate = root / "stages" / "lensing_evaluate.py"
    code = evaluate.read_text()
    evaluate.write_text(
        code.replace("def main() -> None:\n", 'def main() -> None:\n    raise SystemExit("fails")\n', 1)
    )
    sh(["git", "commit", "-qam", "a last stage that fails"], root, env)
    try:
        failing = run_failing(root, env, "-n", "fails-last", "lensing_evaluate", "-S", "scale=smoke")
        assert failing.returncode != 0 and "failed to reproduce 'lensing_evaluate'" in failing.stderr, failing.stderr
    finally:
        sh(["git", "reset", "-q", "--hard", head], root, env)
    out = sh(
        ["dvc", "exp", "run", "--temp", "-n", "after-last-failed", "lensing_evaluate", "-S", "scale=smoke"], root, env
    )
    log = out.stdout + out.stderr
    assert "failed to load directory" not in log
    # the stages the failed experiment ran come from the run cache (evaluate too, where an earlier test ran it)
    assert "Stage 'lensing_simulate' is cached" in log and "lensing_evaluate" in log, log
