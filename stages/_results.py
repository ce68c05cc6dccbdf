"""Finished evaluations read back from the MLflow store, for `cmbml report` (no DVC stage imports this)."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path


def latest_evaluations(
    tracking_uri: str,
    experiment: str,
    split: str,
    scale: str,
    table: str,
    required_metric: str,
    group_by: tuple[str, ...] = (),
    missing: str | dict[str, str] = "gaussian",
    required_any: tuple[str, ...] = (),
) -> dict:
    """Per parameter set, the newest finished run of ``scale`` that logged ``<split>_<required_metric>`` (or any of
    ``required_any``):
    ``{parameter_set: {"name", "params", "tags", "metrics" (split prefix removed), "rows" (the ``table`` artifact),
    "run_id"}}``. With ``group_by`` (run parameters, e.g. ``("foregrounds.model",)``) the newest per
    ``(parameter_set, *values)``, a missing parameter read as ``missing`` (runs from before it existed; one value
    for every parameter, or one per parameter).
    A run that trained adds ``train_seconds`` to its metrics: from its start to the last epoch's loss."""
    import pandas as pd
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return {}
    runs = client.search_runs(
        [exp.experiment_id],
        filter_string=f"tags.scale = '{scale}' and attributes.status = 'FINISHED'",
        order_by=["attributes.start_time DESC"],
        max_results=5000,
    )
    found: dict[str, dict] = {}
    prefix = f"{split}_"

    def default(param: str) -> str:
        return missing.get(param, "") if isinstance(missing, dict) else missing

    for run in runs:
        name = run.data.tags.get("parameter_set")
        key = (name, *(run.data.params.get(p, default(p)) for p in group_by)) if group_by else name
        if key in found or not any(f"{prefix}{m}" in run.data.metrics for m in (required_metric, *required_any)):
            continue
        rows, details = [], {}
        with tempfile.TemporaryDirectory() as tmp:
            try:  # MLflow tables are pandas' "split" JSON
                path = client.download_artifacts(run.info.run_id, table, tmp)
                rows = pd.read_json(path, orient="split").to_dict("records")
            except (OSError, ValueError, MlflowException):
                rows = []  # a run without the table still has its summary metrics
            try:  # every score, beside the handful logged as metrics
                details = json.loads(
                    Path(client.download_artifacts(run.info.run_id, f"{split}_scores.json", tmp)).read_text()
                )
            except (OSError, ValueError, MlflowException):
                details = {}
        summary = {k[len(prefix) :]: v for k, v in run.data.metrics.items() if k.startswith(prefix)}
        if "loss" in run.data.metrics:  # training time: from the run's start to its last epoch's loss
            history = client.get_metric_history(run.info.run_id, "loss")
            if history:
                summary["train_seconds"] = (max(m.timestamp for m in history) - run.info.start_time) / 1e3
        found[key] = {
            "name": name,
            "run_id": run.info.run_id,
            "params": dict(run.data.params),
            "tags": dict(run.data.tags),
            "rows": rows,
            "metrics": {**details, **summary},
        }
    return dict(sorted(found.items()))


def copy_run_figures(tracking_uri: str, run_id: str, names: dict[str, str], folder: Path) -> list[Path]:
    """Copy the run's figure artifacts ``{artifact: file name}`` that exist into ``folder``; returns what was written."""
    import shutil

    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    client, written = MlflowClient(tracking_uri=tracking_uri), []
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        for artifact, name in names.items():
            try:
                path = client.download_artifacts(run_id, artifact, tmp)
            except (OSError, MlflowException):
                continue
            shutil.copyfile(path, folder / name)
            written.append(folder / name)
    return written
