"""Two `dvc exp run` started in one workspace: the second rewrites params.yaml before DVC refuses it as busy, and
the first must stop rather than go on with parameters it did not start with."""

import subprocess
import time

import pytest

from tests.integration.conftest import sh

pytestmark = pytest.mark.slow


def test_a_second_experiment_in_the_workspace_stops_the_first_naming_the_change(repo_copy, tmp_path):
    """The first experiment (smoke lensing, up to training) is running its first stage when a second one with
    another learning rate is started in the same workspace: DVC refuses the second, the first stops with exit
    status 2 at its next stage boundary naming `lensing_train.learning_rate 0.001 -> 0.01`, and no model is trained
    (before, it trained with the second's learning rate and registered a model under its own name)."""
    root, env = repo_copy
    work = tmp_path / "ws"
    sh(["git", "clone", "-q", str(root), str(work)], tmp_path, env)
    first = subprocess.Popen(
        ["dvc", "exp", "run", "-n", "first", "lensing_train", "-S", "scale=smoke"],
        cwd=work,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 600
        # the guard's record appears when the first stage of the first run starts
        while not list((work / ".dvc" / "tmp").glob("cmbml-params-*.json")):
            assert first.poll() is None and time.monotonic() < deadline, "the first experiment never started a stage"
            time.sleep(0.2)
        second = subprocess.run(
            ["dvc", "exp", "run", "-n", "second", "-S", "scale=smoke", "-S", "lensing_train.learning_rate=0.01"],
            cwd=work,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        stdout, stderr = first.communicate(timeout=1200)
    finally:
        if first.poll() is None:
            first.kill()
    assert second.returncode != 0, second.stdout + second.stderr
    assert "learning_rate: 0.01" in (work / "params.yaml").read_text()  # what the second left behind
    assert first.returncode != 0, stdout + stderr
    assert "params.yaml changed while this DVC run was going" in stderr, stderr
    assert "lensing_train.learning_rate 0.001 -> 0.01" in stderr, stderr
    assert not (work / "models" / "lensing" / "model.keras").exists()
