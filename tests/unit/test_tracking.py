"""MLflow runs always close: FAILED on an exception, KILLED on SIGTERM/SIGINT, and a run left RUNNING by a
process killed outright is closed at the next stage start. Two processes can log to one SQLite store at once.
Real MLflow on a SQLite store in a temporary folder; the processes are real and really killed."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.slow

WORKER = textwrap.dedent("""
    import sys, time
    import mlflow
    from stages._tracking import closing_run
    mlflow.set_tracking_uri(sys.argv[1])
    mlflow.set_experiment("lifecycle")
    with closing_run(mlflow, sys.argv[2], run_name=sys.argv[2]):
        for step in range(int(sys.argv[3])):
            mlflow.log_metric("loss", 1.0 / (step + 1), step=step)
            time.sleep(float(sys.argv[4]))
    """)


def _start(uri, name, steps=100000, pause=0.05):
    env = {**os.environ, "PYTHONPATH": f"{REPO / 'src'}:{REPO}"}
    return subprocess.Popen([sys.executable, "-c", WORKER, uri, name, str(steps), str(pause)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _run_named(client, name, timeout=120.0):
    """The run called ``name`` once it has logged a metric (its process is inside the run)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        exp = client.get_experiment_by_name("lifecycle")
        if exp is not None:
            runs = client.search_runs([exp.experiment_id], f"attributes.run_name = '{name}'")
            if runs and runs[0].data.metrics:
                return runs[0]
        time.sleep(0.5)
    raise AssertionError(f"run {name} never started")


@pytest.fixture
def store(tmp_path):
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    return uri, MlflowClient(uri)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signalled_stage_closes_its_run_as_killed(store, sig):
    uri, client = store
    proc = _start(uri, f"signalled-{sig.name}")
    run = _run_named(client, f"signalled-{sig.name}")
    assert run.info.status == "RUNNING"
    proc.send_signal(sig)
    assert proc.wait(60) != 0
    closed = client.get_run(run.info.run_id)
    assert closed.info.status == "KILLED" and sig.name in closed.data.tags["cmbml.end"]


def test_an_exception_closes_the_run_as_failed(store):
    import mlflow

    from stages._tracking import closing_run

    uri, client = store
    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment("lifecycle")
    with pytest.raises(ZeroDivisionError), closing_run(mlflow, "unit", run_name="failing") as run:
        _ = 1 / 0
    closed = client.get_run(run.info.run_id)
    assert closed.info.status == "FAILED" and "ZeroDivisionError" in closed.data.tags["cmbml.end"]


def test_a_run_left_running_by_sigkill_is_closed_at_the_next_start(store):
    uri, client = store
    victim = _start(uri, "sigkilled")
    run = _run_named(client, "sigkilled")
    victim.send_signal(signal.SIGKILL)
    victim.wait(60)
    assert client.get_run(run.info.run_id).info.status == "RUNNING"  # nothing could close it
    nxt = _start(uri, "next", steps=3, pause=0.0)
    assert nxt.wait(120) == 0, nxt.stderr.read()
    closed = client.get_run(run.info.run_id)
    assert closed.info.status == "KILLED" and "closed at the next stage start" in closed.data.tags["cmbml.end"]
    assert client.get_run(_run_named(client, "next").info.run_id).info.status == "FINISHED"
    # a live process's run is not touched by someone else's start
    live = _start(uri, "alive")
    live_run = _run_named(client, "alive")
    other = _start(uri, "other", steps=1, pause=0.0)
    assert other.wait(120) == 0
    assert client.get_run(live_run.info.run_id).info.status == "RUNNING"
    live.send_signal(signal.SIGTERM)
    live.wait(60)
    running = client.search_runs([client.get_experiment_by_name("lifecycle").experiment_id],
                                 "attributes.status = 'RUNNING'")
    assert running == []


def test_two_processes_log_to_one_store_at_once(store):
    uri, client = store
    client.create_experiment("lifecycle")
    procs = [_start(uri, f"writer-{i}", steps=60, pause=0.0) for i in range(2)]
    for p in procs:
        assert p.wait(300) == 0, p.stderr.read()
    exp = client.get_experiment_by_name("lifecycle")
    for i in range(2):
        (run,) = client.search_runs([exp.experiment_id], f"attributes.run_name = 'writer-{i}'")
        assert run.info.status == "FINISHED"
        assert len(client.get_metric_history(run.info.run_id, "loss")) == 60
