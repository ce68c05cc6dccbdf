"""MLflow runs of the training and evaluation stages: the store and experiment, run names and tags, the
parameters, datasets and metrics, and runs that always close (FAILED on an exception, KILLED on a signal).

The library (``cmbml``) never imports MLflow; this module and :mod:`stages.model_registry` (registered
models, loading a model by reference) are the places that do.
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
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cmbml.common.config import Tracking
from cmbml.common.params import repository_root

if TYPE_CHECKING:
    from cmbml.common.fit import Fit
    from cmbml.common.training import H5Batches


def artifact_location(experiment: str) -> str:
    """Artifacts beside the store: ``<repo>/mlruns/<experiment>``."""
    root = Path(os.environ.get("CMBML_MLFLOW_ARTIFACTS", repository_root() / "mlruns"))
    return (root / experiment).resolve().as_uri()


def git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True, cwd=repository_root()
        )
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
        compose_and_dump(
            composed,
            str(root / "conf"),
            None,
            "config",
            root,
            [f"{group}={option}" for group, option in choices.items()],
        )
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


def run_tags(
    parameter_set: str, scale: str, overrides: dict[str, Any] | None = None, params_digest: str = "", stage: str = ""
) -> dict[str, str]:
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
    for context, paths in files.items():
        for path in paths:
            mlflow.log_input(file_dataset(path), context=context)


def file_dataset(path: Path):
    """An HDF5 file as an MLflow dataset: named by its repository path, its digest the file's DVC hash."""
    from mlflow.data.dataset_source_registry import get_registered_sources
    from mlflow.data.meta_dataset import MetaDataset

    # The local-file source, named directly: MLflow registers it twice and warns when it resolves a path.
    local_source = next(s for s in get_registered_sources() if s.__name__ == "LocalArtifactDatasetSource")
    root = repository_root()
    path = Path(path).resolve()
    name = str(path.relative_to(root)) if path.is_relative_to(root) else path.name
    return MetaDataset(local_source(str(path)), name=name, digest=file_md5(path)[:20])


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


def close_orphaned_runs(mlflow, tracking_uri: str | None = None) -> list[str]:
    """Close as KILLED, with a note, every RUNNING run of the store (``tracking_uri``, default MLflow's current one)
    started on this host by a process that no longer exists (SIGKILL leaves no chance to close it). Returns the
    closed run ids."""
    client = mlflow.tracking.MlflowClient(tracking_uri=tracking_uri)
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
        client.set_tag(
            run.info.run_id,
            "cmbml.end",
            f"{tags.get('cmbml.stage', 'stage')} process {pid} on {host} ended without closing its run "
            "(killed); closed at the next stage start or command that opened the store",
        )
        client.set_terminated(run.info.run_id, status="KILLED")
        closed.append(run.info.run_id)
    return closed


class StoreError(RuntimeError):
    """The MLflow store cannot be used: a damaged SQLite file or an unreachable server; one line saying how to
    recover."""


SERVER_TIMEOUT_S = 5.0
"""How long a tracking server has to answer its health check before a command gives up (MLflow's own retries
would wait minutes)."""

_READY: set[str] = set()  # stores this process has opened


def open_store(uri: str) -> str:
    """Make the store ``uri`` ready, safely when several processes open a new one at once, or raise
    :class:`StoreError` in one line naming the store, the reason and the way out. Returns ``uri``.

    SQLite: the file must be an SQLite database (a damaged one is named, never overwritten); MLflow creates and
    migrates its tables under an exclusive lock on ``<file>.lock``, so parallel first use (``dvc queue start -j
    2`` in a fresh clone) cannot interleave two migrations. A server (``http(s)://``) must answer ``/health``
    within :data:`SERVER_TIMEOUT_S`.
    """
    if uri in _READY:
        return uri
    if uri.startswith(("http://", "https://")):
        import urllib.error
        import urllib.request

        try:
            with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=SERVER_TIMEOUT_S):
                pass
        except (urllib.error.URLError, OSError) as err:
            reason = getattr(err, "reason", err)
            raise StoreError(
                f"MLflow tracking server {uri} did not answer within {SERVER_TIMEOUT_S:g} s ({reason}): start it "
                "(scripts/tracking_server.sh) or point mlflow.tracking_uri (or MLFLOW_TRACKING_URI) at a running one"
            ) from None
    elif uri.startswith("sqlite:///"):
        import fcntl

        path = Path(uri[len("sqlite:///") :])
        recover = (
            f"move it aside (mv {path} {path}.damaged) and rerun: a new store is created; the runs it held are lost, "
            "the DVC outputs (data, models, metrics) are not"
        )
        if path.is_file() and path.stat().st_size > 0:
            with open(path, "rb") as fh:
                if fh.read(16) != b"SQLite format 3\x00":
                    raise StoreError(f"{path}: the MLflow store is damaged (not an SQLite database); {recover}")
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path.with_name(path.name + ".lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
            import logging

            quiet = [logging.getLogger(n) for n in ("mlflow.store.db.utils", "alembic")]  # "Creating tables..."
            levels = [q.level for q in quiet]
            try:
                from mlflow.tracking import MlflowClient

                for q in quiet:
                    q.setLevel(logging.WARNING)
                MlflowClient(tracking_uri=uri).search_experiments(max_results=1)  # creates or migrates the tables
            except Exception as err:  # sqlite3 and SQLAlchemy errors of a damaged database
                first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
                raise StoreError(f"{path}: the MLflow store cannot be opened ({first[:200]}); {recover}") from None
            finally:
                for q, level in zip(quiet, levels):
                    q.setLevel(level)
    import mlflow

    close_orphaned_runs(mlflow, uri)  # any stage or command that opens the store closes runs a killed process left
    _READY.add(uri)
    return uri


def start_mlflow(tracking: Tracking):
    """Point MLflow at the repository's SQLite store and select (or create) the experiment, with its description."""
    import mlflow

    mlflow.set_tracking_uri(open_store(tracking.tracking_uri))
    experiment = mlflow.get_experiment_by_name(tracking.experiment)
    if experiment is None:
        from mlflow.exceptions import MlflowException

        try:
            # A tracking server keeps artifacts where its proxy (--artifacts-destination) says; a local store beside it.
            location = (
                None
                if tracking.tracking_uri.startswith(("http://", "https://"))
                else artifact_location(tracking.experiment)
            )
            mlflow.create_experiment(tracking.experiment, artifact_location=location)
        except MlflowException:  # a concurrent queue worker created it first
            if mlflow.get_experiment_by_name(tracking.experiment) is None:
                raise
        experiment = mlflow.get_experiment_by_name(tracking.experiment)
    if tracking.description and experiment.tags.get("mlflow.note.content") != tracking.description:
        mlflow.tracking.MlflowClient().set_experiment_tag(
            experiment.experiment_id, "mlflow.note.content", tracking.description
        )
    mlflow.set_experiment(tracking.experiment)
    return mlflow


@dataclass(frozen=True)
class ParameterSet:
    """What a training run trains: one parameter set of an experiment at one scale.

    Attributes
    ----------
    tracking : Tracking
        The store, experiment and registered model, and the parameters the run logs.
    group : str
        The config group that chose the parameter set: ``lensing`` (v1..v8) or ``cenn`` (E, B, QU).
    name : str
        Its option in that group (``v2``, ``B``).
    scale : str
        ``smoke``, ``default`` or ``paper``: the registered model's alias.
    model_card : mapping
        Geometry and units of the network: beside the model, in its MLflow metadata; its ``params_digest``
        tags the run.
    """

    tracking: Tracking
    group: str
    name: str
    scale: str
    model_card: Mapping[str, Any]

    @property
    def choices(self) -> dict[str, str]:
        """The config-group options that compose the parameter set (``{"lensing": "v2", "scale": "smoke"}``)."""
        return {self.group: self.name, "scale": self.scale}


@dataclass(frozen=True)
class TrainingRun:
    """An open MLflow training run (from :func:`training_run`): what a training stage logs while it fits."""

    mlflow: Any
    run: Any  # mlflow.ActiveRun
    parameter_set: ParameterSet
    tags: Mapping[str, str]  # the run's tags; the registered model version gets those not named mlflow.*

    @property
    def id(self) -> str:
        return self.run.info.run_id

    def log_inputs(self, core, training: H5Batches, early_stopping: H5Batches) -> None:
        """The network's size, the standardisation statistics of ``training`` and the files of both batch
        sources (HDF5 datasets, as run inputs in the contexts ``training`` and ``early_stopping``)."""
        from cmbml.common.networks import count_parameters

        x_stats, y_stats = training.x_stats, training.y_stats
        self.mlflow.log_params(
            {
                "n_parameters": count_parameters(core),
                "x_mean": x_stats[0],
                "x_std": x_stats[1],
                "y_mean": y_stats[0],
                "y_std": y_stats[1],
            }
        )
        log_datasets(self.mlflow, {"training": list(training.files), "early_stopping": list(early_stopping.files)})

    def log_epoch(self, epoch: int, losses: Mapping[str, float]) -> None:
        """The losses of ``epoch`` (from 1) as metrics at that step: a callback of :func:`cmbml.common.fit.fit`."""
        self.mlflow.log_metrics(dict(losses), step=epoch)

    def log_fit(self, fitted: Fit, model_file: Path, artifacts: Sequence[Path]) -> None:
        """The best epoch and its loss, the saved model's digest (which finds this run again from the file,
        :func:`run_that_trained`) and ``artifacts`` (training curve, model card) at the run's root, where the
        compare view looks."""
        self.mlflow.log_metrics(
            {"best_val_loss": fitted.best_val_loss, "best_epoch": fitted.best_epoch, "epochs_run": fitted.epochs_run}
        )
        self.mlflow.set_tag("cmbml.model_md5", file_md5(model_file))
        for path in artifacts:
            self.mlflow.log_artifact(str(path))


SYSTEM_METRICS_INTERVAL_S = 2
"""Seconds between samples of a training run's system metrics (``system/cpu_utilization_percentage``, ...)."""


@contextlib.contextmanager
def training_run(parameter_set: ParameterSet, stage: str) -> Iterator[TrainingRun]:
    """Open the MLflow run of one training of ``parameter_set``, with its parameters logged.

    The run is named after the parameter set, its scale and the parameters overridden on the command line
    (:func:`run_name`), tagged with :func:`run_tags`, and closed as FINISHED, FAILED or KILLED
    (:func:`closing_run`).
    """
    tracking = parameter_set.tracking
    mlflow = start_mlflow(tracking)
    overrides = overridden_params(dict(tracking.params), parameter_set.choices)
    tags = run_tags(
        parameter_set.name, parameter_set.scale, overrides, parameter_set.model_card["params_digest"], stage
    )
    # CPU, memory, disk (and GPU where one is present) sampled while the network trains: what sizing a run needs.
    import logging

    logging.getLogger("mlflow.system_metrics").setLevel(logging.WARNING)  # its start and stop notices
    mlflow.set_system_metrics_sampling_interval(SYSTEM_METRICS_INTERVAL_S)
    mlflow.set_system_metrics_samples_before_logging(1)
    with closing_run(
        mlflow,
        stage,
        run_name=run_name(parameter_set.name, parameter_set.scale, overrides),
        tags=tags,
        log_system_metrics=True,
    ) as run:
        mlflow.log_params({k: str(v) for k, v in tracking.params.items()})
        yield TrainingRun(mlflow, run, parameter_set, tags)


def run_that_trained(mlflow, tracking: Tracking, model_file: Path):
    """The newest finished training run whose logged model has the bytes of ``model_file``, or None (a model
    trained against another store). A model restored by DVC from its run cache finds the run that trained it."""
    experiment = mlflow.get_experiment_by_name(tracking.experiment)
    if experiment is None:
        return None
    runs = mlflow.tracking.MlflowClient().search_runs(
        [experiment.experiment_id],
        filter_string=f"tags.`cmbml.model_md5` = '{file_md5(model_file)}'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    return runs[0] if runs else None


def log_evaluation(
    tracking: Tracking,
    model_file: Path,
    split: str,
    metrics: dict[str, float],
    artifacts: list[Path],
    tables: dict[str, list[dict]] | None = None,
    stage: str = "evaluate",
    datasets: list[Path] = (),
    details: dict[str, float] | None = None,
    scored_on: Mapping[str, Path] | None = None,
) -> str:
    """Add the summary metrics measured on ``split`` (as ``<split>_<name>``), the plots, the per-bin tables
    (``{artifact_file: rows}``, shown as tables in the MLflow UI), the detailed scores (``details``, one JSON
    artifact) and the evaluated datasets to the run that trained ``model_file``; a model no run of the store
    trained gets a run of its own. The metrics are tied to the run's logged model (its page, and the registered
    version's, show them) and to the dataset they were measured on: ``scored_on`` maps a metric-name prefix
    (``""``, ``"unseen_"``) to that dataset's file, the longest matching prefix wins (default: the first of
    ``datasets``). Returns the run id."""
    import pandas as pd

    mlflow = start_mlflow(tracking)
    trained_by = run_that_trained(mlflow, tracking, model_file)
    if trained_by is not None:
        kwargs = {"run_id": trained_by.info.run_id}
    else:
        kwargs = {
            "run_name": f"evaluation of {Path(model_file).name} (trained elsewhere)",
            "tags": {"cmbml.model_md5": file_md5(model_file), "mlflow.source.git.commit": git_commit()},
        }
    with closing_run(mlflow, stage, **kwargs) as run:
        mlflow.set_tags({k: str(v) for k, v in tracking.evaluation_params.items()})
        for name, rows in (tables or {}).items():
            mlflow.log_table(data=pd.DataFrame(rows), artifact_file=name)
        if details:
            mlflow.log_dict(dict(sorted(details.items())), f"{split}_scores.json")
        log_datasets(mlflow, {split: list(datasets)})  # the datasets' role is the split they were scored as
        scored_on = dict(scored_on or ({"": datasets[0]} if datasets else {}))
        model_id = logged_model_id(mlflow, run.info.run_id)
        for prefix, part in _by_prefix(metrics, scored_on).items():
            mlflow.log_metrics(
                {f"{split}_{k}": float(v) for k, v in part.items()},
                model_id=model_id,
                dataset=file_dataset(scored_on[prefix]) if prefix in scored_on else None,
            )
        for path in artifacts:  # plots at the root, where the compare view looks
            mlflow.log_artifact(str(path), artifact_path=None if path.suffix == ".png" else "metrics")
        return run.info.run_id


def _by_prefix(metrics: Mapping[str, float], prefixes: Mapping[str, Path]) -> dict[str, dict[str, float]]:
    """``metrics`` split by the longest of ``prefixes`` each name starts with (``""`` for none)."""
    ordered = sorted(prefixes, key=len, reverse=True)
    parts: dict[str, dict[str, float]] = {}
    for key, value in metrics.items():
        prefix = next((p for p in ordered if key.startswith(p)), "")
        parts.setdefault(prefix, {})[key] = value
    return parts


def logged_model_id(mlflow, run_id: str) -> str | None:
    """The id of the model the run logged (MLflow 3's logged model), or None for a run that logged none."""
    run = mlflow.tracking.MlflowClient().get_run(run_id)
    models = mlflow.search_logged_models(
        experiment_ids=[run.info.experiment_id], filter_string=f"source_run_id = '{run_id}'", output_format="list"
    )
    return models[0].model_id if models else None


def log_method_scores(
    tracking: Tracking,
    parameter_set: str,
    scale: str,
    method: str,
    split: str,
    metrics: dict[str, float],
    artifacts: list[Path],
    tables: dict[str, list[dict]],
    dataset_files: list[Path],
    scored_on: Path,
    details: dict[str, float] | None = None,
    extra_tags: Mapping[str, str] | None = None,
    extra_params: Mapping[str, str] | None = None,
) -> str:
    """An MLflow evaluation run for a method scored from its estimates (``cmbml score``), named after it: the
    parameters of the data it was scored on and ``method`` as run parameters (so the results tables show it as a
    row of its own) with ``extra_params``, its summary metrics as ``<split>_<name>`` tied to the dataset ``scored_on``, the per-bin
    tables, every score as ``<split>_scores.json``, the plots. Returns the run id."""
    import pandas as pd

    mlflow = start_mlflow(tracking)
    tags = {**run_tags(parameter_set, scale, stage="cmbml score"), "cmbml.method": method, **(extra_tags or {})}
    with closing_run(mlflow, "cmbml score", run_name=f"{method} on {parameter_set}-{scale}", tags=tags) as run:
        mlflow.log_params({**{k: str(v) for k, v in tracking.params.items()}, "method": method, **(extra_params or {})})
        mlflow.set_tags({k: str(v) for k, v in tracking.evaluation_params.items()})
        for name, rows in tables.items():
            mlflow.log_table(data=pd.DataFrame(rows), artifact_file=name)
        if details:
            mlflow.log_dict(dict(sorted(details.items())), f"{split}_scores.json")
        log_datasets(mlflow, {"evaluation": list(dataset_files)})
        mlflow.log_metrics({f"{split}_{k}": float(v) for k, v in metrics.items()}, dataset=file_dataset(scored_on))
        for path in artifacts:
            mlflow.log_artifact(str(path), artifact_path=None if path.suffix == ".png" else "metrics")
        return run.info.run_id
