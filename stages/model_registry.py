"""The MLflow model registry: each trained network a version of its parameter set's model, aliased by scale,
and a network loaded back by reference.

Registered models are named ``cmbml-<experiment>-<parameter set>`` (``cmbml-lensing-v2``, ``cmbml-cenn-B``); the
alias of a scale (``@smoke``, ``@default``, ``@paper``) names the newest version trained at it. Each version
carries the training run's tags and, as metadata, the network's model card (geometry and units), which
``cmbml predict`` checks maps against. Loading never runs code from the model: Keras's safe mode refuses
serialised Python (lambdas), and no custom objects are registered.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cmbml.common.config import Tracking
from cmbml.common.params import repository_root
from stages.tracking import ParameterSet, TrainingRun, training_run

if TYPE_CHECKING:
    from cmbml.common.training import BatchSource

SAFE = {"safe_mode": True}
"""Keras's default, written out: loading never deserialises Python code."""


@dataclass(frozen=True)
class Registered:
    """A registered model version and the alias that points at it."""

    name: str
    alias: str
    version: str
    model_uri: str  # of the logged model the version was made from

    def __str__(self) -> str:
        return f"models:/{self.name}@{self.alias} (version {self.version})"


def input_example(batches: BatchSource, n: int = 2):
    """The first ``n`` inputs of ``batches`` in physical units (float32): from them MLflow infers the model's
    signature."""
    import numpy as np

    mean, std = batches.x_stats
    physical = batches.batch(0, 0)[0][:n] * np.asarray(std) + np.asarray(mean)
    return physical.astype(np.float32)


def register(mlflow, tracking: Tracking, model_uri: str, scale: str, tags: Mapping[str, str], card: Mapping[str, Any]):
    """Register the logged model as a new version of the parameter set's model (``cmbml-lensing-v2``), move the
    scale's alias (``@smoke``, ``@default``, ``@paper``) to it, tag it and describe both from the model card.
    Returns the model version."""
    client = mlflow.tracking.MlflowClient()
    version = mlflow.register_model(model_uri, tracking.registered_model, tags=tags)
    inp, out = card["input"], card["output"]
    client.update_registered_model(
        tracking.registered_model,
        description=(
            f"{card['experiment']} network of parameter set {card['parameter_set']}: {inp['quantity']} "
            f"({', '.join(inp['channels'])}; {inp['units']}; {inp['npix']}x{inp['npix']} pixels of {inp['pixel_arcmin']:g} "
            f"arcmin) -> {out['quantity']} ({out['units']}). Aliases name the newest version trained at each scale "
            "(@smoke, @default, @paper); the model's metadata holds its geometry and units (`cmbml predict` checks them)."
        ),
    )
    client.update_model_version(
        tracking.registered_model,
        version.version,
        description=(
            f"Trained at scale={scale} in DVC experiment {tags.get('dvc_exp_name')} from commit "
            f"{tags.get('git_commit', '')[:10]}; overrides {tags.get('overrides', '{}')}."
        ),
    )
    move_alias(client, tracking.registered_model, scale, int(version.version))
    return version


def move_alias(client, name: str, alias: str, version: int, attempts: int = 5) -> None:
    """Point ``alias`` at ``version`` unless a newer version already holds it.

    Two experiments registering at once (``dvc queue start -j 2`` against a tracking server) may both move the
    same alias: on PostgreSQL the second insert then fails on the alias's unique key. The alias names the newest
    version trained at the scale, so a failed move is read back and retried only while the alias points at an
    older version (or at none).
    """
    import time

    from mlflow.exceptions import MlflowException

    for attempt in range(attempts):
        try:
            client.set_registered_model_alias(name, alias, version)
            return
        except MlflowException:
            if attempt == attempts - 1:
                raise
            time.sleep(0.2 * (attempt + 1))
            try:
                if int(client.get_model_version_by_alias(name, alias).version) >= version:
                    return  # a newer version took the alias meanwhile
            except MlflowException:
                pass  # no alias yet: try again


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


def log_and_register(run: TrainingRun, model, example) -> Registered:
    """Log ``model`` (physical units) to ``run`` with its signature, requirements and model card, register
    it as a new version of the parameter set's model and move the scale's alias to it.

    Parameters
    ----------
    run : TrainingRun
        The open training run: its parameter set names the model and the alias; the version gets its tags.
    model : keras.Model
        The trained network that maps physical units to physical units.
    example : numpy.ndarray
        A few inputs in physical units (:func:`input_example`), for the signature.
    """
    from mlflow.models import infer_signature

    parameter_set = run.parameter_set
    signature = infer_signature(example, model.predict(example, verbose=0))
    info = run.mlflow.keras.log_model(
        model,
        name="model",
        signature=signature,
        metadata=dict(parameter_set.model_card),
        pip_requirements=pinned_requirements(),
    )
    version = register(
        run.mlflow,
        parameter_set.tracking,
        info.model_uri,
        parameter_set.scale,
        {k: v for k, v in run.tags.items() if not k.startswith("mlflow.")},
        parameter_set.model_card,
    )
    return Registered(
        parameter_set.tracking.registered_model, parameter_set.scale, str(version.version), info.model_uri
    )


def train_log_and_register(
    parameter_set: ParameterSet,
    stage: str,
    core,
    training: BatchSource,
    early_stopping: BatchSource,
    train,
    paths,
    title: str,
) -> tuple[Any, str, Registered]:
    """What every training stage does after building its network: fit until ``val_loss`` stops improving and
    keep the best epoch (:func:`cmbml.common.fit.fit`), every epoch logged to the stage's MLflow run; write the
    model, its history, training curve and model card; log them and register the model as
    ``<prefix>-<parameter set>@<scale>``.

    Parameters
    ----------
    parameter_set : ParameterSet
        The experiment's parameter set at its scale (names the run, the registered model and the alias).
    stage : str
        The DVC stage (an MLflow run tag).
    core : keras.Model
        The compiled network on standardised data.
    training, early_stopping : BatchSource
        Batches carrying the training set's standardisation statistics.
    train
        The setup's training settings (``epochs``, ``early_stopping_patience``).
    paths
        The setup's paths (``model``, ``history``, ``train_plots``, ``model_card``).
    title : str
        Title of the training-curve figure.

    Returns
    -------
    fitted, run_id, registered
        The fit (history, best epoch and loss, the physical-units model), the MLflow run and the model version.
    """
    from cmbml.common.fit import fit, write_fit
    from cmbml.common.io import write_json

    with training_run(parameter_set, stage=stage) as run:
        run.log_inputs(core, training, early_stopping)
        fitted = fit(
            core,
            training,
            early_stopping,
            train.epochs,
            train.early_stopping_patience,
            on_epoch_end=run.log_epoch,
            resume_dir=resume_dir(stage, parameter_set.tracking.params),
        )
        curve = paths.train_plots / "training_curve.png"
        write_fit(fitted, paths.model, paths.history, curve, title=title)
        write_json(paths.model_card, parameter_set.model_card)
        run.log_fit(fitted, paths.model, artifacts=[curve, paths.model_card])
        registered = log_and_register(run, fitted.model, input_example(early_stopping))
    return fitted, run.id, registered


def resume_dir(stage: str, params: Mapping[str, Any]) -> Path:
    """Where a training keeps what it needs to resume after an interruption: outside the stage's outputs (which DVC
    removes before a rerun), one folder per stage and parameter values, so that only the same training resumes."""
    import hashlib

    digest = hashlib.sha256(json.dumps({"stage": stage, **params}, sort_keys=True, default=str).encode()).hexdigest()
    return repository_root() / ".cmbml" / "resume" / f"{stage}-{digest[:16]}"


class ModelError(ValueError):
    """A model that cannot be loaded without running code from it, or that is not a readable Keras archive; one
    line naming it and the reason."""


def load_keras_archive(path: Path, source: str | None = None):
    """A ``.keras`` archive loaded in safe mode, after checking that it is one (a zip holding ``config.json``):
    what Keras refuses (a ``Lambda`` layer's serialised Python, a class it does not know) is told in one line."""
    import zipfile

    source = source or str(path)
    if not zipfile.is_zipfile(path):
        raise ModelError(f"{source}: not a Keras archive (.keras is a zip file); only Keras archives are loaded")
    with zipfile.ZipFile(path) as archive:
        if "config.json" not in archive.namelist():
            raise ModelError(f"{source}: a zip file without config.json, not a Keras archive")
    import keras

    try:
        return keras.models.load_model(path, **SAFE)
    except Exception as err:  # safe mode's refusal (Lambda), an unknown class, a damaged archive
        first = next((line for line in str(err).splitlines() if line.strip()), type(err).__name__)
        raise ModelError(f"{source}: cannot be loaded in Keras's safe mode: {first[:300]}") from None


def mlflow_keras_file(folder: Path, source: str) -> Path:
    """The ``.keras`` archive of an MLflow model folder, after checking that its MLmodel describes nothing else:
    a Keras flavor stored as a Keras archive inside the folder. An exported TensorFlow graph (``save_exported_model``,
    whose loading runs the graph's ops), another flavor, or a data path that leaves the folder is refused."""
    from mlflow.models import Model

    flavors = Model.load(str(folder / "MLmodel")).flavors
    if "keras" not in flavors:
        raise ModelError(
            f"{source}: an MLflow model of flavor(s) {', '.join(sorted(flavors))}; only Keras archives are loaded "
            "(nothing else loads without running code from the model)"
        )
    conf = flavors["keras"]
    if conf.get("save_exported_model"):
        raise ModelError(f"{source}: an exported TensorFlow graph, not a Keras archive; loading it would run its ops")
    data = (folder / conf.get("data", "data")).resolve()
    if data.is_dir():
        data = data / "model"
    archive = data.with_name(data.name + ".keras")
    if not archive.is_relative_to(folder.resolve()):
        raise ModelError(f"{source}: its MLmodel points outside the model folder ({conf.get('data')!r})")
    if not archive.is_file():
        raise ModelError(f"{source}: no Keras archive at {archive.relative_to(folder.resolve())}")
    return archive


def load_model(ref: str):
    """A trained network and its model card from ``ref``: a registry or run URI (``models:/cmbml-lensing-v2@default``,
    ``runs:/<id>/model``; the store is ``$MLFLOW_TRACKING_URI`` or the repository's), an MLflow model folder,
    or a ``.keras`` file with ``model_card.json`` beside it. Raises ``FileNotFoundError`` with a readable message
    for what does not exist, :class:`ModelError` for what cannot be loaded safely.

    Nothing from the model runs: only Keras archives are loaded, in safe mode (serialised Python, as in a
    ``Lambda`` layer, is refused); MLflow's own loader is not used, so an MLmodel cannot name an exported graph,
    another flavor's loader or a file outside its folder."""
    if ref.startswith(("models:/", "runs:/", "m-")):
        import mlflow

        from cmbml.common.config import resolve_tracking_uri
        from cmbml.common.params import load_params

        if "MLFLOW_TRACKING_URI" not in os.environ:
            params_file = repository_root() / "params.yaml"
            if not params_file.is_file():
                raise FileNotFoundError(
                    f"{ref}: no MLflow store to look in (run inside the repository, or set MLFLOW_TRACKING_URI)"
                )
            mlflow.set_tracking_uri(resolve_tracking_uri(load_params(params_file)["mlflow"]["tracking_uri"]))
        from mlflow.exceptions import MlflowException

        from stages.tracking import open_store

        open_store(mlflow.get_tracking_uri())  # a damaged or unreachable store in one line, within seconds
        try:
            card = mlflow.models.get_model_info(ref).metadata or {}
            folder = Path(mlflow.artifacts.download_artifacts(artifact_uri=ref))
        except MlflowException as err:
            raise FileNotFoundError(f"{ref}: {str(err).splitlines()[0]}") from None
        return load_keras_archive(mlflow_keras_file(folder, ref), ref), card
    path = Path(ref)
    if path.is_dir() and (path / "MLmodel").is_file():
        from mlflow.models import Model

        card = Model.load(str(path / "MLmodel")).metadata or {}
        return load_keras_archive(mlflow_keras_file(path, ref), ref), card
    if path.is_file() and path.suffix == ".keras":
        card_file = path.parent / "model_card.json"
        if not card_file.is_file():
            raise FileNotFoundError(f"{path}: no model_card.json beside it (geometry and units of the network)")
        return load_keras_archive(path), json.loads(card_file.read_text())
    raise FileNotFoundError(
        f"{ref}: not a model; allowed models:/<name>@<alias>, runs:/<id>/model, an MLflow model "
        "folder or a .keras file with model_card.json beside it"
    )
