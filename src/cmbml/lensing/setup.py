"""The lensing experiment's setup: one version (v1..v8) at one scale, checked, with what follows from it.

Built once from params.yaml by every lensing stage (:meth:`LensingSetup.from_params`): the whole file is
validated against the schema (:mod:`cmbml.lensing.schema` and the shared blocks), then the setup holds the
flat-sky grid, the band limits, the kappa power on the grid (through
:class:`~cmbml.lensing.simulate.LensingSimConfig`), the rho(L) bins, the network and training settings,
MLflow settings and every path.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from cmbml.common.config import Tracking, logged_params, tracking_from_params
from cmbml.common.executors import ExecutorSpec
from cmbml.common.flatsky import FlatGrid
from cmbml.common.integrity import params_digest
from cmbml.common.params import load_params
from cmbml.common.roles import ROLES
from cmbml.common.schema import Merged, SchemaKeys, validate_params
from cmbml.lensing.schema import EXPERIMENT, rho_bin_edges
from cmbml.lensing.simulate import LensingSimConfig

__all__ = ["SPLITS", "LensingSetup", "load", "rho_bin_edges"]

SPLITS = ROLES
"""The lensing files are named by their roles (training.h5, early_stopping.h5, evaluation.h5)."""


@dataclass(frozen=True)
class LensingSetup:
    """One lensing parameter set (a version v1..v8 at a scale), checked, with what follows from it.

    ``train`` reads as one block: ``lensing_train`` with the scale's ``epochs`` and ``early_stopping_patience``;
    ``paths`` is ``paths.lensing`` with the CAMB table (``camb_cls``) and the Data Docs folder (``data_docs``).
    """

    seed: int
    version: str
    scale: str
    sim: LensingSimConfig
    n_samples: Mapping[str, int]  # maps per role (cmbml.common.roles)
    chunk_samples: int
    executor: ExecutorSpec  # where the simulation runs; the files do not depend on it
    kappa_rms_nsigma: float
    net_architecture: str  # a name of cmbml.lensing.networks.ARCHITECTURES
    net_params: Any  # that architecture's validated Params
    train: Any  # lensing_train and the scale's epochs and patience (cmbml.common.schema.Merged)
    rho_bin_width_in_fundamentals: float
    n_example_maps: int
    optimal_n0_gain: float  # the leak guard's allowance beyond the quadratic estimator (cmbml.lensing.evaluation)
    tracking: Tracking
    paths: Any  # paths.lensing, camb_cls and data_docs (cmbml.common.schema.Merged)
    dataset_digest: str  # of DATASET_KEYS: every split file carries it, the gate compares

    DATASET_KEYS = SchemaKeys(EXPERIMENT, "dataset")
    """The parameters that decide the datasets' content (the CAMB table's cosmology included)."""
    KEYS = SchemaKeys(EXPERIMENT, "logged")
    """The parameters of this experiment (what its MLflow runs log) ..."""
    EVALUATION_KEYS = SchemaKeys(EXPERIMENT, "evaluation")
    """... of which these set only the evaluation (logged by it as tags)."""

    @classmethod
    def from_params(
        cls, params: Mapping[str, Any], conf_dir: str | Path = "conf", source: str = "params.yaml"
    ) -> LensingSetup:
        m = validate_params(params, conf_dir, source, experiment=EXPERIMENT)
        scale = m.scale.lensing
        return cls(
            seed=m.seed,
            version=m.lensing_version,
            scale=m.scale.name,
            sim=LensingSimConfig(
                npix=m.npix,
                pixel_arcmin=float(m.pixel_arcmin),
                T_lmax=m.T_lmax,
                kappa_lmax=m.kappa_lmax,
                kappa_exaggeration_factor=float(m.kappa_exaggeration_factor),
                same_T_realisation=m.same_T_realisation,
                noise_uK_arcmin=float(m.noise_uK_arcmin),
                remap=m.lensing_simulate.remap,
                remap_epsilon=float(m.lensing_simulate.remap_epsilon),
                oversampling=m.lensing_simulate.oversampling,
            ),
            n_samples={s: getattr(scale, f"n_{s}") for s in SPLITS},
            chunk_samples=m.lensing_simulate.chunk_samples,
            executor=m.executor.spec(m.lensing_simulate.workers),
            kappa_rms_nsigma=float(m.lensing_validate.kappa_rms_nsigma),
            net_architecture=m.lensing_net.architecture,
            net_params=m.lensing_net.params,
            train=Merged(m.lensing_train, scale),
            rho_bin_width_in_fundamentals=float(m.lensing_evaluate.rho_bin_width_in_fundamentals),
            n_example_maps=m.lensing_evaluate.n_example_maps,
            optimal_n0_gain=float(m.lensing_evaluate.optimal_n0_gain),
            tracking=tracking_from_params(
                params,
                m.mlflow.lensing_experiment,
                f"{m.mlflow.lensing_registered_model_prefix}-{m.lensing_version}",
                cls.KEYS,
                cls.EVALUATION_KEYS,
                DESCRIPTION,
            ),
            paths=Merged(m.paths.lensing, camb_cls=m.paths.spectra.camb_cls, data_docs=m.paths.data_docs),
            dataset_digest=params_digest(logged_params(params, cls.DATASET_KEYS)),
        )

    @property
    def grid(self) -> FlatGrid:
        return self.sim.grid

    @property
    def net_inputs(self) -> tuple[str, ...]:
        """The input channels of the chosen architecture (names of :data:`cmbml.lensing.inputs.CHANNELS`)."""
        from cmbml.lensing.networks import ARCHITECTURES

        return tuple(ARCHITECTURES[self.net_architecture].inputs)

    def simulator(self):
        """The version's simulator (its maps' sky), from the CAMB table."""
        from cmbml.common.spectra import read_spectra_csv
        from cmbml.lensing.simulate import LensingSimulator

        spectra = read_spectra_csv(self.paths.camb_cls)
        return LensingSimulator(self.sim, spectra["cl_tt_unlensed"], spectra["cl_kk"], seed=self.seed)

    def input_maker(self, channels: tuple[str, ...] | None = None, estimator=None):
        """What makes the network's input channels (default: the chosen architecture's) from lensed T; the sky's
        quadratic estimator is measured here when a channel needs it and none is given."""
        from cmbml.lensing.evaluation import sky_estimator
        from cmbml.lensing.inputs import InputMaker

        channels = self.net_inputs if channels is None else tuple(channels)
        if channels == ("T",):
            return InputMaker(channels)
        simulator = self.simulator()
        estimator = estimator or sky_estimator(simulator)
        return InputMaker.for_sky(channels, estimator, simulator.cl_kk_grid)

    def model_card_for(self, maker) -> dict[str, Any]:
        """:attr:`model_card` with the input channels the network takes and, for derived ones, what makes them."""
        card = self.model_card
        card["input"]["network_channels"] = list(maker.channels)
        if maker.derived:
            card["input"]["derived"] = maker.to_card()
        card["architecture"] = self.net_architecture
        return card

    @property
    def model_card(self) -> dict[str, Any]:
        """What a user of the trained network must know to apply it (stored beside the model, in its
        MLflow metadata and read by ``cmbml predict``): geometry, channels and units of its input and output."""
        from cmbml.lensing.simulate import CONVENTIONS

        factor = self.sim.kappa_exaggeration_factor
        return {
            "experiment": "lensing",
            "parameter_set": self.version,
            "scale": self.scale,
            "registered_model": self.tracking.registered_model,
            "params_digest": self.dataset_digest,
            "input": {
                "quantity": "lensed CMB temperature",
                "channels": ["T"],
                "units": "uK_CMB",
                "npix": self.grid.npix,
                "pixel_arcmin": self.grid.pixel_arcmin,
                "layout": "[sample, y, x, channel]",
            },
            "output": {
                "quantity": f"convergence kappa times the exaggeration factor {factor:g}",
                "channels": ["kappa"],
                "units": "dimensionless",
                "kappa_exaggeration_factor": factor,
                "npix": self.grid.npix,
                "pixel_arcmin": self.grid.pixel_arcmin,
            },
            "lensing_sign": CONVENTIONS["lensing_sign"],
            "band_limits": {"T_lmax": self.sim.T_lmax, "kappa_lmax": self.sim.kappa_lmax},
            "noise_uK_arcmin": self.sim.noise_uK_arcmin,
        }

    @cached_property
    def rho_bin_edges(self) -> np.ndarray:
        return rho_bin_edges(self.grid, self.rho_bin_width_in_fundamentals, self.sim.kappa_lmax)


DESCRIPTION = (
    "Flat-sky CMB temperature maps lensed by convergence (kappa) maps; a CNN estimates kappa from the lensed map. "
    "One run per training (run name: parameter set, scale and overridden keys); its evaluation adds test_* "
    "metrics, rho(L) of the CNN beside the TT quadratic estimator and its Wiener limit (table rho_L.json), and plots. "
    "Models: cmbml-lensing-<version>@<scale>."
)


def load(path: str | Path = "params.yaml", conf_dir: str | Path = "conf") -> LensingSetup:
    """The lensing setup of a params file (what every lensing stage starts with)."""
    return LensingSetup.from_params(load_params(path), conf_dir, source=str(path))
