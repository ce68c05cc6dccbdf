"""The lensing experiment's setup: one version (v1..v8) at one scale, checked, with what follows from it.

Built once from params.yaml by every lensing stage (:meth:`LensingSetup.from_params`): the flat-sky
grid, the band limits, the kappa power on the grid (through :class:`~cmbml.lensing.simulate.LensingSimConfig`),
the rho(L) bins, the network and training settings, MLflow settings and every path.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from cmbml.common.config import (
    architecture_params,
    check_architecture,
    OPTIMIZERS,
    PRECISIONS,
    Tracking,
    TrainSettings,
    check_shared,
    check_strategy,
    executor_spec,
    logged_params,
    read_paths,
    tracking_from_params,
)
from cmbml.common.executors import ExecutorSpec
from cmbml.common.flatsky import FlatGrid, linear_bins
from cmbml.common.integrity import params_digest
from cmbml.lensing.simulate import LensingSimConfig
from cmbml.lensing.networks import ARCHITECTURES
from cmbml.common.params import Checker, available_options, load_params

SPLITS = ("train", "val", "test")
PHYSICS = ("npix", "pixel_arcmin", "T_lmax", "kappa_lmax", "kappa_exaggeration_factor", "same_T_realisation",
           "noise_uK_arcmin")
"""The top-level keys that set the simulated maps (``dvc exp run -S kappa_exaggeration_factor=10``)."""


@dataclass(frozen=True)
class LensingPaths:
    camb_cls: Path
    datasets: Path
    train: Path
    val: Path
    test: Path
    report: Path
    validation: Path
    model_dir: Path
    model: Path
    model_card: Path  # geometry and units of the trained network
    train_plots: Path
    history: Path
    evaluate_plots: Path
    rho: Path
    metrics: Path

    def split(self, name: str) -> Path:
        return {"train": self.train, "val": self.val, "test": self.test}[name]



# ---- lensing --------------------------------------------------------------------------------------------

def rho_bin_edges(grid: FlatGrid, width_in_fundamentals: float, kappa_lmax: float | None) -> np.ndarray:
    """rho(L) bins of the lensing evaluation: ``width`` fundamentals wide, up to the kappa band limit."""
    top = min(kappa_lmax or grid.ell_nyquist, grid.ell_nyquist)
    return linear_bins(grid, width_in_fundamentals * grid.ell_fundamental, top)


def _check_lensing(c: Checker, conf_dir: Path) -> None:
    options = available_options("lensing", conf_dir)
    if options:
        c.choice("lensing_version", options)
    npix = c.number("npix", 8, 1024, integer=True)
    pix = c.number("pixel_arcmin", 0.0, 600.0, lo_open=True)
    c.number("kappa_exaggeration_factor", 0.0, 1000.0, lo_open=True)
    c.number("noise_uK_arcmin", 0.0, 1000.0)
    c.boolean("same_T_realisation")
    c.choice("lensing_simulate.remap", ["fourier", "bicubic"])
    c.number("lensing_simulate.remap_epsilon", 2e-13, 1e-6,
             why="below 2e-13 double precision cannot deliver it; above 1e-6 the remap is no longer exact")
    c.number("lensing_simulate.chunk_samples", 1, 100_000, integer=True)
    c.number("lensing_simulate.workers", 1, 256, integer=True)
    c.number("lensing_validate.kappa_rms_nsigma", 0.0, 1000.0, lo_open=True)
    sizes = {s: c.number(f"scale.lensing.n_{s}", 1, 10_000_000, integer=True) for s in SPLITS}
    c.number("scale.lensing.epochs", 1, 100_000, integer=True)
    c.number("scale.lensing.early_stopping_patience", 1, 100_000, integer=True)
    c.number("lensing_train.batch_size", 1, sizes["train"] or 10_000_000, integer=True,
             why="the batch cannot exceed scale.lensing.n_train")
    c.number("lensing_train.learning_rate", 0.0, 10.0, lo_open=True)
    c.number("lensing_train.clipnorm", 0.0, 1e6, lo_open=True, nullable=True)
    c.choice("lensing_train.optimizer", OPTIMIZERS)
    c.choice("lensing_train.precision", PRECISIONS)
    check_strategy(c, "lensing_train.strategy")
    c.boolean("lensing_train.augment")
    check_architecture(c, "lensing_net", ARCHITECTURES)
    c.number("lensing_evaluate.n_example_maps", 1, 16, integer=True)
    # the version's sizes for the default and paper scales (scale/*.yaml interpolates them)
    for block, keys in (("lensing_default", ("n_train", "epochs")), ("lensing_paper", ("n_train", "n_val", "epochs"))):
        for key in keys:
            c.number(f"{block}.{key}", 1, 100_000 if key == "epochs" else 10_000_000, integer=True)
    c.text("mlflow.lensing_experiment")
    c.text("mlflow.lensing_registered_model_prefix")
    if npix is None or pix is None:
        return
    grid = FlatGrid(int(npix), float(pix))
    geom = f"the Nyquist multipole of {npix} px x {pix:g} arcmin"
    c.number("T_lmax", 2, grid.ell_nyquist, nullable=True, why=geom)
    kappa_lmax = c.number("kappa_lmax", 1.5 * grid.ell_fundamental, grid.ell_nyquist, nullable=True,
                          why=f"a {grid.side_deg:.2f} deg patch needs kappa modes in at least one rho(L) bin "
                              f"of one fundamental mode; at most {geom}")
    if c.value("kappa_lmax") is not None and kappa_lmax is None:
        return
    top = min(kappa_lmax or grid.ell_nyquist, grid.ell_nyquist)
    span = (top - 0.5 * grid.ell_fundamental) / grid.ell_fundamental  # widest bin, in fundamentals
    key = "lensing_evaluate.rho_bin_width_in_fundamentals"
    width = c.number(key, 1.0, max(span, 1.0),
                     why=f"a bin needs at least one fundamental mode (L = {grid.ell_fundamental:.1f} for a "
                         f"{grid.side_deg:.2f} deg patch) and must fit below L = {top:.0f}")
    if width is not None:
        try:
            rho_bin_edges(grid, width, kappa_lmax)
        except ValueError as err:
            c.fail(f"{key} = {width!r}: {err}")


@dataclass(frozen=True)
class LensingSetup:
    """One lensing parameter set (a version v1..v8 at a scale), checked, with what follows from it."""

    seed: int
    version: str
    scale: str
    sim: LensingSimConfig
    n_samples: Mapping[str, int]
    chunk_samples: int
    executor: ExecutorSpec  # where the simulation runs; the files do not depend on it
    kappa_rms_nsigma: float
    net_architecture: str  # a name of cmbml.lensing.networks.ARCHITECTURES
    net_params: Any  # that architecture's validated Params
    train: TrainSettings
    rho_bin_width_in_fundamentals: float
    n_example_maps: int
    tracking: Tracking
    paths: LensingPaths
    dataset_digest: str  # of DATASET_KEYS: every split file carries it, the gate compares

    DATASET_KEYS = ("seed", "cosmology", "lensing_version", *PHYSICS, "lensing_simulate.remap",
                    "lensing_simulate.remap_epsilon", "scale.lensing.n_train",
                    "scale.lensing.n_val", "scale.lensing.n_test")
    """The parameters that decide the datasets' content (the CAMB table's cosmology included)."""
    KEYS = ("seed", "cosmology", "lensing_version", *PHYSICS, "lensing_simulate", "lensing_validate",
            "lensing_net", "lensing_train", "lensing_evaluate", "scale.name", "scale.lensing")
    """The parameters of this experiment (what its MLflow runs log) ..."""
    EVALUATION_KEYS = ("lensing_evaluate",)
    """... of which these set only the evaluation (logged by it as tags)."""

    @classmethod
    def from_params(cls, params: Mapping[str, Any], conf_dir: str | Path = "conf",
                    source: str = "params.yaml") -> LensingSetup:
        c = Checker(params)
        check_lensing(c, Path(conf_dir))
        c.raise_if_any(source)
        p = params
        train, sc = p["lensing_train"], p["scale"]["lensing"]
        return cls(
            seed=int(p["seed"]), version=p["lensing_version"], scale=p["scale"]["name"],
            sim=LensingSimConfig(npix=int(p["npix"]), pixel_arcmin=float(p["pixel_arcmin"]), T_lmax=p["T_lmax"],
                                 kappa_lmax=p["kappa_lmax"],
                                 kappa_exaggeration_factor=float(p["kappa_exaggeration_factor"]),
                                 same_T_realisation=bool(p["same_T_realisation"]),
                                 noise_uK_arcmin=float(p["noise_uK_arcmin"]), remap=p["lensing_simulate"]["remap"],
                                 remap_epsilon=float(p["lensing_simulate"]["remap_epsilon"])),
            n_samples={s: int(sc[f"n_{s}"]) for s in SPLITS},
            chunk_samples=int(p["lensing_simulate"]["chunk_samples"]),
            executor=executor_spec(p, "lensing_simulate.workers"),
            kappa_rms_nsigma=float(p["lensing_validate"]["kappa_rms_nsigma"]),
            net_architecture=p["lensing_net"]["architecture"],
            net_params=architecture_params(p["lensing_net"], ARCHITECTURES),
            train=TrainSettings(optimizer=train["optimizer"], learning_rate=float(train["learning_rate"]),
                                batch_size=int(train["batch_size"]), epochs=int(sc["epochs"]),
                                early_stopping_patience=int(sc["early_stopping_patience"]),
                                clipnorm=train["clipnorm"], augment=bool(train["augment"]),
                                precision=train["precision"], strategy=train["strategy"]),
            rho_bin_width_in_fundamentals=float(p["lensing_evaluate"]["rho_bin_width_in_fundamentals"]),
            n_example_maps=int(p["lensing_evaluate"]["n_example_maps"]),
            tracking=tracking_from_params(p, p["mlflow"]["lensing_experiment"],
                                          f"{p['mlflow']['lensing_registered_model_prefix']}-{p['lensing_version']}",
                                          cls.KEYS, cls.EVALUATION_KEYS, DESCRIPTION),
            paths=read_paths(Checker(p), LensingPaths, ["spectra", "lensing"]),
            dataset_digest=params_digest(logged_params(p, cls.DATASET_KEYS)),
        )

    @property
    def grid(self) -> FlatGrid:
        return self.sim.grid

    @property
    def model_card(self) -> dict[str, Any]:
        """What a user of the trained network must know to apply it (stored beside the model, in its
        MLflow metadata and read by ``cmbml predict``): geometry, channels and units of its input and output."""
        from cmbml.lensing.simulate import CONVENTIONS

        factor = self.sim.kappa_exaggeration_factor
        return {
            "experiment": "lensing", "parameter_set": self.version, "scale": self.scale,
            "registered_model": self.tracking.registered_model, "params_digest": self.dataset_digest,
            "input": {"quantity": "lensed CMB temperature", "channels": ["T"], "units": "uK_CMB",
                      "npix": self.grid.npix, "pixel_arcmin": self.grid.pixel_arcmin,
                      "layout": "[sample, y, x, channel]"},
            "output": {"quantity": f"convergence kappa times the exaggeration factor {factor:g}", "channels": ["kappa"],
                       "units": "dimensionless", "kappa_exaggeration_factor": factor,
                       "npix": self.grid.npix, "pixel_arcmin": self.grid.pixel_arcmin},
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
    "Models: cmbml-lensing-<version>@<scale>.")


def check_lensing(c: Checker, conf_dir: Path = Path("conf")) -> None:
    """Every lensing key, the shared cosmology and the paths."""
    _check_lensing(c, conf_dir)
    check_shared(c, LensingPaths, "lensing", conf_dir)


def load(path: str | Path = "params.yaml", conf_dir: str | Path = "conf") -> LensingSetup:
    """The lensing setup of a params file (what every lensing stage starts with)."""
    return LensingSetup.from_params(load_params(path), conf_dir, source=str(path))
