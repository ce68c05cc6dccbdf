"""MLflow on a tracking server: PostgreSQL (Debian's, on the loopback address) as the backend store and the
server's artifact proxy (`--artifacts-destination`) for files, started by `scripts/tracking_server.sh` as the
README says. Two queued smoke experiments run in parallel (`dvc queue start -j 2`) and log to it through
MLFLOW_TRACKING_URI; both runs, their registered model versions and their artifacts, read back through the
proxy, are checked, and the runs are rows of the PostgreSQL database."""

import json
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.integration.conftest import free_port, sh

pytestmark = pytest.mark.slow

RATES = ["0.0011", "0.0013"]  # two new training settings: neither can come from the run cache


@pytest.fixture
def tracking_server(repo_copy, tmp_path):
    """``(uri, artifacts folder, PostgreSQL port)`` of a server started by the README's script; stopped after."""
    _, env = repo_copy
    folder, port, pg_port = tmp_path / "tracking", free_port(), free_port()
    script = str(REPO / "scripts" / "tracking_server.sh")
    out = sh(["bash", script, "start", str(folder), str(port), str(pg_port)], REPO, env, timeout=300)
    uri = f"http://127.0.0.1:{port}"
    assert f"export MLFLOW_TRACKING_URI={uri}" in out.stdout
    try:
        yield uri, folder / "artifacts", pg_port
    finally:
        subprocess.run(["bash", script, "stop", str(folder)], cwd=REPO, env=env, timeout=120, check=False)
        cluster = folder / "postgres.path"  # as root the cluster lives outside the folder
        if cluster.is_file():
            subprocess.run(["rm", "-rf", cluster.read_text().strip()], check=False)


def wait_for_queue(root: Path, env: dict, timeout_s: int = 1500) -> str:
    """`dvc queue status` once nothing is queued or running."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        status = sh(["dvc", "queue", "status"], root, env).stdout
        if not any(word in status for word in ("Queued", "Running")):
            return status
        time.sleep(5)
    raise AssertionError(f"the queue did not finish in {timeout_s} s:\n{status}")


def test_two_queued_experiments_log_in_parallel_to_a_tracking_server_on_postgres(repo_copy, tracking_server, tmp_path):
    import mlflow
    import psycopg2
    from mlflow.tracking import MlflowClient

    root, env = repo_copy
    uri, artifacts, pg_port = tracking_server
    env = {**env, "MLFLOW_TRACKING_URI": uri, "MLFLOW_DISABLE_TELEMETRY": "true"}
    names = [f"server-lr{rate}" for rate in RATES]
    for name, rate in zip(names, RATES):
        sh(
            [
                "dvc",
                "exp",
                "run",
                "--queue",
                "-n",
                name,
                "-S",
                "scale=smoke",
                "-S",
                "cenn=B",
                "-S",
                f"lensing_train.learning_rate={rate}",
                "lensing_train",
            ],
            root,
            env,
        )
    sh(["dvc", "queue", "start", "-j", "2"], root, env)
    status = wait_for_queue(root, env)
    for name in names:
        line = next((row for row in status.splitlines() if name in row), "")
        assert "Success" in line, f"{name}:\n{status}\n" + sh(["dvc", "queue", "logs", name], root, env).stdout[-3000:]

    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("lensing")
    assert experiment.artifact_location.startswith("mlflow-artifacts:")  # files go through the server's proxy
    runs = {r.data.tags["dvc_exp_name"]: r for r in client.search_runs([experiment.experiment_id])}
    assert sorted(runs) == sorted(names)
    for name, rate in zip(names, RATES):
        run = runs[name]
        assert run.info.status == "FINISHED" and run.data.params["lensing_train.learning_rate"] == rate
        assert "best_val_loss" in run.data.metrics and run.data.params["scale.lensing.n_training"] == "128"
    # in parallel: each run started before the other ended
    first, second = sorted(runs.values(), key=lambda r: r.info.start_time)
    assert second.info.start_time < first.info.end_time

    versions = client.search_model_versions("name = 'cmbml-lensing-v2'")
    assert sorted(v.run_id for v in versions) == sorted(r.info.run_id for r in runs.values())
    assert client.get_model_version_by_alias("cmbml-lensing-v2", "smoke").run_id in {v.run_id for v in versions}

    # artifacts come back through the proxy, and the proxy keeps them in its destination folder
    for run in runs.values():
        card = json.loads(
            Path(
                mlflow.artifacts.download_artifacts(
                    run_id=run.info.run_id,
                    artifact_path="model_card.json",
                    tracking_uri=uri,
                    dst_path=str(tmp_path / run.info.run_id),
                )
            ).read_text()
        )
        assert card["parameter_set"] == "v2" and card["scale"] == "smoke"
    assert len(list(artifacts.rglob("model_card.json"))) == 2
    assert len(list(artifacts.rglob("training_curve.png"))) == 2
    mlflow.set_tracking_uri(uri)
    newest = max(versions, key=lambda v: int(v.version))
    model = mlflow.keras.load_model(f"models:/cmbml-lensing-v2/{newest.version}")
    assert model.output_shape[1:3] == (card["output"]["npix"], card["output"]["npix"])

    # the store is PostgreSQL: the runs are rows of its database
    with psycopg2.connect(host="127.0.0.1", port=pg_port, user="postgres", dbname="mlflow") as db, db.cursor() as cur:
        cur.execute("SELECT name, status FROM runs")
        rows = cur.fetchall()
    assert sorted(status for _, status in rows) == ["FINISHED", "FINISHED"]
