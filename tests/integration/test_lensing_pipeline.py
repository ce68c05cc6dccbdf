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
    assert metrics["n_test"] == 48 and np.isfinite(metrics["rho_mean"]) and metrics["mse_kappa"] > 0
    # the rho(L) bins are the setup's, and the quadratic estimator on the pipeline's maps sees
    # +kappa (the documented lensing sign) with x10 kappa: linear theory 0.746 (science notes, v3)
    from cmbml.flatsky import bin_power
    from cmbml.lensing_config import load

    setup = load(root / "params.yaml", root / "conf")
    centres, _, _ = bin_power(setup.grid, np.zeros((setup.grid.npix,) * 2), setup.rho_bin_edges)
    assert {k for k in metrics if k.startswith("rho_L")} == {f"rho_L{int(round(c))}" for c in centres}
    assert 0.70 < metrics["rho_qe_theory_mean"] < 0.80 and metrics["rho_qe_mean"] > 0.5
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
    for key in ("loss", "val_loss", "best_val_loss", "test_rho_mean", "test_mse_kappa"):
        assert key in run.data.metrics
    assert len(client.get_metric_history(run.info.run_id, "val_loss")) >= 1
    mlflow.set_tracking_uri(uri)
    model = mlflow.keras.load_model(f"runs:/{run.info.run_id}/model")
    prediction = model.predict(np.zeros((1, 50, 50, 1), dtype=np.float32), verbose=0)
    assert prediction.shape == (1, 50, 50, 1) and np.isfinite(prediction).all()
    versions = client.search_model_versions("name='cmbml-lensing'")
    assert run.info.run_id in {v.run_id for v in versions}
