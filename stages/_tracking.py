"""MLflow for the training and evaluation stages: the run, its tags and parameters, the model, the metrics.

The library (``cmbml``) never imports MLflow; this module is the one place that does.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cmbml.config import Tracking
from cmbml.params import repository_root


def artifact_location(experiment: str) -> str:
    """Artifacts beside the store: ``<repo>/mlruns/<experiment>``."""
    root = Path(os.environ.get("CMBML_MLFLOW_ARTIFACTS", repository_root() / "mlruns"))
    return (root / experiment).resolve().as_uri()


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True)
        return out.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def run_tags(parameter_set: str, scale: str) -> dict[str, str]:
    """Tags every MLflow run carries: git commit, DVC experiment, parameter set and scale."""
    return {
        "git_commit": git_commit(),
        "dvc_exp_name": os.environ.get("DVC_EXP_NAME", "workspace"),
        "dvc_exp_baseline_rev": os.environ.get("DVC_EXP_BASELINE_REV", ""),
        "parameter_set": parameter_set,
        "scale": scale,
    }


class Terminated(BaseException):
    """SIGTERM or SIGINT arrived: unwinds the stage like KeyboardInterrupt so its run is closed as KILLED."""


@contextlib.contextmanager
def closing_run(mlflow, stage: str, **start_run_kwargs) -> Iterator[Any]:
    """``mlflow.start_run`` whose run never outlives the process in state RUNNING.

    The run ends FINISHED on success, FAILED on an exception and KILLED on SIGTERM or SIGINT. It carries
    the process id, host and stage as tags, so that a run left RUNNING by a process killed outright
    (SIGKILL, power loss) is closed by :func:`close_orphaned_runs` at the next start of a stage.
    """
    def on_signal(signum, frame):
        raise Terminated(signal.Signals(signum).name)

    in_main_thread = threading.current_thread() is threading.main_thread()  # only it may set handlers
    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)} if in_main_thread else {}
    status = "FINISHED"
    try:
        close_orphaned_runs(mlflow)
        tags = {"cmbml.pid": str(os.getpid()), "cmbml.host": socket.gethostname(), "cmbml.stage": stage}
        run = mlflow.start_run(**start_run_kwargs)
        try:
            mlflow.set_tags(tags)
            yield run
        except (Terminated, KeyboardInterrupt) as err:
            status = "KILLED"
            mlflow.set_tag("cmbml.end", f"{stage} stopped by {err or 'SIGINT'}")
            raise
        except BaseException as err:
            status = "FAILED"
            mlflow.set_tag("cmbml.end", f"{stage} failed: {type(err).__name__}: {err}"[:5000])
            raise
        finally:
            mlflow.end_run(status)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, another user's
        return True
    return True


def close_orphaned_runs(mlflow) -> list[str]:
    """Close as KILLED, with a note, every RUNNING run of the store started on this host by a process that
    no longer exists (SIGKILL leaves no chance to close it). Returns the closed run ids."""
    client = mlflow.tracking.MlflowClient()
    host = socket.gethostname()
    experiments = [e.experiment_id for e in client.search_experiments()]
    if not experiments:
        return []
    closed = []
    for run in client.search_runs(experiments, filter_string="attributes.status = 'RUNNING'", max_results=1000):
        tags = run.data.tags
        pid = tags.get("cmbml.pid")
        if tags.get("cmbml.host") != host or not (pid or "").isdigit() or _process_alive(int(pid)):
            continue
        client.set_tag(run.info.run_id, "cmbml.end",
                       f"{tags.get('cmbml.stage', 'stage')} process {pid} on {host} ended without closing its run "
                       "(killed); closed at the next stage start")
        client.set_terminated(run.info.run_id, status="KILLED")
        closed.append(run.info.run_id)
    return closed


def start_mlflow(tracking: Tracking):
    """Point MLflow at the repository's SQLite store and select (or create) the experiment."""
    import mlflow

    mlflow.set_tracking_uri(tracking.tracking_uri)
    if mlflow.get_experiment_by_name(tracking.experiment) is None:
        from mlflow.exceptions import MlflowException

        try:
            mlflow.create_experiment(tracking.experiment, artifact_location=artifact_location(tracking.experiment))
        except MlflowException:  # a concurrent queue worker created it first
            if mlflow.get_experiment_by_name(tracking.experiment) is None:
                raise
    mlflow.set_experiment(tracking.experiment)
    return mlflow


@dataclass
class TrainingJob:
    """Everything a training stage decides; :func:`train_and_log` does the rest."""

    tracking: Tracking
    parameter_set: str
    scale: str
    core: Any  # keras.Model on standardised data
    train_seq: Any
    val_seq: Any
    x_stats: tuple
    y_stats: tuple
    epochs: int
    patience: int
    model_file: Path
    run_file: Path
    history_file: Path
    curve_file: Path
    title: str
    stage: str = "train"


def _epoch_logger(mlflow):
    import keras

    class MlflowEpochLogger(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            mlflow.log_metrics({k: float(v) for k, v in (logs or {}).items()}, step=epoch + 1)

    return MlflowEpochLogger()


def train_and_log(job: TrainingJob) -> dict[str, Any]:
    """Fit with early stopping and a best-epoch checkpoint; save the physical-units model
    (standardisation inside); log the experiment's parameters, per-epoch losses, the training curve
    and the model to MLflow and register it. Returns the run record (also written to ``run_file``)."""
    import keras
    import numpy as np
    from mlflow.models import infer_signature

    from cmbml.io import atomic_path, write_json
    from cmbml.models import count_parameters, with_standardisation
    from cmbml.plots import plot_training_curve

    mlflow = start_mlflow(job.tracking)
    job.model_file.parent.mkdir(parents=True, exist_ok=True)
    with closing_run(mlflow, job.stage, run_name=f"{job.parameter_set}-{job.scale}",
                     tags=run_tags(job.parameter_set, job.scale)) as run:
        mlflow.log_params({k: str(v) for k, v in job.tracking.params.items()})
        mlflow.log_params({"n_parameters": count_parameters(job.core), "x_mean": job.x_stats[0],
                           "x_std": job.x_stats[1], "y_mean": job.y_stats[0], "y_std": job.y_stats[1]})
        best = job.model_file.parent / ".best.weights.h5"  # scratch: never read by a later stage
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
        with atomic_path(job.model_file) as tmp:
            model.save(tmp)
        plot_training_curve(history, job.curve_file, job.title)
        write_json(job.history_file, {"history": [
            {"epoch": i + 1, **{k: float(v[i]) for k, v in history.items()}} for i in range(len(history["loss"]))]})

        x_std_units = np.asarray(job.val_seq[0][0][:2]) * np.asarray(job.x_stats[1]) + np.asarray(job.x_stats[0])
        x_example = x_std_units.astype(np.float32)
        signature = infer_signature(x_example, model.predict(x_example, verbose=0))
        best_epoch = int(np.argmin(history["val_loss"])) + 1
        mlflow.log_metrics({"best_val_loss": float(np.min(history["val_loss"])), "best_epoch": best_epoch,
                            "epochs_run": len(history["loss"])})
        mlflow.log_artifact(str(job.curve_file), artifact_path="plots")
        info = mlflow.keras.log_model(model, name="model", signature=signature,
                                      registered_model_name=job.tracking.registered_model)
        record = {"run_id": run.info.run_id, "experiment_id": run.info.experiment_id, "model_uri": info.model_uri,
                  "tracking_uri": mlflow.get_tracking_uri(), "best_epoch": best_epoch,
                  "best_val_loss": float(np.min(history["val_loss"]))}
        write_json(job.run_file, record)
    return record


def log_evaluation(tracking: Tracking, run_file: Path, split: str, metrics: dict[str, float],
                   artifacts: list[Path], tables: dict[str, list[dict]] | None = None, stage: str = "evaluate") -> None:
    """Add the metrics measured on ``split`` (as ``<split>_<name>``), the plots and the per-bin tables
    (``{artifact_file: rows}``, shown as tables in the MLflow UI) to the training run in ``run_file``."""
    import pandas as pd

    mlflow = start_mlflow(tracking)
    run = json.loads(Path(run_file).read_text())
    with closing_run(mlflow, stage, run_id=run["run_id"]):
        mlflow.set_tags({k: str(v) for k, v in tracking.evaluation_params.items()})
        for name, rows in (tables or {}).items():
            mlflow.log_table(data=pd.DataFrame(rows), artifact_file=name)
        mlflow.log_metrics({f"{split}_{k}": float(v) for k, v in metrics.items()})
        for path in artifacts:
            mlflow.log_artifact(str(path), artifact_path="plots" if path.suffix == ".png" else "metrics")
