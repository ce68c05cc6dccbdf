"""Finished evaluations read back from a real MLflow store (SQLite in a temporary folder) for `cmbml report`."""

import pandas as pd


def _log_run(mlflow, version, architecture, oversampling, rho, scale="default"):
    with mlflow.start_run():
        mlflow.set_tags({"scale": scale, "parameter_set": version})
        params = {"lensing_net.architecture": architecture}
        if oversampling is not None:  # runs from before the parameter existed do not log it
            params["lensing_simulate.oversampling"] = oversampling
        mlflow.log_params(params)
        mlflow.log_metrics({"evaluation_rho_opt_mean": 0.6, "evaluation_rho_cnn_mean": rho})
        mlflow.log_table(pd.DataFrame({"L": [10.0, 20.0], "rho_cnn": [rho, rho]}), artifact_file="rho_L.json")


def test_the_newest_run_per_version_architecture_and_map_making_is_read_with_its_table(tmp_path):
    """Grouped by architecture and ``lensing_simulate.oversampling`` (a run without it counts as 1, as the maps
    were made before it existed), the newest finished run of each group at the asked scale wins; its rho(L) table
    comes back as rows and its metrics without the split prefix."""
    import mlflow

    from stages._results import latest_evaluations

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment("lensing")
    _log_run(mlflow, "v7", "resunet", None, 0.072)  # lensed at the pixels, before the parameter
    _log_run(mlflow, "v7", "resunet", "2", 0.020)
    _log_run(mlflow, "v7", "resunet", "2", 0.028)  # newer: wins its group
    _log_run(mlflow, "v7", "resunet", "2", 0.9, scale="smoke")
    _log_run(mlflow, "v7", "resunet_qe", "2", 0.062)
    mlflow.set_tracking_uri(None)
    found = latest_evaluations(
        uri,
        "lensing",
        "evaluation",
        "default",
        "rho_L.json",
        "rho_opt_mean",
        group_by=("lensing_net.architecture", "lensing_simulate.oversampling"),
        missing={"lensing_net.architecture": "original", "lensing_simulate.oversampling": "1"},
    )
    assert set(found) == {("v7", "resunet", "1"), ("v7", "resunet", "2"), ("v7", "resunet_qe", "2")}
    assert found[("v7", "resunet", "1")]["metrics"]["rho_cnn_mean"] == 0.072
    assert found[("v7", "resunet", "2")]["metrics"]["rho_cnn_mean"] == 0.028
    assert found[("v7", "resunet", "2")]["rows"] == [{"L": 10.0, "rho_cnn": 0.028}, {"L": 20.0, "rho_cnn": 0.028}]
