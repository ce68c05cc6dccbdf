"""What the experiments' setups share: paths, MLflow settings, training settings, cosmology checks.

Each experiment has one setup, built once from params.yaml (:mod:`cmbml.lensing.setup`,
:mod:`cmbml.cenn.setup`, and :class:`SpectraSetup` here for the CAMB table). A setup reads the composed parameters of one experiment, checks every key it uses (all problems
at once, each naming the key, its value and the allowed range), and holds what follows from
them: the flat-sky grid, the patch crop, band limits, bins, beams and windows, the kappa power on
the grid, the MLflow settings and the path of every dataset, model, plot and report (the
``paths`` block, which ``dvc.yaml`` reads too). The parameter check, the stages, the evaluation
and the tests call the same properties, so each derived quantity has one definition.

Paths in ``paths`` and the instrument table are relative to the working directory (the
repository, or DVC's copy of it for queued experiments); a file named in the parameters must lie
inside it, so that DVC tracks what the pipeline reads.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cmbml.common.flatsky import FlatGrid
from cmbml.common.params import Checker, available_options, flatten, get_key, repository_root

OPTIMIZERS = ["adam", "sgd", "adagrad", "rmsprop"]
PRECISIONS = ["float32", "mixed_bfloat16", "mixed_float16"]
STRATEGIES = ["single", "mirrored"]
"""tf.distribute strategies: one device; one replica per GPU of this node (Mirrored). Not MultiWorkerMirrored:
Keras 3's Model.fit fails under it (upstream keras-team/keras#20585), see :func:`check_strategy`."""


# ---- paths -----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class SpectraPaths:
    dir: Path
    camb_cls: Path
    plots: Path


def read_paths(c: Checker, cls, blocks: Sequence[str]):
    """A paths dataclass from ``paths.<block>.<field>``, the first block that has the field."""
    values, keys = {}, {}
    for f in dataclasses.fields(cls):
        for block in blocks:
            node = c.params.get("paths", {}).get(block, {})
            if isinstance(node, Mapping) and f.name in node:
                values[f.name], keys[f.name] = node[f.name], f"paths.{block}.{f.name}"
                break
        else:
            c.fail(f"paths.{blocks[-1]}.{f.name}: missing")
    bad = [f"{keys[k]} = {v!r}" for k, v in values.items() if not isinstance(v, str) or not v or Path(v).is_absolute()
           or ".." in Path(v).parts]
    if bad:
        c.fail(f"{', '.join(bad)}: paths must be relative and stay inside the repository")
    if len(values) < len(dataclasses.fields(cls)) or bad:
        return None
    return cls(**{k: Path(v) for k, v in values.items()})


# ---- MLflow -----------------------------------------------------------------------------------------

def resolve_tracking_uri(configured: str) -> str:
    """Absolute MLflow tracking URI: ``sqlite:///mlflow.db`` -> ``sqlite:////<repo>/mlflow.db``.

    ``MLFLOW_TRACKING_URI`` in the environment wins (tests point it at a scratch store).
    """
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if env:
        return env
    prefix = "sqlite:///"
    if configured.startswith(prefix) and not configured[len(prefix):].startswith("/"):
        return prefix + str(repository_root() / configured[len(prefix):])
    return configured


@dataclass(frozen=True)
class Tracking:
    """Where a training run is logged, and the parameters it logs (its own experiment's only)."""

    tracking_uri: str
    experiment: str
    registered_model: str
    params: Mapping[str, Any]  # logged as run parameters by training
    evaluation_params: Mapping[str, Any]  # logged as run tags by evaluation (tags may change, params may not)
    description: str = ""  # the MLflow experiment's description


def check_tracking_uri(c: Checker) -> str | None:
    uri = c.text("mlflow.tracking_uri")
    if uri is None or "MLFLOW_TRACKING_URI" in os.environ:
        return uri
    if uri.startswith(("http://", "https://")):  # a tracking server (README: Beyond one machine)
        return uri
    prefix = "sqlite:///"
    if not uri.startswith(prefix):
        c.fail(f"mlflow.tracking_uri = {uri!r}: allowed a SQLite store inside the repository, sqlite:///<file>, "
               "or a tracking server, http(s)://host:port")
        return None
    root = repository_root()
    path = (root / uri[len(prefix):]).resolve()
    if not path.is_relative_to(root):
        c.fail(f"mlflow.tracking_uri = {uri!r}: resolves to {path}, outside the repository {root}; "
               "allowed a SQLite file inside it, e.g. sqlite:///mlflow.db")
        return None
    return uri


def logged_params(params: Mapping[str, Any], keys: Sequence[str], exclude: Sequence[str] = ()) -> dict[str, Any]:
    """``keys`` of ``params`` flattened to ``a.b.c`` names, without those under ``exclude``."""
    flat = {k: v for key in keys for k, v in flatten(get_key(params, key), key).items()}
    return {k: v for k, v in flat.items() if not any(k == e or k.startswith(e + ".") for e in exclude)}


def tracking_from_params(params: Mapping[str, Any], experiment: str, registered_model: str, keys: Sequence[str],
                         evaluation_keys: Sequence[str], description: str = "") -> Tracking:
    """MLflow settings of an experiment whose parameters are ``keys``, ``evaluation_keys`` among them."""
    return Tracking(resolve_tracking_uri(params["mlflow"]["tracking_uri"]), experiment, registered_model,
                    logged_params(params, keys, evaluation_keys), logged_params(params, evaluation_keys), description)


def check_strategy(c: Checker, key: str) -> None:
    """``<experiment>_train.strategy``: one of STRATEGIES, with the reason where several nodes are asked for."""
    if c.params.get(key.split(".")[0], {}).get("strategy") == "multi_worker_mirrored":
        c.fail(f"{key} = 'multi_worker_mirrored': allowed values are {', '.join(STRATEGIES)}; Keras "
               f"{_keras_version()} Model.fit cannot train under MultiWorkerMirroredStrategy (its first batch and its "
               "metrics are reduced across workers in ways TensorFlow refuses)")
        return
    c.choice(key, STRATEGIES)


def _keras_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("keras")
    except PackageNotFoundError:
        return "3"


# ---- where simulations run -------------------------------------------------------------------------

def check_executor(c: Checker) -> None:
    """``executor.kind`` (local | dask) and, for Dask, a scheduler: the parameter or ``DASK_SCHEDULER_ADDRESS``."""
    from cmbml.common.executors import EXECUTORS, SCHEDULER_SCHEMES

    kind = c.choice("executor.kind", EXECUTORS)
    address = c.value("executor.scheduler_address")
    if address is not None and (not isinstance(address, str) or not address.startswith(SCHEDULER_SCHEMES)):
        c.fail(f"executor.scheduler_address = {address!r}: allowed a Dask scheduler address "
               f"({' or '.join(s + 'host:port' for s in SCHEDULER_SCHEMES[:2])}) or null")
    elif kind == "dask" and address is None and not os.environ.get("DASK_SCHEDULER_ADDRESS"):
        c.fail("executor.scheduler_address = null: executor.kind = dask needs a scheduler, allowed tcp://host:port "
               "(or DASK_SCHEDULER_ADDRESS in the environment)")


def executor_spec(params: Mapping[str, Any], workers_key: str):
    """The :class:`cmbml.common.executors.ExecutorSpec` of a simulation stage; ``workers_key`` counts local processes."""
    from cmbml.common.executors import ExecutorSpec

    return ExecutorSpec(kind=params["executor"]["kind"], workers=int(get_key(params, workers_key)),
                        scheduler_address=params["executor"].get("scheduler_address"))


def check_shared(c: Checker, paths_cls, paths_block: str, conf_dir: Path = Path("conf")) -> None:
    """The checks every experiment runs besides its own: cosmology and seed, the CAMB table's lmax,
    the MLflow store and the experiment's paths."""
    check_cosmology(c)
    check_spectra(c)
    check_tracking_uri(c)
    check_executor(c)
    read_paths(c, SpectraPaths, ["spectra"])
    read_paths(c, paths_cls, ["spectra", paths_block])
    docs = c.params.get("paths", {}).get("data_docs")
    if not isinstance(docs, str) or not docs or Path(docs).is_absolute() or ".." in Path(docs).parts:
        c.fail(f"paths.data_docs = {docs!r}: allowed a relative folder: paths must be relative and stay inside the repository "
               "(the Data Docs of every gate)")
    scales = available_options("scale", conf_dir)
    c.choice("scale.name", scales) if scales else c.text("scale.name")


@dataclass(frozen=True)
class TrainSettings:
    optimizer: str
    learning_rate: float
    batch_size: int
    epochs: int
    early_stopping_patience: int
    clipnorm: float | None = None
    l2: float = 0.0
    augment: bool = False
    precision: str = "float32"  # a Keras dtype policy: float32, mixed_bfloat16 or mixed_float16
    strategy: str = "single"  # one of STRATEGIES; batch_size is the global batch whatever the replica count


# ---- checks shared by every experiment --------------------------------------------------------------

def check_cosmology(c: Checker) -> None:
    c.number("cosmology.H0", 20, 150)
    c.number("cosmology.ombh2", 0.005, 0.1)
    c.number("cosmology.omch2", 0.01, 0.99)
    c.number("cosmology.tau", 0.01, 0.8)
    c.number("cosmology.As", 1e-10, 1e-8)
    c.number("cosmology.ns", 0.5, 1.5)
    c.number("cosmology.mnu", 0.0, 3.0)
    c.number("cosmology.r", 0.0, 1.0)
    c.number("seed", 0, 2**63 - 1, integer=True)


def required_spectra_lmax(params: Mapping[str, Any]) -> int:
    """Highest multipole the simulations of this parameter set need from CAMB (<= spectra.lmax).

    The lensing patch's band limits and the CENN skies' ``3 nside - 1``. A band limit of ``null``
    means every grid mode, up to the grid's corner ``sqrt(2) * ell_Nyquist``.
    """
    grid = FlatGrid(int(params["npix"]), float(params["pixel_arcmin"]))
    corner = math.ceil(math.sqrt(2.0) * grid.ell_nyquist) + 1
    need = [corner if params.get(k) is None else int(math.ceil(params[k])) for k in ("T_lmax", "kappa_lmax")]
    need.append(3 * int(params["scale"]["cenn"]["nside"]) - 1)  # HEALPix band limit of the CENN skies
    return max(need + [100])


def check_spectra(c: Checker) -> None:
    lmax = c.number("spectra.lmax", 100, 30000, integer=True)
    try:
        need = required_spectra_lmax(c.params)
    except (KeyError, TypeError, ValueError, ZeroDivisionError):
        return  # the keys it needs are reported by their own checks
    if lmax is not None and lmax < need:
        c.fail(f"spectra.lmax = {lmax}: the simulations need CAMB spectra to ell = {need}; "
               f"allowed {need} <= spectra.lmax <= 30000")


# ---- CAMB spectra --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class SpectraSetup:
    """The CAMB table every simulation reads: one cosmology, one lmax above every parameter set's needs."""

    cosmology: Mapping[str, float]
    lmax: int
    paths: SpectraPaths

    @classmethod
    def from_params(cls, params: Mapping[str, Any], source: str = "params.yaml") -> SpectraSetup:
        c = Checker(params)
        check_cosmology(c)
        check_spectra(c)
        paths = read_paths(c, SpectraPaths, ["spectra"])
        c.raise_if_any(source)
        return cls(dict(params["cosmology"]), int(params["spectra"]["lmax"]), paths)


def load_spectra(path: str | Path = "params.yaml") -> SpectraSetup:
    """The CAMB-table setup of a params file."""
    from cmbml.common.params import load_params

    return SpectraSetup.from_params(load_params(path), source=str(path))


def architecture_params(block: Mapping[str, Any], registry) -> Any:
    """The chosen architecture's validated ``Params`` from a network block ``{architecture: name, name: {...}}``."""
    name = block["architecture"]
    return registry[name].Params(**(block.get(name) or {}))


def check_architecture(c: Checker, key: str, registry) -> None:
    """A network block names a registered architecture; each architecture's sub-block passes its ``Params``."""
    from pydantic import ValidationError

    block = c.value(key)
    if not isinstance(block, Mapping):
        if block is not None:
            c.fail(f"{key} = {block!r}: allowed a mapping with `architecture` and one block per architecture")
        return
    name = c.choice(f"{key}.architecture", registry.names())
    for sub, value in block.items():
        if sub == "architecture":
            continue
        if sub not in registry:
            c.fail(f"{key}.{sub}: unknown key; allowed architecture blocks are {', '.join(registry.names())}")
            continue
        try:
            registry[sub].Params(**(value or {}))
        except ValidationError as err:
            for e in err.errors():
                where = ".".join(str(x) for x in e["loc"])
                c.fail(f"{key}.{sub}{'.' + where if where else ''}: {e['msg'].removeprefix('Value error, ')}")
    if name is not None and name not in block and registry[name].Params.model_fields:
        try:
            registry[name].Params()
        except ValidationError:
            c.fail(f"{key}.{name}: missing; the architecture {name!r} needs its settings block")
