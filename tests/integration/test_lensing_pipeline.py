"""The real lensing pipeline under `dvc exp run`, read back through DVC and MLflow."""

import json

import numpy as np
import pytest

from tests.integration.conftest import sh

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def smoke_experiment(repo_copy):
    root, env = repo_copy
    sh(["dvc", "exp", "run", "-n", "smoke-x10", "-S", "scale=smoke", "-S", "kappa_exaggeration_factor=10"], root, env)
    return root, env


def test_dvc_metrics_and_experiment_table(smoke_experiment):
    root, env = smoke_experiment
    metrics = json.loads((root / "metrics/lensing.json").read_text())
    assert metrics["n_test"] == 48 and np.isfinite(metrics["rho_cnn_mean"]) and metrics["mse_kappa"] > 0
    # per-L curves go to the plot file, not to scalar metrics; the bins are the setup's
    from cmbml.flatsky import bin_power
    from cmbml.lensing_config import load

    setup = load(root / "params.yaml", root / "conf")
    centres, _, _ = bin_power(setup.grid, np.zeros((setup.grid.npix,) * 2), setup.rho_bin_edges)
    per_bin = json.loads((root / "plots/lensing/evaluate/rho_L.json").read_text())["rho_L"]
    assert np.allclose([row["L"] for row in per_bin], centres) and not [k for k in metrics if k.startswith("rho_L")]
    # the quadratic estimator on the pipeline's maps sees +kappa (the documented lensing sign) with
    # x10 kappa: Wiener limit 0.746 in linear theory (science notes, v3), and never beats it by much
    assert 0.70 < metrics["rho_opt_mean"] < 0.80 and 0.5 < metrics["rho_qe_mean"] < metrics["rho_opt_mean"] + 0.1
    for row in per_bin:
        assert row["n0"] > 0 and row["noise_cnn"] > 0 and row["response_qe"] > 0.5
    shown = json.loads(sh(["dvc", "exp", "show", "--json"], root, env).stdout)
    assert "smoke-x10" in json.dumps(shown)
    assert (root / "reports/lensing/validation.json").exists()
    assert (root / "plots/lensing/evaluate/rho_L.png").stat().st_size > 1000


def test_mlflow_run_has_params_tags_metrics_and_a_loadable_model(smoke_experiment):
    root, env = smoke_experiment
    import mlflow
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{root / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("lensing")
    (run,) = client.search_runs([experiment.experiment_id], filter_string="tags.dvc_exp_name = 'smoke-x10'")
    assert run.data.params["kappa_exaggeration_factor"] == "10" and "cosmology.H0" in run.data.params
    assert not [k for k in run.data.params if k.startswith(("cenn", "instrument", "foregrounds", "scale.cenn"))]
    assert run.data.tags["lensing_evaluate.n_example_maps"] == "3"
    assert run.data.tags["parameter_set"] == "v2" and run.data.tags["dvc_exp_name"] == "smoke-x10"
    assert len(run.data.tags["git_commit"]) == 40
    for key in ("loss", "val_loss", "best_val_loss", "test_rho_cnn_mean", "test_rho_opt_mean", "test_mse_kappa"):
        assert key in run.data.metrics
    assert "rho_L.json" in {a.path for a in client.list_artifacts(run.info.run_id)}  # the per-L table
    assert len(client.get_metric_history(run.info.run_id, "val_loss")) >= 1
    mlflow.set_tracking_uri(uri)
    model = mlflow.keras.load_model(f"runs:/{run.info.run_id}/model")
    prediction = model.predict(np.zeros((1, 50, 50, 1), dtype=np.float32), verbose=0)
    assert prediction.shape == (1, 50, 50, 1) and np.isfinite(prediction).all()
    versions = client.search_model_versions("name='cmbml-lensing'")
    assert run.info.run_id in {v.run_id for v in versions}


def test_a_killed_training_process_leaves_no_run_running(smoke_experiment):
    """The real `cmbml lensing train` is stopped by SIGTERM (its run ends KILLED) and by SIGKILL (its run stays
    RUNNING until the next start of a stage closes it, with a note); afterwards no run of the store is RUNNING."""
    import signal
    import subprocess
    import time

    import yaml
    from mlflow.tracking import MlflowClient

    root, env = smoke_experiment
    client = MlflowClient(tracking_uri=f"sqlite:///{root / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("lensing")
    params_file = root / "params.yaml"
    original = params_file.read_text()
    params = yaml.safe_load(original)
    params["scale"]["lensing"].update(epochs=100_000, early_stopping_patience=100_000)  # runs until killed
    params_file.write_text(yaml.safe_dump(params, sort_keys=False))

    def start_and_signal(sig):
        proc = subprocess.Popen(["cmbml", "lensing", "train"], cwd=root, env={**env, "PYTHONPATH": "src:."},
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        deadline = time.time() + 600
        while time.time() < deadline:  # until an epoch is logged: the process is inside its run
            runs = client.search_runs([experiment.experiment_id], f"tags.`cmbml.pid` = '{proc.pid}'")
            if runs and "loss" in runs[0].data.metrics:
                break
            assert proc.poll() is None, proc.stderr.read()
            time.sleep(1.0)
        else:
            raise AssertionError("training never logged an epoch")
        proc.send_signal(sig)
        assert proc.wait(120) != 0
        return client.get_run(runs[0].info.run_id)

    try:
        terminated = start_and_signal(signal.SIGTERM)
        assert terminated.info.status == "KILLED" and "SIGTERM" in terminated.data.tags["cmbml.end"]
        killed = start_and_signal(signal.SIGKILL)
        assert killed.info.status == "RUNNING"
        start_and_signal(signal.SIGTERM)  # the next start closes the orphan
        orphan = client.get_run(killed.info.run_id)
        assert orphan.info.status == "KILLED" and "closed at the next stage start" in orphan.data.tags["cmbml.end"]
        assert client.search_runs([experiment.experiment_id], "attributes.status = 'RUNNING'") == []
    finally:
        params_file.write_text(original)
        (root / "models/lensing/.best.weights.h5").unlink(missing_ok=True)
