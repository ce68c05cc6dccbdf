"""MLflow for the training and evaluation stages: the run, its tags and parameters, the model, the metrics.

The library (``cmbml``) never imports MLflow; this module is the one place that does.
"""

from __future__ import annotations

import contextlib
import hashlib
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

from cmbml.common.config import Tracking
from cmbml.common.params import repository_root


def artifact_location(experiment: str) -> str:
    """Artifacts beside the store: ``<repo>/mlruns/<experiment>``."""
    root = Path(os.environ.get("CMBML_MLFLOW_ARTIFACTS", repository_root() / "mlruns"))
    return (root / experiment).resolve().as_uri()


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True,
                             cwd=repository_root())
        return out.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def dvc_experiment() -> str:
    """The DVC experiment this stage runs in (``workspace`` for a plain ``dvc repro``)."""
    return os.environ.get("DVC_EXP_NAME", "workspace")


def overridden_params(logged: dict[str, Any], choices: dict[str, str]) -> dict[str, Any]:
    """The logged parameters whose values differ from the parameter set's own: ``conf/`` composed with the
    config-group ``choices`` (e.g. ``{"lensing": "v2", "scale": "smoke"}``) is compared with params.yaml,
    so ``-S kappa_exaggeration_factor=10`` shows up here while ``-S lensing=v3`` does not."""
    import tempfile

    from dvc.utils.hydra import compose_and_dump

    from cmbml.common.config import logged_params
    from cmbml.common.params import load_params

    root = repository_root()
    with tempfile.TemporaryDirectory() as tmp:
        composed = Path(tmp) / "params.yaml"
        compose_and_dump(composed, str(root / "conf"), None, "config", root,
                         [f"{group}={option}" for group, option in choices.items()])
        reference = logged_params(load_params(composed), sorted({k.split(".")[0] for k in logged}))
    return {k: v for k, v in sorted(logged.items()) if str(reference.get(k)) != str(v)}


def run_name(parameter_set: str, scale: str, overrides: dict[str, Any]) -> str:
    """``v2-smoke``, ``v2-smoke kappa_exaggeration_factor=10`` or, in an experiment,
    ``v2-smoke kappa_exaggeration_factor=10 (exp-1a2b3)``: what the run is and what changed."""
    name = f"{parameter_set}-{scale}"
    if overrides:
        name += " " + " ".join(f"{k}={v}" for k, v in overrides.items())
    if dvc_experiment() != "workspace":
        name += f" ({dvc_experiment()})"
    return name if len(name) <= 200 else name[:197] + "..."


def run_tags(parameter_set: str, scale: str, overrides: dict[str, Any] | None = None,
             params_digest: str = "", stage: str = "") -> dict[str, str]:
    """Tags every MLflow run carries: git commit, DVC experiment, parameter set, scale, overridden keys."""
    commit = git_commit()
    return {
        "git_commit": commit,
        "mlflow.source.git.commit": commit,
        "mlflow.source.name": f"dvc stage {stage}" if stage else "cmbml",
        "mlflow.source.type": "PROJECT",
        "dvc_exp_name": dvc_experiment(),
        "dvc_exp_baseline_rev": os.environ.get("DVC_EXP_BASELINE_REV", ""),
        "parameter_set": parameter_set,
        "scale": scale,
        "overrides": json.dumps(overrides or {}, sort_keys=True, default=str),
        "params_digest": params_digest,
    }


def file_md5(path: Path) -> str:
    """The MD5 DVC records for a file (its content's), read 8 MiB at a time."""
    digest = hashlib.md5()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 23), b""):
            digest.update(block)
    return digest.hexdigest()


def log_datasets(mlflow, files: dict[str, list[Path]]) -> None:
    """Each HDF5 dataset as an MLflow input of the run: ``{context: [files]}`` (training, early_stopping, evaluation),
    named by its repository path, its digest the file's DVC hash."""
    from mlflow.data.dataset_source_registry import get_registered_sources
    from mlflow.data.meta_dataset import MetaDataset

    # The local-file source, named directly: MLflow registers it twice and warns when it resolves a path.
    local_source = next(s for s in get_registered_sources() if s.__name__ == "LocalArtifactDatasetSource")

    root = repository_root()
    for context, paths in files.items():
        for path in paths:
            path = Path(path).resolve()
            name = str(path.relative_to(root)) if path.is_relative_to(root) else path.name
            dataset = MetaDataset(local_source(str(path)), name=name, digest=file_md5(path)[:20])
            mlflow.log_input(dataset, context=context)


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
    """Point MLflow at the repository's SQLite store and select (or create) the experiment, with its description."""
    import mlflow

    mlflow.set_tracking_uri(tracking.tracking_uri)
    experiment = mlflow.get_experiment_by_name(tracking.experiment)
    if experiment is None:
        from mlflow.exceptions import MlflowException

        try:
            # A tracking server keeps artifacts where its proxy (--artifacts-destination) says; a local store beside it.
            location = None if tracking.tracking_uri.startswith(("http://", "https://")) else \
                artifact_location(tracking.experiment)
            mlflow.create_experiment(tracking.experiment, artifact_location=location)
        except MlflowException:  # a concurrent queue worker created it first
            if mlflow.get_experiment_by_name(tracking.experiment) is None:
                raise
        experiment = mlflow.get_experiment_by_name(tracking.experiment)
    if tracking.description and experiment.tags.get("mlflow.note.content") != tracking.description:
        mlflow.tracking.MlflowClient().set_experiment_tag(experiment.experiment_id, "mlflow.note.content",
                                                          tracking.description)
    mlflow.set_experiment(tracking.experiment)
    return mlflow


@dataclass
class TrainingJob:
    """Everything a training stage decides; :func:`train_and_log` does the rest."""

    tracking: Tracking
    parameter_set: str
    scale: str
    group_choices: dict[str, str]  # config-group options of the parameter set, e.g. {"lensing": "v2", "scale": "smoke"}
    model_card: dict[str, Any]  # geometry and units: beside the model, in its MLflow metadata
    datasets: dict[str, list[Path]]  # {"training": [...], "early_stopping": [...]}, logged as run inputs
    core: Any  # keras.Model on standardised data
    train_batches: Any  # cmbml.common.training.H5Batches
    val_batches: Any
    input_pipeline: Any  # (batches, epochs) -> what fit reads: cmbml.common.training.tf_dataset
    x_stats: tuple
    y_stats: tuple
    epochs: int
    patience: int
    model_file: Path
    card_file: Path
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


def register(mlflow, tracking: Tracking, model_uri: str, scale: str, tags: dict[str, str], card: dict[str, Any]):
    """Register the logged model as a new version of the parameter set's model (``cmbml-lensing-v2``), move the
    scale's alias (``@smoke``, ``@default``, ``@paper``) to it, tag it and describe both."""
    client = mlflow.tracking.MlflowClient()
    version = mlflow.register_model(model_uri, tracking.registered_model, tags=tags)
    inp, out = card["input"], card["output"]
    client.update_registered_model(tracking.registered_model, description=(
        f"{card['experiment']} network of parameter set {card['parameter_set']}: {inp['quantity']} "
        f"({', '.join(inp['channels'])}; {inp['units']}; {inp['npix']}x{inp['npix']} pixels of {inp['pixel_arcmin']:g} "
        f"arcmin) -> {out['quantity']} ({out['units']}). Aliases name the newest version trained at each scale "
        "(@smoke, @default, @paper); the model's metadata holds its geometry and units (`cmbml predict` checks them)."))
    client.update_model_version(tracking.registered_model, version.version, description=(
        f"Trained at scale={scale} in DVC experiment {tags.get('dvc_exp_name')} from commit "
        f"{tags.get('git_commit', '')[:10]}; overrides {tags.get('overrides', '{}')}."))
    client.set_registered_model_alias(tracking.registered_model, scale, version.version)
    return version


def train_and_log(job: TrainingJob) -> dict[str, Any]:
    """Fit with early stopping and a best-epoch checkpoint; save the physical-units model (standardisation
    inside) and its model card; log the experiment's parameters, inputs, per-epoch losses, the training curve
    and the model to MLflow, register it under the parameter set's name and move the scale's alias to it.
    Returns the run record (printed; never written to an output, whose bytes must not depend on the run)."""
    import keras
    import numpy as np
    from mlflow.models import infer_signature

    from cmbml.common.io import write_json, write_keras_model
    from cmbml.common.networks import count_parameters, with_standardisation
    from cmbml.common.plotting import plot_training_curve

    mlflow = start_mlflow(job.tracking)
    job.model_file.parent.mkdir(parents=True, exist_ok=True)
    overrides = overridden_params(dict(job.tracking.params), job.group_choices)
    tags = run_tags(job.parameter_set, job.scale, overrides, job.model_card["params_digest"], job.stage)
    with closing_run(mlflow, job.stage, run_name=run_name(job.parameter_set, job.scale, overrides), tags=tags) as run:
        mlflow.log_params({k: str(v) for k, v in job.tracking.params.items()})
        mlflow.log_params({"n_parameters": count_parameters(job.core), "x_mean": job.x_stats[0],
                           "x_std": job.x_stats[1], "y_mean": job.y_stats[0], "y_std": job.y_stats[1]})
        log_datasets(mlflow, job.datasets)
        best = job.model_file.parent / ".best.weights.h5"  # scratch: never read by a later stage
        callbacks = [
            keras.callbacks.EarlyStopping(monitor="val_loss", patience=job.patience, restore_best_weights=True),
            keras.callbacks.ModelCheckpoint(best, monitor="val_loss", save_best_only=True, save_weights_only=True),
            _epoch_logger(mlflow),
        ]
        try:
            # tf.data reads and standardises batches in parallel, ahead of the model step
            history = job.core.fit(job.input_pipeline(job.train_batches, job.epochs),
                                   steps_per_epoch=len(job.train_batches),
                                   validation_data=job.input_pipeline(job.val_batches, 1), epochs=job.epochs,
                                   shuffle=False,  # the batches shuffle themselves, per epoch
                                   callbacks=callbacks, verbose=2).history
            job.core.load_weights(best)
        finally:
            best.unlink(missing_ok=True)

        model = with_standardisation(job.core, *job.x_stats, *job.y_stats, name=job.core.name + "_physical")
        write_keras_model(model, job.model_file)
        write_json(job.card_file, job.model_card)
        plot_training_curve(history, job.curve_file, job.title)
        write_json(job.history_file, {"history": [
            {"epoch": i + 1, **{k: float(v[i]) for k, v in history.items()}} for i in range(len(history["loss"]))]})

        x_std_units = job.val_batches.batch(0, 0)[0][:2] * np.asarray(job.x_stats[1]) + np.asarray(job.x_stats[0])
        x_example = x_std_units.astype(np.float32)
        signature = infer_signature(x_example, model.predict(x_example, verbose=0))
        best_epoch = int(np.argmin(history["val_loss"])) + 1
        mlflow.log_metrics({"best_val_loss": float(np.min(history["val_loss"])), "best_epoch": best_epoch,
                            "epochs_run": len(history["loss"])})
        mlflow.set_tag("cmbml.model_md5", file_md5(job.model_file))
        mlflow.log_artifact(str(job.curve_file))  # at the root, where the compare view looks
        mlflow.log_artifact(str(job.card_file))
        info = mlflow.keras.log_model(model, name="model", signature=signature, metadata=job.model_card,
                                      pip_requirements=pinned_requirements())
        version = register(mlflow, job.tracking, info.model_uri, job.scale,
                           {k: v for k, v in tags.items() if not k.startswith("mlflow.")}, job.model_card)
        return {"run_id": run.info.run_id, "model_uri": info.model_uri, "best_epoch": best_epoch,
                "best_val_loss": float(np.min(history["val_loss"])),
                "registered": f"models:/{job.tracking.registered_model}@{job.scale} (version {version.version})"}


def pinned_requirements() -> list[str]:
    """The model's Python requirements, as installed (MLflow would otherwise load the model in a subprocess to
    infer them)."""
    from importlib.metadata import PackageNotFoundError, version

    pins = []
    for package in ("tensorflow", "keras", "numpy", "h5py"):
        try:
            pins.append(f"{package}=={version(package)}")
        except PackageNotFoundError:
            pass
    return pins


def training_run(mlflow, tracking: Tracking, model_file: Path):
    """The newest finished training run whose logged model has the bytes of ``model_file``, or None (a model
    trained against another store). A model restored by DVC from its run cache finds the run that trained it."""
    experiment = mlflow.get_experiment_by_name(tracking.experiment)
    if experiment is None:
        return None
    runs = mlflow.tracking.MlflowClient().search_runs(
        [experiment.experiment_id], filter_string=f"tags.`cmbml.model_md5` = '{file_md5(model_file)}'",
        order_by=["attributes.start_time DESC"], max_results=1)
    return runs[0] if runs else None


def log_evaluation(tracking: Tracking, model_file: Path, split: str, metrics: dict[str, float],
                   artifacts: list[Path], tables: dict[str, list[dict]] | None = None, stage: str = "evaluate",
                   datasets: list[Path] = (), details: dict[str, float] | None = None) -> str:
    """Add the summary metrics measured on ``split`` (as ``<split>_<name>``), the plots, the per-bin tables
    (``{artifact_file: rows}``, shown as tables in the MLflow UI), the detailed scores (``details``, one JSON
    artifact) and the evaluated datasets to the run that trained ``model_file``; a model no run of the store
    trained gets a run of its own. Returns the run id."""
    import pandas as pd

    mlflow = start_mlflow(tracking)
    trained_by = training_run(mlflow, tracking, model_file)
    if trained_by is not None:
        kwargs = {"run_id": trained_by.info.run_id}
    else:
        kwargs = {"run_name": f"evaluation of {Path(model_file).name} (trained elsewhere)",
                  "tags": {"cmbml.model_md5": file_md5(model_file), "mlflow.source.git.commit": git_commit()}}
    with closing_run(mlflow, stage, **kwargs) as run:
        mlflow.set_tags({k: str(v) for k, v in tracking.evaluation_params.items()})
        for name, rows in (tables or {}).items():
            mlflow.log_table(data=pd.DataFrame(rows), artifact_file=name)
        if details:
            mlflow.log_dict(dict(sorted(details.items())), f"{split}_scores.json")
        log_datasets(mlflow, {"evaluation": list(datasets)})
        mlflow.log_metrics({f"{split}_{k}": float(v) for k, v in metrics.items()})
        for path in artifacts:  # plots at the root, where the compare view looks
            mlflow.log_artifact(str(path), artifact_path=None if path.suffix == ".png" else "metrics")
        return run.info.run_id


def load_model(ref: str):
    """A trained network and its model card from ``ref``: a registry or run URI (``models:/cmbml-lensing-v2@default``,
    ``runs:/<id>/model``; the store is ``$MLFLOW_TRACKING_URI`` or the repository's), an MLflow model folder,
    or a ``.keras`` file with ``model_card.json`` beside it. Raises ``FileNotFoundError`` with a readable message."""
    if ref.startswith(("models:/", "runs:/", "m-")):
        import mlflow

        from cmbml.common.config import resolve_tracking_uri
        from cmbml.common.params import load_params

        if "MLFLOW_TRACKING_URI" not in os.environ:
            params_file = repository_root() / "params.yaml"
            if not params_file.is_file():
                raise FileNotFoundError(f"{ref}: no MLflow store to look in (run inside the repository, "
                                        "or set MLFLOW_TRACKING_URI)")
            mlflow.set_tracking_uri(resolve_tracking_uri(load_params(params_file)["mlflow"]["tracking_uri"]))
        from mlflow.exceptions import MlflowException

        try:
            card = mlflow.models.get_model_info(ref).metadata or {}
            model = mlflow.keras.load_model(ref)
        except MlflowException as err:
            raise FileNotFoundError(f"{ref}: {str(err).splitlines()[0]}") from None
        return model, card
    path = Path(ref)
    if path.is_dir() and (path / "MLmodel").is_file():
        import mlflow
        from mlflow.models import Model

        return mlflow.keras.load_model(str(path)), Model.load(str(path / "MLmodel")).metadata or {}
    if path.is_file() and path.suffix == ".keras":
        card_file = path.parent / "model_card.json"
        if not card_file.is_file():
            raise FileNotFoundError(f"{path}: no model_card.json beside it (geometry and units of the network)")
        import keras

        return keras.models.load_model(path), json.loads(card_file.read_text())
    raise FileNotFoundError(f"{ref}: not a model; allowed models:/<name>@<alias>, runs:/<id>/model, an MLflow model "
                            "folder or a .keras file with model_card.json beside it")
