"""The lensing experiment's parameters: every key, its type, range, unit and meaning, and the checks across keys.

:class:`LensingSection` holds the top-level keys of one version (``conf/lensing/v*.yaml``: the patch, the
band limits, the network and training) and the stages' blocks; it adds ``scale.lensing``, ``paths.lensing``
and the lensing names of ``mlflow`` to the shared blocks (:mod:`cmbml.common.schema`).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from typing import ClassVar, Literal

import numpy as np

from cmbml.common.flatsky import FlatGrid, linear_bins
from cmbml.common.schema import (
    SECTIONS,
    Block,
    Context,
    Number,
    Param,
    Problem,
    RepoPath,
    Section,
    TrainBase,
    conf_choice,
    network_block,
    rule,
)
from cmbml.lensing.networks import ARCHITECTURES

EXPERIMENT = "lensing"


def rho_bin_edges(grid: FlatGrid, width_in_fundamentals: float, kappa_lmax: float | None) -> np.ndarray:
    """rho(L) bins of the lensing evaluation: ``width`` fundamentals wide, up to the kappa band limit."""
    top = min(kappa_lmax or grid.ell_nyquist, grid.ell_nyquist)
    return linear_bins(grid, width_in_fundamentals * grid.ell_fundamental, top)


class LensingSimulate(Block):
    """How the lensed maps are made (stage lensing_simulate)."""

    remap: Literal["fourier", "bicubic"] = Param(
        dataset=EXPERIMENT,
        description=(
            "remapping of T by the deflection: fourier (exact, a non-uniform FFT) or bicubic (the original's splines)"
        ),
    )
    remap_epsilon: Number = Param(
        ge=2e-13,
        le=1e-6,
        dataset=EXPERIMENT,
        description=("relative accuracy of the fourier remap"),
        why=("below 2e-13 double precision cannot deliver it; above 1e-6 the remap is no longer exact"),
    )
    oversampling: int = Param(
        ge=1,
        le=8,
        dataset=EXPERIMENT,
        description=(
            "fine-grid points per pixel side where the lensed map is made before it is band-limited to the patch's "
            "Fourier box and sampled (1: lensed at the pixels, where the modes lensing pushes beyond the Nyquist "
            "multipole fold back onto the grid)"
        ),
    )
    chunk_samples: int = Param(ge=1, le=100_000, description="samples generated and written per HDF5 chunk")
    workers: int = Param(
        ge=1,
        le=256,
        description=("local processes simulating chunks (executor.kind = local); the files do not depend on it"),
    )


class LensingTrain(TrainBase):
    """Training of the lensing network (epochs and patience come with the scale)."""

    clipnorm: Number | None = Param(gt=0.0, le=1e6, description="gradient norm clipping; null: none")


class LensingValidate(Block):
    """The gate on the simulated datasets (stage lensing_validate)."""

    kappa_rms_nsigma: Number = Param(
        gt=0.0, le=1000.0, description=("allowed deviation of the mean kappa variance from theory, in sampling sigmas")
    )


class LensingEvaluate(Block):
    """The evaluation on the test set (stage lensing_evaluate)."""

    rho_bin_width_in_fundamentals: Number = Param(
        ge=1.0,
        description=(
            "width of the rho(L) bins in units of the patch's fundamental 2 pi / L; the bins stop at the kappa band "
            "limit"
        ),
        why="a bin needs at least one fundamental mode of the patch",
    )
    n_example_maps: int = Param(ge=1, le=16, description="test maps drawn beside their prediction")
    optimal_n0_gain: Number = Param(
        ge=0.0,
        lt=1.0,
        description=(
            "the largest fraction of the quadratic estimator's noise N0 that an optimal estimator removes on the "
            "version's maps (Hirata & Seljak 2003: about 0.01 at Planck-like noise, 0.1-0.2 at low noise); the leak "
            "guard flags a network above the estimator's limit with N0 reduced by it"
        ),
        why=("1 would remove all reconstruction noise, a bound that bounds nothing"),
    )


class LensingDefault(Block):
    """The version's sizes at scale=default (conf/scale/default.yaml reads them), set by its network's cost."""

    n_training: int = Param(ge=1, le=10_000_000, description="training maps")
    epochs: int = Param(ge=1, le=100_000, description="training epochs")


class LensingPaper(Block):
    """The original project's sizes of the version (conf/scale/paper.yaml reads them)."""

    n_training: int = Param(ge=1, le=10_000_000, description="training maps")
    n_early_stopping: int = Param(ge=1, le=10_000_000, description="early-stopping maps")
    epochs: int = Param(ge=1, le=100_000, description="training epochs")


class ScaleLensing(Block):
    """Sample sizes and epochs of the lensing experiment at one scale."""

    n_training: int = Param(ge=1, le=10_000_000, dataset=EXPERIMENT, description="training maps")
    n_early_stopping: int = Param(ge=1, le=10_000_000, dataset=EXPERIMENT, description="early-stopping maps")
    n_evaluation: int = Param(ge=1, le=10_000_000, dataset=EXPERIMENT, description="maps every method is scored on")
    epochs: int = Param(ge=1, le=100_000, description="most training epochs")
    early_stopping_patience: int = Param(
        ge=1, le=100_000, description=("epochs without a better validation loss before training stops")
    )


class LensingPaths(Block):
    """The lensing experiment's files and folders."""

    datasets: RepoPath = Param(description="folder of the three datasets, one per role")
    training: RepoPath = Param(description="training maps (HDF5: T_lensed, kappa)")
    early_stopping: RepoPath = Param(description="early-stopping maps (HDF5: T_lensed, kappa)")
    evaluation: RepoPath = Param(description="evaluation maps (HDF5: T_lensed, kappa, T_unlensed)")
    report: RepoPath = Param(description="folder of the dataset gate's report")
    validation: RepoPath = Param(description="the dataset gate's result (JSON)")
    model_dir: RepoPath = Param(description="folder of the trained network")
    model: RepoPath = Param(description="the trained network (.keras)")
    model_card: RepoPath = Param(description="geometry and units of the trained network (JSON)")
    train_plots: RepoPath = Param(description="folder of the training figures")
    history: RepoPath = Param(description="loss per epoch (JSON)")
    evaluate_plots: RepoPath = Param(description="folder of the evaluation figures")
    rho: RepoPath = Param(description="rho(L) of the network and the quadratic estimator (JSON)")
    metrics: RepoPath = Param(description="evaluation metrics (JSON)")

    def split(self, role: str):
        """The file of one role (cmbml.common.roles)."""
        return getattr(self, role)


class ScaleOfLensing(Block):
    lensing: ScaleLensing = Param(logged=EXPERIMENT, description="sizes and epochs of the lensing experiment")


class PathsOfLensing(Block):
    lensing: LensingPaths = Param(description="the lensing experiment's files")


class MlflowOfLensing(Block):
    lensing_experiment: str = Param(min_length=1, description="MLflow experiment of the lensing runs")
    lensing_registered_model_prefix: str = Param(
        min_length=1, description=("registered model of a version: <prefix>-<lensing_version>")
    )


LensingNet = network_block(ARCHITECTURES, "LensingNet", __name__, "The lensing network (lensing_net)")

LensingVersion = conf_choice("lensing")
"""A lensing parameter set, an option of conf/lensing (v1..v8)."""


class LensingSection(Section):
    """The lensing experiment's keys: one version (v1..v8, conf/lensing) and the stages' settings."""

    experiment: ClassVar[str] = EXPERIMENT
    extends: ClassVar[Mapping[str, type[Block]]] = {
        "scale": ScaleOfLensing,
        "paths": PathsOfLensing,
        "mlflow": MlflowOfLensing,
    }

    lensing_version: LensingVersion = Param(
        dataset=EXPERIMENT, description=("the parameter set, an option of conf/lensing (v1..v8)")
    )
    npix: int = Param(ge=8, le=1024, unit="pixels", dataset=EXPERIMENT, description="pixels per side of the patch")
    pixel_arcmin: Number = Param(
        gt=0.0,
        le=600.0,
        unit="arcmin",
        dataset=EXPERIMENT,
        description=("pixel side, arcmin (27.48: nside-128 equivalent, 0.8588: nside 4096)"),
    )
    T_lmax: Number | None = Param(
        ge=2,
        dataset=EXPERIMENT,
        description=("band limit of the unlensed CMB TT, at most the patch's Nyquist multipole; null: every grid mode"),
    )
    kappa_lmax: Number | None = Param(
        gt=0.0,
        dataset=EXPERIMENT,
        description=(
            "band limit of the convergence kappa, between 1.5 fundamentals and the Nyquist multipole; null: every "
            "grid mode"
        ),
    )
    kappa_exaggeration_factor: Number = Param(
        gt=0.0,
        le=1000.0,
        dataset=EXPERIMENT,
        description=("kappa is multiplied by it before lensing (the network learns kappa times it)"),
    )
    same_T_realisation: bool = Param(dataset=EXPERIMENT, description="one unlensed T map shared by every sample")
    noise_uK_arcmin: Number = Param(
        ge=0.0,
        le=1000.0,
        unit="uK arcmin",
        dataset=EXPERIMENT,
        description=("white noise added after lensing, uK arcmin"),
    )
    lensing_simulate: LensingSimulate = Param(logged=EXPERIMENT, description="how the maps are made")
    lensing_validate: LensingValidate = Param(logged=EXPERIMENT, description="the dataset gate")
    lensing_net: LensingNet = Param(logged=EXPERIMENT, description="the network")
    lensing_train: LensingTrain = Param(logged=EXPERIMENT, description="training settings")
    lensing_evaluate: LensingEvaluate = Param(evaluation=EXPERIMENT, description="evaluation settings")
    lensing_default: LensingDefault = Param(description="the version's sizes at scale=default")
    lensing_paper: LensingPaper = Param(description="the original's sizes of the version (scale=paper)")

    @property
    def lensing_grid(self) -> FlatGrid:
        """The flat-sky patch of the version."""
        return FlatGrid(self.npix, float(self.pixel_arcmin))

    def spectra_lmax_need(self) -> int:
        """Highest multipole of the lensing simulations: the band limits; ``null`` means every grid mode, up
        to the grid's corner ``sqrt(2) ell_Nyquist``."""
        corner = math.ceil(math.sqrt(2.0) * self.lensing_grid.ell_nyquist) + 1
        return max(corner if v is None else math.ceil(v) for v in (self.T_lmax, self.kappa_lmax))

    def _kappa_range(self) -> tuple[float, float, str]:
        grid = self.lensing_grid
        why = (
            f"a {grid.side_deg:.2f} deg patch needs kappa modes in at least one rho(L) bin of one fundamental "
            f"mode; at most {self._nyquist_text()}"
        )
        return 1.5 * grid.ell_fundamental, grid.ell_nyquist, why

    def _nyquist_text(self) -> str:
        return f"the Nyquist multipole of {self.npix} px x {self.pixel_arcmin:g} arcmin"

    @rule
    def _band_limits_fit_the_grid(self, context: Context) -> Iterator[Problem]:
        nyquist = self.lensing_grid.ell_nyquist
        if self.T_lmax is not None and self.T_lmax > nyquist:
            yield Problem.out_of_range("T_lmax", self.T_lmax, 2, nyquist, why=self._nyquist_text())
        lo, hi, why = self._kappa_range()
        if self.kappa_lmax is not None and not lo <= self.kappa_lmax <= hi:
            yield Problem.out_of_range("kappa_lmax", self.kappa_lmax, lo, hi, why=why)

    @rule
    def _rho_bins_fit_below_the_kappa_band_limit(self, context: Context) -> Iterator[Problem]:
        grid, kappa_lmax = self.lensing_grid, self.kappa_lmax
        lo, hi, _ = self._kappa_range()
        if kappa_lmax is not None and not lo <= kappa_lmax <= hi:
            return  # refused above
        top = min(kappa_lmax or grid.ell_nyquist, grid.ell_nyquist)
        span = (top - 0.5 * grid.ell_fundamental) / grid.ell_fundamental  # widest bin, in fundamentals
        key, width = (
            "lensing_evaluate.rho_bin_width_in_fundamentals",
            self.lensing_evaluate.rho_bin_width_in_fundamentals,
        )
        if width > max(span, 1.0):
            yield Problem.out_of_range(
                key,
                width,
                1.0,
                max(span, 1.0),
                why=(
                    f"a bin needs at least one fundamental mode (L = {grid.ell_fundamental:.1f} for a {grid.side_deg:.2f} "
                    f"deg patch) and must fit below L = {top:.0f}"
                ),
            )
            return
        try:
            rho_bin_edges(grid, width, kappa_lmax)
        except ValueError as err:
            yield Problem.at(key, width, f"{{key}} = {width!r}: {err}")

    @rule
    def _band_limited_lensing_needs_the_fourier_remap(self, context: Context) -> Iterator[Problem]:
        f = self.lensing_simulate.oversampling
        if f != 1 and self.lensing_simulate.remap != "fourier":
            yield Problem.at(
                "lensing_simulate.oversampling",
                f,
                f"lensing_simulate.oversampling = {f}: band-limited "
                "lensing evaluates the Fourier series; with remap = bicubic set it to 1",
            )

    @rule
    def _multi_scale_networks_need_an_even_side(self, context: Context) -> Iterator[Problem]:
        arch = self.lensing_net.architecture
        if getattr(ARCHITECTURES[arch], "even_npix", False) and self.npix % 2:
            yield Problem.at(
                "npix",
                self.npix,
                f"npix = {self.npix}: lensing_net.architecture = {arch} halves the "
                "map's resolution, so npix must be even",
            )

    @rule
    def _lensing_batch_fits_the_training_set(self, context: Context) -> Iterator[Problem]:
        batch, n_train = self.lensing_train.batch_size, self.scale.lensing.n_training
        if batch > n_train:
            yield Problem.out_of_range(
                "lensing_train.batch_size", batch, 1, n_train, why="the batch cannot exceed scale.lensing.n_training"
            )


SECTIONS.register(LensingSection, name=EXPERIMENT)
