"""The real CENN pipeline under `dvc exp run -S scale=smoke -S cenn=B`, read back through DVC and MLflow."""

import json

import pytest

from tests.integration.conftest import sh

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def b_mode_experiment(repo_copy):
    root, env = repo_copy
    sh(["dvc", "exp", "run", "-n", "smoke-cenn-B", "-S", "scale=smoke", "-S", "cenn=B"], root, env)
    return root, env


def test_b_mode_datasets_metrics_and_reports(b_mode_experiment):
    root, _ = b_mode_experiment
    for split in ("Train", "Test", "Validation"):
        assert (root / f"datasets/cenn/patches/{split}_B.h5").exists()
    metrics = json.loads((root / "metrics/cenn.json").read_text())
    assert metrics["n_validation"] == 32 and metrics["map_mse_uK2"] > 0
    assert "bb_ell60_300_residual_dl_abs_mean_uK2" in metrics and not any(k.startswith("ee_") for k in metrics)
    assert json.loads((root / "reports/cenn/validation.json").read_text())["success"]
    assert json.loads((root / "reports/cenn_outputs/validation.json").read_text())["success"]
    assert (root / "plots/cenn/evaluate/spectra_BB.png").stat().st_size > 1000


def test_mlflow_cenn_run_and_registered_model(b_mode_experiment):
    root, _ = b_mode_experiment
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{root / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("cenn").experiment_id],
                              filter_string="tags.parameter_set = 'B'")
    assert len(runs) == 1
    run = runs[0]
    assert run.data.tags["dvc_exp_name"] == "smoke-cenn-B" and run.data.params["cenn.variant"] == "B"
    for key in ("loss", "val_loss", "test_map_mse_uK2", "test_bb_ell60_300_residual_dl_abs_mean_uK2"):
        assert key in run.data.metrics
    versions = client.search_model_versions("name='cmbml-cenn-B'")
    assert [v.run_id for v in versions] == [run.info.run_id]
