"""Training shared by the lensing and CENN stages: fit, keep the best epoch, save, log and register."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stages._common import flatten, run_tags, start_mlflow


def require_validated(result_file: Path) -> None:
    """Refuse to go on with data the gate did not pass."""
    result = json.loads(result_file.read_text()) if result_file.exists() else {}
    if not result.get("success"):
        sys.exit(f"{result_file} does not record a passed validation: run the validation stage first")


@dataclass
class TrainingJob:
    """Everything a training stage decides; :func:`train_and_log` does the rest."""

    params: dict[str, Any]
    experiment: str
    registered_model: str
    parameter_set: str
    core: Any  # keras.Model on standardised data
    train_seq: Any
    val_seq: Any
    x_stats: tuple
    y_stats: tuple
    epochs: int
    patience: int
    model_dir: Path
    plot_dir: Path
    title: str


def _epoch_logger(mlflow):
    import keras

    class MlflowEpochLogger(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            mlflow.log_metrics({k: float(v) for k, v in (logs or {}).items()}, step=epoch + 1)

    return MlflowEpochLogger()


def train_and_log(job: TrainingJob) -> dict[str, Any]:
    """Fit with early stopping and a best-epoch checkpoint; save the physical-units model
    (standardisation inside) to ``model_dir/model.keras``; log params, per-epoch losses, the
    training curve and the model to MLflow and register it. Returns the run record."""
    import keras
    import numpy as np
    from mlflow.models import infer_signature

    from cmbml.io import atomic_path, write_json
    from cmbml.models import count_parameters, with_standardisation
    from cmbml.plots import plot_training_curve

    mlflow = start_mlflow(job.params, job.experiment)
    job.model_dir.mkdir(parents=True, exist_ok=True)
    tags = run_tags(job.params, job.parameter_set)
    with mlflow.start_run(run_name=f"{job.parameter_set}-{job.params['scale']['name']}", tags=tags) as run:
        logged = {k: v for k, v in flatten("", job.params).items() if not k.startswith(("mlflow.", "lensing_paper."))}
        mlflow.log_params({k: str(v) for k, v in logged.items()})
        mlflow.log_params({"n_parameters": count_parameters(job.core), "x_mean": job.x_stats[0],
                           "x_std": job.x_stats[1], "y_mean": job.y_stats[0], "y_std": job.y_stats[1]})
        best = job.model_dir / ".best.weights.h5"  # scratch: never read by a later stage
        callbacks = [
            keras.callbacks.EarlyStopping(monitor="val_loss", patience=job.patience, restore_best_weights=True),
            keras.callbacks.ModelCheckpoint(best, monitor="val_loss", save_best_only=True, save_weights_only=True),
            _epoch_logger(mlflow),
        ]
        history = job.core.fit(job.train_seq, validation_data=job.val_seq, epochs=job.epochs, callbacks=callbacks,
                               verbose=2).history
        job.core.load_weights(best)
        best.unlink()

        model = with_standardisation(job.core, *job.x_stats, *job.y_stats, name=job.core.name + "_physical")
        with atomic_path(job.model_dir / "model.keras") as tmp:
            model.save(tmp)
        plot_training_curve(history, job.plot_dir / "training_curve.png", job.title)
        write_json(job.plot_dir / "history.json", {"history": [
            {"epoch": i + 1, **{k: float(v[i]) for k, v in history.items()}} for i in range(len(history["loss"]))]})

        x_std_units = np.asarray(job.val_seq[0][0][:2]) * np.asarray(job.x_stats[1]) + np.asarray(job.x_stats[0])
        x_example = x_std_units.astype(np.float32)
        signature = infer_signature(x_example, model.predict(x_example, verbose=0))
        best_epoch = int(np.argmin(history["val_loss"])) + 1
        mlflow.log_metrics({"best_val_loss": float(np.min(history["val_loss"])), "best_epoch": best_epoch,
                            "epochs_run": len(history["loss"])})
        mlflow.log_artifact(str(job.plot_dir / "training_curve.png"), artifact_path="plots")
        info = mlflow.keras.log_model(model, name="model", signature=signature,
                                      registered_model_name=job.registered_model)
        record = {"run_id": run.info.run_id, "experiment_id": run.info.experiment_id, "model_uri": info.model_uri,
                  "tracking_uri": mlflow.get_tracking_uri(), "best_epoch": best_epoch,
                  "best_val_loss": float(np.min(history["val_loss"]))}
        write_json(job.model_dir / "mlflow_run.json", record)
    return record


def log_evaluation(params: dict[str, Any], experiment: str, run_file: Path, metrics: dict[str, float],
                   artifacts: list[Path]) -> None:
    """Add test metrics and plots to the training run recorded in ``run_file``."""
    mlflow = start_mlflow(params, experiment)
    run = json.loads(run_file.read_text())
    with mlflow.start_run(run_id=run["run_id"]):
        mlflow.log_metrics({f"test_{k}": float(v) for k, v in metrics.items()})
        for path in artifacts:
            mlflow.log_artifact(str(path), artifact_path="plots" if path.suffix == ".png" else "metrics")
