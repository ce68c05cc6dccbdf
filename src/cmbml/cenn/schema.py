"""The component-separation (CENN) experiment's parameters: every key, its type, range, unit and meaning, and
the checks across keys.

:class:`CennSection` holds the instrument, the two foreground skies (``foregrounds``, on which the network
trains, and ``unseen_foregrounds``, on which it is only scored), the variant (``cenn``, conf/cenn) and the
stages' blocks; it adds ``scale.cenn``, ``paths.cenn`` and the CENN names of ``mlflow`` to the shared blocks
(:mod:`cmbml.common.schema`). :class:`CennGeometry` is what the scale's sizes make of the sky and the patch.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, ClassVar, Literal

import numpy as np
from pydantic import AfterValidator, ValidationError

from cmbml.cenn.foregrounds import COMPONENTS
from cmbml.cenn.networks import ARCHITECTURES
from cmbml.cenn.pysm_sky import PRESET_COMPONENTS, SUPPORTED_PRESETS
from cmbml.cenn.pysm_sky import check as check_pysm
from cmbml.common.flatsky import FlatGrid, check_bins
from cmbml.common.params import Checker, file_in_repository
from cmbml.common.registry import Registry
from cmbml.common.roles import EARLY_STOPPING, EVALUATION, TRAINING
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
    refuse,
    rule,
)

SPLIT_FILES = {TRAINING: "Train", EARLY_STOPPING: "Test", EVALUATION: "Validation"}
"""The one place where the roles of the patch sets (cmbml.common.roles) meet the original CENN file names (Train_E.h5,
Test_E.h5, Validation_E.h5): the files and the simulation's split names keep the original's words."""

EXPERIMENT = "cenn"
SKIES = ("foregrounds", "unseen_foregrounds")
"""The foreground-sky blocks: the network trains on the first and is also scored on the second."""


@dataclass(frozen=True)
class CennGeometry:
    """Sky resolution, patch grid and the cropped patch NaMaster measures."""

    nside: int
    npix: int
    pixel_arcmin: float
    crop_pixels: int

    @property
    def sky_lmax(self) -> int:
        """Band limit of the HEALPix skies, ``3 nside - 1``."""
        return 3 * self.nside - 1

    @property
    def patch(self) -> FlatGrid:
        return FlatGrid(self.npix, self.pixel_arcmin)

    @property
    def cropped(self) -> FlatGrid:
        """The patch without ``crop_pixels`` on each edge, where the convolutions see padding."""
        return FlatGrid(self.npix - 2 * self.crop_pixels, self.pixel_arcmin)

    @property
    def spectra_lmax(self) -> float:
        """Highest multipole measured: the sky band limit or the patch Nyquist, whichever is lower."""
        return min(self.sky_lmax, self.cropped.ell_nyquist)

    def crop(self, maps: np.ndarray) -> np.ndarray:
        """Cut ``crop_pixels`` from each edge of a stack (N, npix, npix, ...)."""
        c = self.crop_pixels
        return maps[:, c : self.npix - c, c : self.npix - c]

    def bin_edges(self, bin_width: float) -> np.ndarray:
        """NaMaster bins from the cropped patch's fundamental mode up to :attr:`spectra_lmax`."""
        return np.arange(self.cropped.ell_fundamental, self.spectra_lmax, bin_width)


# ---- value types ----------------------------------------------------------------------------------------


def _lon_band(band: list) -> list:
    if len(band) != 2 or not 0 <= band[0] < band[1] <= 360:
        raise refuse(f"{{key}} = {band!r}: allowed [lo, hi] with 0 <= lo < hi <= 360")
    return band


def _ell_range(pair: list) -> list:
    if len(pair) != 2 or not 0 <= pair[0] < pair[1]:
        raise refuse(f"{{key}} = {pair!r}: allowed [lo, hi] with 0 <= lo < hi")
    return pair


def _power_of_two(nside: int) -> int:
    if nside & (nside - 1):
        raise refuse(f"{{key}} = {nside!r}: allowed powers of two 16 <= nside <= 8192")
    return nside


LonBand = Annotated[list[Number], AfterValidator(_lon_band)]
"""A Galactic longitude band ``[lo, hi]`` in degrees, ``0 <= lo < hi <= 360``."""
EllRange = Annotated[list[Number], AfterValidator(_ell_range)]
"""A multipole range ``[lo, hi]``, ``0 <= lo < hi``."""
Nside = Annotated[int, AfterValidator(_power_of_two)]
"""A HEALPix resolution, a power of two."""
VariantName = conf_choice("cenn", "E", "B", "QU")
"""A CENN variant, an option of conf/cenn."""
ForegroundModel = conf_choice("foregrounds", "gaussian", "nongaussian", "pysm")
"""A foreground sky model, an option of conf/foregrounds."""


# ---- blocks -----------------------------------------------------------------------------------------------

INSTRUMENT_HINT = " (an instrument table in data/, tracked by data.dvc)"


class InstrumentBlock(Block):
    """The instrument: its channels' table and the channel whose beam the label carries."""

    table: str = Param(
        min_length=1,
        description=("instrument table inside the repository (CSV: freq_GHz, fwhm_arcmin, noise_uK_deg per channel)"),
    )
    target_GHz: Number = Param(
        ge=1.0,
        le=1000.0,
        unit="GHz",
        description=("the channel at which the network recovers the CMB (its beam), GHz; a channel of the table"),
    )

    def read(self, workdir: str | Path = "."):
        """The :class:`~cmbml.cenn.simulate.Instrument` of the table (``ValueError`` if it cannot be read)."""
        from cmbml.cenn.simulate import Instrument

        path, problem = file_in_repository(self.table, ".", workdir, INSTRUMENT_HINT)
        if problem is not None:
            raise ValueError(problem.replace("{key}", "instrument.table"))
        return Instrument.read(path, self.target_GHz)

    @rule
    def _the_target_is_a_channel_of_the_table(self, context: Context) -> Iterator[Problem]:
        if not context.reads_files_of(EXPERIMENT):
            return
        _, problem = file_in_repository(self.table, ".", context.workdir, INSTRUMENT_HINT)
        if problem is not None:
            yield Problem(("table",), self.table, problem)
            return
        try:
            self.read(context.workdir)
        except (ValueError, KeyError, OSError) as err:
            yield Problem(
                ("target_GHz",),
                self.target_GHz,
                f"{{key}} = {self.target_GHz!r} with {{block}}.table = {self.table!r}: {err}",
            )


class CmbMaps(Block):
    """The full-sky CMB skies (stage cmb_maps)."""

    n_realisations: int = Param(
        ge=1,
        le=1000,
        dataset=EXPERIMENT,
        description=("independent full-sky CMB skies; the patches of each split cycle through them"),
    )


class CennSimulate(Block):
    """Where the patches are cut (stage cenn_simulate)."""

    b_min_deg: Number = Param(
        ge=0.0,
        le=80.0,
        unit="deg",
        dataset=EXPERIMENT,
        description=("patch centres at Galactic latitude |b| > b_min_deg, deg"),
    )
    holdout_lon_deg: LonBand = Param(
        dataset=EXPERIMENT, unit="deg", description=("Galactic longitude band [lo, hi] of the Validation patches, deg")
    )
    early_stopping_lon_deg: LonBand = Param(
        dataset=EXPERIMENT,
        unit="deg",
        description=("longitude band [lo, hi] of the Test (early-stopping) patches, deg; Train comes from neither"),
    )
    workers: int = Param(
        ge=1,
        le=256,
        description=("local processes cutting patches (executor.kind = local); the files do not depend on it"),
    )

    @rule
    def _bands_are_disjoint(self, context: Context) -> Iterator[Problem]:
        (lo1, hi1), (lo2, hi2) = self.holdout_lon_deg, self.early_stopping_lon_deg
        if lo1 < hi2 and lo2 < hi1:
            yield Problem(
                ("early_stopping_lon_deg",),
                self.early_stopping_lon_deg,
                f"{{key}} = {self.early_stopping_lon_deg!r} overlaps {{block}}.holdout_lon_deg = "
                f"{self.holdout_lon_deg!r}: allowed disjoint bands",
            )


ALLOWED_SPECTRA = {("E",): [["EE"]], ("B",): [["BB"]], ("Q", "U"): [["EE", "BB"], ["EE"], ["BB"]]}
"""The spectra each choice of components may measure."""


class CennVariant(Block):
    """The variant (conf/cenn): which maps the network sees and which spectra are measured."""

    variant: VariantName = Param(
        dataset=EXPERIMENT, description=("the parameter set, an option of conf/cenn: E, B or QU")
    )
    components: list[Literal["E", "B", "Q", "U"]] = Param(
        dataset=EXPERIMENT, description=("the maps of each channel and of the label: [E], [B] or [Q, U]")
    )
    spectra: list[Literal["EE", "BB"]] = Param(
        evaluation=EXPERIMENT,
        description=("spectra measured by NaMaster: [EE] for E, [BB] for B, any of EE, BB for Q, U"),
    )

    @rule
    def _components_and_spectra(self, context: Context) -> Iterator[Problem]:
        comps = tuple(self.components)
        if comps not in ALLOWED_SPECTRA:
            yield Problem(
                ("components",), self.components, f"{{key}} = {self.components!r}: allowed [E], [B] or [Q, U]"
            )
        elif self.spectra not in ALLOWED_SPECTRA[comps]:
            yield Problem(
                ("spectra",),
                self.spectra,
                f"{{key}} = {self.spectra!r}: allowed {ALLOWED_SPECTRA[comps]} for components {self.components}",
            )

    @rule
    def _as_the_variant_defines_them(self, context: Context) -> Iterator[Problem]:
        variant_file = context.conf_dir / "cenn" / f"{self.variant}.yaml"
        if not variant_file.is_file():
            return
        import yaml

        defined = yaml.safe_load(variant_file.read_text()) or {}  # the group file holds the cenn block
        for key in ("components", "spectra"):
            value = getattr(self, key)
            if key in defined and value != defined[key]:
                yield Problem(
                    (key,),
                    value,
                    f"{{key}} = {value!r} does not match {{block}}.variant = {self.variant!r}: allowed "
                    f"{defined[key]!r} (conf/cenn/{self.variant}.yaml; choose the variant with -S cenn=...)",
                )


class CennTrain(TrainBase):
    """Training of CENN (the epochs come with the scale)."""

    l2: Number = Param(ge=0.0, le=1.0, description="L2 weight decay of every kernel")
    early_stopping_patience: int = Param(
        ge=1, le=100_000, description=("epochs without a better Test loss before training stops")
    )
    b_mode_weight: Number = Param(
        ge=0.0,
        le=1.0e4,
        description=(
            "QU only: weight of the B-mode power of the Q, U error (tapered at the patch edges, standardised units, "
            "per pixel as the MSE) added to the MSE; 0 is the MSE alone. It moves no optimum (the posterior mean "
            "minimises every positive quadratic loss), only where a finite network puts its errors"
        ),
    )


MIN_BIN_FUNDAMENTALS = 2
"""The narrowest NaMaster bin, in fundamentals 2 pi / L of the cropped patch: one fundamental holds a handful of
modes, which the mask couples to the neighbours' (bandpowers anti-correlated by -0.1 to -0.3 on 6 deg patches)."""


class CennEvaluate(Block):
    """The evaluation on the Validation patches of both skies (stage cenn_evaluate)."""

    apodization_deg: Number = Param(
        gt=0.0,
        unit="deg",
        description=("C1 apodization scale of the cropped patch's mask, deg; at most a quarter of the cropped patch"),
    )
    bin_width: Number = Param(
        gt=0.0,
        description=(
            "NaMaster bin width in multipoles; at least two fundamentals of the cropped patch (bins one fundamental "
            "wide make neighbouring bandpowers anti-correlated), two bins below lmax"
        ),
    )
    residual_ell_ranges: list[EllRange] = Param(
        description=("multipole ranges [lo, hi] of the mean |residual D_ell| metrics; each holds a bin centre")
    )
    n_example_patches: int = Param(ge=1, le=16, description="Validation patches drawn beside their prediction")


PysmPreset = Literal[SUPPORTED_PRESETS]
"""A PySM preset whose templates this project reads (PySM 2's layout, ``pysm_2/`` at nside 512)."""


class PysmBlock(Block):
    """The PySM sky of ``model: pysm``: the presets that replace dust and synchrotron, PySM's resolution and its
    templates' folder (:mod:`cmbml.cenn.pysm_sky`)."""

    presets: list[PysmPreset] = Param(
        min_length=1,
        description=(
            "PySM preset strings, at most one dust (d0-d3) and one synchrotron (s0-s3); each replaces the "
            "component of its family, one absent leaves that component out"
        ),
    )
    nside: Nside | None = Param(
        ge=16,
        le=8192,
        description=(
            "HEALPix resolution PySM evaluates at (templates ud_graded to it, the maps then to scale.cenn.nside); "
            "null: scale.cenn.nside"
        ),
    )
    data_dir: RepoPath = Param(
        description=(
            "folder of PySM's data layout (pysm_2/dust_q_new.fits ...), inside paths.cenn.data_dir; read through "
            "PYSM_LOCAL_DATA, never downloaded"
        )
    )

    @rule
    def _one_preset_per_component(self, context: Context) -> Iterator[Problem]:
        seen: dict[str, str] = {}
        for i, preset in enumerate(self.presets):
            family = PRESET_COMPONENTS[preset]
            if family in seen:
                yield Problem(
                    ("presets", i),
                    preset,
                    f"{{key}} = {preset!r}: {seen[family]!r} already gives the {family}; allowed one preset per "
                    "component",
                )
            seen[family] = preset


class ForegroundSky(Block):
    """One foreground sky: its model and one block per component (:data:`~cmbml.cenn.foregrounds.COMPONENTS`,
    each validated by its ``Params``), all in uK_RJ at their reference frequency; for ``model: pysm`` also the
    ``pysm`` block, whose presets replace dust and synchrotron."""

    model: ForegroundModel = Param(
        description=("how the dust and synchrotron amplitudes are drawn, an option of conf/foregrounds")
    )
    spectral_fwhm_deg: Number = Param(
        ge=0.1,
        le=180.0,
        unit="deg",
        description=("correlation scale of the spectral parameters that vary across the sky, deg"),
    )
    galactic_profile: Literal["cosecant", "uniform"] = Param(
        description=("latitude modulation of the Galactic components: cosecant (1 / sin|b|) or uniform")
    )
    noise: bool = Param(description="white noise per channel at the instrument table's depth")
    pysm: PysmBlock | None = Param(
        None, description=("model pysm: the PySM presets, resolution and templates folder; absent otherwise")
    )

    @rule
    def _the_pysm_model_needs_its_block(self, context: Context) -> Iterator[Problem]:
        if self.model == "pysm" and self.pysm is None:
            yield Problem(("pysm",), None, "{key}: missing; model pysm needs it (conf/foregrounds/pysm.yaml)")


def foreground_block(components: Registry) -> type[ForegroundSky]:
    """The model of a foreground-sky block with one field per registered component (its ``Params``)."""
    namespace: dict = {
        "__module__": __name__,
        "__qualname__": "Foregrounds",
        "__doc__": ForegroundSky.__doc__,
        "__annotations__": {name: comp.Params for name, comp in components.items()},
    }
    for name, comp in components.items():
        namespace[name] = Param(description=(comp.__doc__ or name).strip().split(". ")[0].replace("\n", " "))
    return type("Foregrounds", (ForegroundSky,), namespace)


Foregrounds = foreground_block(COMPONENTS)


class ScaleCenn(Block):
    """Resolution, sample sizes and epochs of the CENN experiment at one scale."""

    nside: Nside = Param(
        ge=16, le=8192, dataset=EXPERIMENT, description="HEALPix resolution of the skies (a power of two)"
    )
    npix: int = Param(
        ge=16,
        le=2048,
        multiple_of=16,
        unit="pixels",
        dataset=EXPERIMENT,
        why="four stride-2 layers",
        description="pixels per side of a patch",
    )
    pixel_arcmin: Number = Param(
        gt=0.0, le=120.0, unit="arcmin", dataset=EXPERIMENT, description=("pixel side of a patch, arcmin")
    )
    n_training: int = Param(ge=1, le=10_000_000, dataset=EXPERIMENT, description="training patches (Train files)")
    n_early_stopping: int = Param(
        ge=1, le=10_000_000, dataset=EXPERIMENT, description=("early-stopping patches (Test files)")
    )
    n_evaluation: int = Param(
        ge=1,
        le=10_000_000,
        dataset=EXPERIMENT,
        description=("evaluation patches (Validation files), on each foreground sky"),
    )
    epochs: int = Param(ge=1, le=100_000, description="most training epochs")
    crop_pixels: int = Param(
        ge=0,
        unit="pixels",
        evaluation=EXPERIMENT,
        description=("pixels cut from each patch edge before NaMaster; less than a quarter of the patch"),
    )

    @property
    def geometry(self) -> CennGeometry:
        return CennGeometry(self.nside, self.npix, float(self.pixel_arcmin), self.crop_pixels)

    @rule
    def _crop_leaves_a_patch(self, context: Context) -> Iterator[Problem]:
        if self.crop_pixels > self.npix // 4 - 1:
            yield Problem.out_of_range(
                "crop_pixels",
                self.crop_pixels,
                0,
                self.npix // 4 - 1,
                why=f"at most a quarter of the {self.npix}-pixel patch",
            )


class CennSeparate(Block):
    """The network applied to a full sky (stage cenn_separate and ``cmbml separate``)."""

    b_min_deg: Number = Param(
        ge=0.0, lt=90.0, unit="deg", description="Galactic cut: the estimate covers |b| > b_min_deg"
    )
    spacing_in_sides: Number = Param(
        gt=0.0,
        le=0.5,
        description="spacing of the patch centres in patch sides; at most 1/2, so every pixel lies inside several patches",
    )
    mask_apodization_deg: Number = Param(
        gt=0.0, le=10.0, unit="deg", description="C1 apodization of the full-sky NaMaster mask, deg"
    )
    ilc_bin_width: int = Param(
        ge=1, le=200, description="multipoles sharing one set of harmonic-ILC weights (the full-sky classical answer)"
    )
    realisation_seed: int = Param(
        ge=0,
        description="seed stream of the full-sky test sky's CMB and noise, never used by a patch (the sky is new to the network)",
    )
    batch: int = Param(ge=1, description="patches cut, predicted and reprojected at a time (memory)")
    noise: Literal["patch_matched", "pixel_white"] = Param(
        description=(
            "the test sky's noise: patch_matched (white at the patch resolution once cut, as the training and "
            "evaluation patches carry it: the full-sky and patch figures compare) or pixel_white (white per HEALPix "
            "pixel, as in a detector map: less noise on the patches at multipoles near the pixel scale)"
        )
    )


class UnseenPaths(Block):
    """The unseen sky's own files; the rest it shares with the training sky."""

    foregrounds: RepoPath = Param(description="folder of its foreground channels")
    foreground_cls: RepoPath = Param(description="its foreground spectra (CSV)")
    foreground_plots: RepoPath = Param(description="folder of its foreground figures")
    patches: RepoPath = Param(description="folder of its Validation patches")
    report: RepoPath = Param(description="folder of its dataset gate's report")
    validation: RepoPath = Param(description="its dataset gate's result (JSON)")


class CennPaths(Block):
    """The CENN experiment's files and folders."""

    data_dir: RepoPath = Param(description="external inputs (instrument table, templates, counts), data.dvc")
    cmb: RepoPath = Param(description="folder of the full-sky CMB maps")
    cmb_plots: RepoPath = Param(description="folder of the CMB sky figures")
    foregrounds: RepoPath = Param(description="folder of the foreground channels")
    foreground_cls: RepoPath = Param(description="foreground spectra (CSV)")
    foreground_plots: RepoPath = Param(description="folder of the foreground figures")
    patches: RepoPath = Param(description="folder of the patches (HDF5 per split and component)")
    report: RepoPath = Param(description="folder of the dataset gate's report")
    validation: RepoPath = Param(description="the dataset gate's result (JSON)")
    model_dir: RepoPath = Param(description="folder of the trained network")
    model: RepoPath = Param(description="the trained network (.keras)")
    model_card: RepoPath = Param(description="geometry, channels, beams and units of the trained network (JSON)")
    train_plots: RepoPath = Param(description="folder of the training figures")
    history: RepoPath = Param(description="loss per epoch (JSON)")
    evaluate_plots: RepoPath = Param(description="folder of the evaluation figures")
    spectra: RepoPath = Param(description="NaMaster spectra of the evaluation (JSON)")
    output_report: RepoPath = Param(description="folder of the output gate's report")
    metrics: RepoPath = Param(description="Validation metrics (JSON)")
    fullsky_maps: RepoPath = Param(
        description="folder of the full-sky test sky: frequency maps and the true CMB (FITS)"
    )
    fullsky: RepoPath = Param(description="folder of the full-sky estimates, mask and weight map (FITS)")
    fullsky_plots: RepoPath = Param(description="folder of the full-sky figures and per-bin spectra (JSON)")
    fullsky_metrics: RepoPath = Param(description="full-sky metrics (JSON)")
    unseen: UnseenPaths = Param(description="the unseen sky's own files")

    def cmb_tqu(self, realisation: int) -> Path:
        """Full-sky CMB T, Q, U of one realisation (inside the ``cmb`` output)."""
        return self.cmb / f"cmb_tqu_{realisation}.fits"

    def foreground_channel(self, freq_ghz: float) -> Path:
        """Total foreground Q, U at one channel (inside the ``foregrounds`` output)."""
        return self.foregrounds / f"foregrounds_{freq_ghz:g}GHz.fits"

    def patch_file(self, role: str, component: str) -> Path:
        """The patches of one role (cmbml.common.roles) and component, under the original project's file names
        (:data:`SPLIT_FILES`: ``Train_E.h5``, inside the ``patches`` output)."""
        return self.patches / f"{SPLIT_FILES[role]}_{component}.h5"

    def of_unseen_sky(self) -> CennPaths:
        """The paths of the unseen sky: its own files in place of the training sky's."""
        return self.model_copy(update=dict(self.unseen))


class ScaleOfCenn(Block):
    cenn: ScaleCenn = Param(logged=EXPERIMENT, description="resolution, sizes and epochs of the CENN experiment")


class PathsOfCenn(Block):
    cenn: CennPaths = Param(description="the CENN experiment's files")


class MlflowOfCenn(Block):
    cenn_experiment: str = Param(min_length=1, description="MLflow experiment of the CENN runs")
    cenn_registered_model_prefix: str = Param(
        min_length=1, description=("registered model of a variant: <prefix>-<cenn.variant>")
    )


CennNet = network_block(ARCHITECTURES, "CennNet", __name__, "The CENN network (cenn_net)")


class CennSection(Section):
    """The CENN experiment's keys: the instrument, the two foreground skies, the variant and the stages'
    settings."""

    experiment: ClassVar[str] = EXPERIMENT
    extends: ClassVar[Mapping[str, type[Block]]] = {"scale": ScaleOfCenn, "paths": PathsOfCenn, "mlflow": MlflowOfCenn}

    instrument: InstrumentBlock = Param(dataset=EXPERIMENT, description="the instrument's channels and target")
    cmb_maps: CmbMaps = Param(logged=EXPERIMENT, description="the full-sky CMB skies")
    foregrounds: Foregrounds = Param(dataset=EXPERIMENT, description="the foreground sky the network trains on")
    unseen_foregrounds: Foregrounds = Param(
        evaluation=EXPERIMENT,
        description=(
            "another foreground model, never seen in training: Validation patches only, scored by the evaluation"
        ),
    )
    cenn: CennVariant = Param(logged=EXPERIMENT, description="the variant (conf/cenn)")
    cenn_simulate: CennSimulate = Param(logged=EXPERIMENT, description="where the patches are cut")
    cenn_net: CennNet = Param(logged=EXPERIMENT, description="the network")
    cenn_train: CennTrain = Param(logged=EXPERIMENT, description="training settings")
    cenn_evaluate: CennEvaluate = Param(evaluation=EXPERIMENT, description="evaluation settings")
    cenn_separate: CennSeparate = Param(evaluation=EXPERIMENT, description="the network applied to a full sky")

    def spectra_lmax_need(self) -> int:
        """Highest multipole of the CENN skies, ``3 nside - 1``."""
        return self.scale.cenn.geometry.sky_lmax

    @rule
    def _cenn_batch_fits_the_training_set(self, context: Context) -> Iterator[Problem]:
        batch, n_train = self.cenn_train.batch_size, self.scale.cenn.n_training
        if batch > n_train:
            yield Problem.out_of_range(
                "cenn_train.batch_size", batch, 1, n_train, why="at most scale.cenn.n_training, the training set"
            )

    @rule
    def _the_network_takes_the_variant(self, context: Context) -> Iterator[Problem]:
        """An architecture that declares its ``components`` (e.g. one that works in E and B) takes only those."""
        name = self.cenn_net.architecture
        wanted = getattr(ARCHITECTURES[name], "components", None) if name in ARCHITECTURES else None
        if wanted is not None and tuple(self.cenn.components) != tuple(wanted):
            yield Problem.at(
                "cenn_net.architecture",
                name,
                f"{{key}} = {name!r}: allowed only for the variant with "
                f"components {list(wanted)} (cenn.components = {list(self.cenn.components)})",
            )

    @rule
    def _a_b_mode_loss_needs_q_and_u(self, context: Context) -> Iterator[Problem]:
        weight = self.cenn_train.b_mode_weight
        if weight > 0 and tuple(self.cenn.components) != ("Q", "U"):
            yield Problem.at(
                "cenn_train.b_mode_weight",
                weight,
                f"{{key}} = {weight}: allowed only 0 for the "
                f"variant with components {list(self.cenn.components)} (a B-mode loss needs Q and U)",
            )

    @rule
    def _the_unseen_sky_keeps_the_instrument(self, context: Context) -> Iterator[Problem]:
        noise, unseen = self.foregrounds.noise, self.unseen_foregrounds.noise
        if unseen != noise:
            yield Problem.at(
                "unseen_foregrounds.noise",
                unseen,
                f"{{key}} = {unseen!r}: allowed only "
                f"foregrounds.noise = {noise!r} (the unseen sky changes the foregrounds, never the "
                "instrument)",
            )

    @rule
    def _foreground_components(self, context: Context) -> Iterator[Problem]:
        """What a component's ``Params`` cannot see (its ``check``): the sky model's needs and, for the experiment
        that reads them, its files in ``paths.cenn.data_dir`` (templates, counts tables covering the flux cuts)."""
        if not context.params:
            return  # the components' checks read the raw file
        data_dir = self.paths.cenn.data_dir if context.reads_files_of(EXPERIMENT) else None
        checker = Checker(context.params, context.workdir)
        for sky in SKIES:
            for name, component in COMPONENTS.items():
                try:  # a block with invalid keys is reported by its Params, the others are checked
                    component.Params.model_validate(context.params[sky][name])
                except (ValidationError, KeyError, TypeError):
                    continue
                component.check(checker, f"{sky}.{name}", data_dir)
            if isinstance(context.params[sky], Mapping) and context.params[sky].get("model") == "pysm":
                check_pysm(checker, f"{sky}.pysm", data_dir is not None)
        for line in checker.problems:  # "<dotted key>[ = value]: why"
            yield Problem.at(line.split(":")[0].split(" = ")[0], None, line)

    @rule
    def _room_for_patches(self, context: Context) -> Iterator[Problem]:
        """Every split needs sky: each band must fit a patch one diagonal from its edges at |b| > b_min_deg,
        and Train the sky outside both. Refused here so that the centre search never starts on empty sky."""
        from cmbml.cenn.patches import allowed_sky_fraction

        sim, scale = self.cenn_simulate, self.scale.cenn
        patch = FlatGrid(scale.npix, float(scale.pixel_arcmin))
        b_min, bands = (
            sim.b_min_deg,
            {"holdout_lon_deg": sim.holdout_lon_deg, "early_stopping_lon_deg": sim.early_stopping_lon_deg},
        )
        order = [tuple(band) for band in bands.values()]
        buffer = patch.half_diagonal_deg
        if buffer >= 90.0 - b_min:  # no band of any width holds it: say what the patch may be instead
            max_npix = int(2 * (90.0 - b_min) / np.sqrt(2.0) * 60.0 / float(scale.pixel_arcmin)) // 16 * 16
            yield Problem.out_of_range(
                "scale.cenn.npix",
                scale.npix,
                16,
                max_npix,
                hi_open=False,
                why=(
                    f"a {patch.side_deg:.1f} deg patch of {float(scale.pixel_arcmin):g}' pixels reaches "
                    f"{buffer:.1f} deg from its centre, beyond the {90.0 - b_min:g} deg between |b| = {b_min:g} deg "
                    "and the pole: no longitude band holds it one diagonal from its edges; a smaller patch still "
                    "needs bands wide enough for it"
                ),
            )
            return
        # widest allowed band interior at |b| = b_min: distance to a meridian is asin(sin(dlon) cos b)
        min_width = 2 * np.degrees(np.arcsin(min(1.0, np.sin(np.radians(buffer)) / np.cos(np.radians(b_min)))))
        for k, (key, band) in enumerate(bands.items()):
            if allowed_sky_fraction(b_min, order, k, buffer) < 5e-4:
                lo, hi = band
                yield Problem.at(
                    f"cenn_simulate.{key}",
                    band,
                    f"{{key}} = {list(band)!r} is {hi - lo:g} deg wide: no {patch.side_deg:.2f} deg patch "
                    f"fits one diagonal ({buffer:.2f} deg) from its edges at |b| > {b_min:g} deg; allowed "
                    f"hi - lo > {min_width:.1f} deg (a wider band or a lower cenn_simulate.b_min_deg)",
                )
        if allowed_sky_fraction(b_min, order, None, buffer) < 1e-3:
            yield Problem.at(
                "cenn_simulate.holdout_lon_deg",
                sim.holdout_lon_deg,
                f"{{key}} = {list(sim.holdout_lon_deg)!r} and cenn_simulate.early_stopping_lon_deg = "
                f"{list(sim.early_stopping_lon_deg)!r} leave no sky for Train at |b| > {b_min:g} deg: "
                "allowed bands covering less longitude, so that the rest keeps room for patches "
                f"{buffer:.2f} deg from every edge",
            )

    @rule
    def _namaster_bins_on_the_cropped_patch(self, context: Context) -> Iterator[Problem]:
        geometry, ev = self.scale.cenn.geometry, self.cenn_evaluate
        cropped, top = geometry.cropped, geometry.spectra_lmax
        if ev.apodization_deg > cropped.side_deg / 4:
            yield Problem.out_of_range(
                "cenn_evaluate.apodization_deg",
                ev.apodization_deg,
                0.0,
                cropped.side_deg / 4,
                lo_open=True,
                why=f"a quarter of the cropped {cropped.side_deg:.2f} deg patch",
            )
        key, width = "cenn_evaluate.bin_width", ev.bin_width
        lo = MIN_BIN_FUNDAMENTALS * cropped.ell_fundamental
        hi = max(lo, top / 2)
        if not lo <= width <= hi:
            yield Problem.out_of_range(
                key,
                width,
                lo,
                hi,
                why=(
                    f"bins one fundamental 2 pi / L wide make neighbouring bandpowers anti-correlated: at least "
                    f"{MIN_BIN_FUNDAMENTALS} x {cropped.ell_fundamental:.1f} on the cropped {cropped.side_deg:.2f} deg "
                    f"patch, and two bins below lmax {top:.0f}"
                ),
            )
            return
        edges = geometry.bin_edges(width)
        try:  # the very edges NaMaster will get
            check_bins(edges, cropped, top)
        except ValueError as err:
            yield Problem.at(key, width, f"{{key}} = {width!r}: {err}")
            return
        # each residual range must hold at least one bin centre, or its metrics would be missing
        centres = 0.5 * (edges[:-1] + edges[1:])
        for i, r in enumerate(ev.residual_ell_ranges):
            if not ((centres >= r[0]) & (centres < r[1])).any():
                yield Problem(
                    ("cenn_evaluate", "residual_ell_ranges", i),
                    r,
                    f"{{key}} = {r!r} holds no bin: allowed ranges that contain a bin centre, within "
                    f"{centres[0]:.0f} <= ell < {centres[-1]:.0f} (the bins of cenn_evaluate.bin_width on "
                    "the cropped patch)",
                )


SECTIONS.register(CennSection, name=EXPERIMENT)
