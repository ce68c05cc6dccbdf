"""What the experiments' setups share: MLflow settings, the parameters they log, the CAMB table's setup.

Each experiment has one setup, built once from params.yaml (:mod:`cmbml.lensing.setup`,
:mod:`cmbml.cenn.setup`, and :class:`SpectraSetup` here for the CAMB table). A setup validates the whole
file against the schema (:func:`cmbml.common.schema.validate_params`: every problem at once, each naming
its dotted key, its value and the allowed range) and holds what follows from it: the flat-sky grid, the
patch crop, band limits, bins, beams and windows, the kappa power on the grid, the MLflow settings and the
path of every dataset, model, plot and report (the ``paths`` block, which ``dvc.yaml`` reads too). The
parameter check, the stages, the evaluation and the tests call the same properties, so each derived
quantity has one definition.

Paths in ``paths`` and the instrument table are relative to the working directory (the
repository, or DVC's copy of it for queued experiments); a file named in the parameters must lie
inside it, so that DVC tracks what the pipeline reads.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cmbml.common.params import flatten, get_key, repository_root
from cmbml.common.schema import OPTIMIZERS, PRECISIONS, STRATEGIES, architecture_params, validate_params

__all__ = [
    "OPTIMIZERS",
    "PRECISIONS",
    "STRATEGIES",
    "SpectraSetup",
    "Tracking",
    "architecture_params",
    "load_spectra",
    "logged_params",
    "required_spectra_lmax",
    "resolve_tracking_uri",
    "tracking_from_params",
]


# ---- MLflow -----------------------------------------------------------------------------------------


def resolve_tracking_uri(configured: str) -> str:
    """Absolute MLflow tracking URI: ``sqlite:///mlflow.db`` -> ``sqlite:////<repo>/mlflow.db``.

    ``MLFLOW_TRACKING_URI`` in the environment wins (tests point it at a scratch store).
    """
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if env:
        return env
    prefix = "sqlite:///"
    if configured.startswith(prefix) and not configured[len(prefix) :].startswith("/"):
        return prefix + str(repository_root() / configured[len(prefix) :])
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


def logged_params(params: Mapping[str, Any], keys: Sequence[str], exclude: Sequence[str] = ()) -> dict[str, Any]:
    """``keys`` of ``params`` flattened to ``a.b.c`` names, without those under ``exclude``; the values as
    written in the file (the MLflow logs and ``params_digest`` read them so)."""
    flat = {k: v for key in keys for k, v in flatten(get_key(params, key), key).items()}
    return {k: v for k, v in flat.items() if not any(k == e or k.startswith(e + ".") for e in exclude)}


def tracking_from_params(
    params: Mapping[str, Any],
    experiment: str,
    registered_model: str,
    keys: Sequence[str],
    evaluation_keys: Sequence[str],
    description: str = "",
) -> Tracking:
    """MLflow settings of an experiment whose parameters are ``keys``, ``evaluation_keys`` among them."""
    return Tracking(
        resolve_tracking_uri(params["mlflow"]["tracking_uri"]),
        experiment,
        registered_model,
        logged_params(params, keys, evaluation_keys),
        logged_params(params, evaluation_keys),
        description,
    )


# ---- CAMB spectra --------------------------------------------------------------------------------------


def required_spectra_lmax(params: Mapping[str, Any], conf_dir: str | Path = "conf") -> int:
    """Highest multipole the simulations of a (valid) parameter set need from CAMB (<= spectra.lmax):
    the largest ``spectra_lmax_need`` of the experiments (the lensing band limits, the CENN skies' ``3 nside - 1``)."""
    return validate_params(params, conf_dir).required_spectra_lmax()


@dataclass(frozen=True)
class SpectraSetup:
    """The CAMB table every simulation reads: one cosmology, one lmax above every parameter set's needs."""

    cosmology: Mapping[str, float]
    lmax: int
    paths: Any  # paths.spectra: dir, camb_cls, plots

    @classmethod
    def from_params(
        cls, params: Mapping[str, Any], source: str = "params.yaml", conf_dir: str | Path = "conf"
    ) -> SpectraSetup:
        m = validate_params(params, conf_dir, source, experiment="spectra")
        return cls(dict(params["cosmology"]), m.spectra.lmax, m.paths.spectra)


def load_spectra(path: str | Path = "params.yaml") -> SpectraSetup:
    """The CAMB-table setup of a params file."""
    from cmbml.common.params import load_params

    return SpectraSetup.from_params(load_params(path), source=str(path))
