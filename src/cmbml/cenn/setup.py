"""The component-separation experiment's setup: one variant (E, B, QU) at one scale, checked, with what
follows from it.

Built once from params.yaml by every CENN stage (:meth:`CennSetup.from_params`): the instrument (its
table is read and the target channel found before any compute), the sky band limit, the patch and its
crop, the NaMaster bins, beams and interpolation window, training and MLflow settings, every path.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from cmbml.cenn.simulate import Instrument
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
from cmbml.common.flatsky import FlatGrid, check_bins
from cmbml.common.integrity import params_digest
from cmbml.cenn.networks import ARCHITECTURES
from cmbml.common.params import Checker, ParamError, available_options, load_params
from cmbml.cenn.source_counts import SourceCounts

SPLITS = ("Train", "Test", "Validation")
SKY_BLOCKS = {"training": "foregrounds", "unseen": "unseen_foregrounds"}
UNSEEN_PATHS = ("foregrounds", "foreground_cls", "foreground_plots", "patches", "report", "validation")
"""The paths the unseen sky has of its own (``paths.cenn.unseen``); the rest it shares with the training sky."""
"""The foreground skies of one parameter set and their parameter blocks: the network trains on the first; the
second (another model) gives only Validation patches, with the same CMB, noise and patch centres."""


@dataclass(frozen=True)
class CennPaths:
    camb_cls: Path
    data_dir: Path
    sky: Path
    sky_plots: Path
    foregrounds: Path
    foreground_cls: Path
    foreground_plots: Path
    patches: Path
    report: Path
    validation: Path
    model_dir: Path
    model: Path
    model_card: Path  # geometry and units of the trained network
    train_plots: Path
    history: Path
    evaluate_plots: Path
    spectra: Path
    output_report: Path
    metrics: Path

    def cmb_tqu(self, realisation: int) -> Path:
        """Full-sky CMB T, Q, U of one realisation (inside the ``sky`` output)."""
        return self.sky / f"cmb_tqu_{realisation}.fits"

    def foreground_channel(self, freq_ghz: float) -> Path:
        """Total foreground Q, U at one channel (inside the ``foregrounds`` output)."""
        return self.foregrounds / f"foregrounds_{freq_ghz:g}GHz.fits"

    def patch_file(self, split: str, component: str) -> Path:
        """One split of one component (inside the ``patches`` output)."""
        return self.patches / f"{split}_{component}.h5"



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


def _check_cenn(c: Checker, conf_dir: Path) -> tuple[Instrument | None, CennGeometry | None]:
    variant = c.choice("cenn.variant", available_options("cenn", conf_dir) or ["E", "B", "QU"])
    comps = c.value("cenn.components")
    if comps is not None and comps not in (["E"], ["B"], ["Q", "U"]):
        c.fail(f"cenn.components = {comps!r}: allowed [E], [B] or [Q, U]")
    variant_file = Path(conf_dir, "cenn", f"{variant}.yaml")
    if variant is not None and variant_file.is_file():
        import yaml

        defined = yaml.safe_load(variant_file.read_text()) or {}  # the group file holds the cenn block
        for key in ("components", "spectra"):
            if key in defined and c.value(f"cenn.{key}") != defined[key]:
                c.fail(f"cenn.{key} = {c.value(f'cenn.{key}')!r} does not match cenn.variant = {variant!r}: "
                       f"allowed {defined[key]!r} (conf/cenn/{variant}.yaml; choose the variant with -S cenn=...)")
    allowed_spectra = {("E",): [["EE"]], ("B",): [["BB"]], ("Q", "U"): [["EE", "BB"], ["EE"], ["BB"]]}
    spectra = c.value("cenn.spectra")
    if comps in (["E"], ["B"], ["Q", "U"]) and spectra not in allowed_spectra[tuple(comps)]:
        c.fail(f"cenn.spectra = {spectra!r}: allowed {allowed_spectra[tuple(comps)]} for components {comps}")
    nside = c.value("scale.cenn.nside")
    if nside is not None and not (isinstance(nside, int) and 16 <= nside <= 8192 and nside & (nside - 1) == 0):
        c.fail(f"scale.cenn.nside = {nside!r}: allowed powers of two 16 <= nside <= 8192")
        nside = None
    npix = c.value("scale.cenn.npix")
    if npix is not None and not (isinstance(npix, int) and 16 <= npix <= 2048 and npix % 16 == 0):
        c.fail(f"scale.cenn.npix = {npix!r}: allowed multiples of 16 (four stride-2 layers), 16 <= npix <= 2048")
        npix = None
    pix = c.number("scale.cenn.pixel_arcmin", 0.0, 120.0, lo_open=True)
    for split in SPLITS:
        c.number(f"scale.cenn.n_{split.lower()}", 1, 10_000_000, integer=True)
    c.number("scale.cenn.epochs", 1, 100_000, integer=True)
    c.number("sky_maps.n_cmb_realisations", 1, 1000, integer=True)
    c.number("cenn_simulate.b_min_deg", 0.0, 80.0)
    c.number("cenn_simulate.workers", 1, 256, integer=True)
    bands = {}
    for key in ("holdout_lon_deg", "early_stopping_lon_deg"):
        band = c.value(f"cenn_simulate.{key}")
        if isinstance(band, list) and len(band) == 2 and 0 <= band[0] < band[1] <= 360:
            bands[key] = band
        else:
            c.fail(f"cenn_simulate.{key} = {band!r}: allowed [lo, hi] with 0 <= lo < hi <= 360")
    if len(bands) == 2:
        (lo1, hi1), (lo2, hi2) = bands.values()
        if lo1 < hi2 and lo2 < hi1:
            c.fail(f"cenn_simulate.early_stopping_lon_deg = {bands['early_stopping_lon_deg']!r} overlaps "
                   f"cenn_simulate.holdout_lon_deg = {bands['holdout_lon_deg']!r}: allowed disjoint bands")
    target = c.number("instrument.target_GHz", 1.0, 1000.0)
    table = c.file_in_repository("instrument.table", hint=" (an instrument table in data/, tracked by data.dvc)")
    instrument = None
    if table is not None and target is not None:
        try:
            instrument = Instrument.read(table, target)
        except (ValueError, KeyError, OSError) as err:
            c.fail(f"instrument.target_GHz = {target!r} with instrument.table = {c.value('instrument.table')!r}: {err}")
    for sky_key in SKY_BLOCKS.values():
        _check_foregrounds(c, sky_key, conf_dir)
    c.choice("cenn_train.optimizer", OPTIMIZERS)
    c.choice("cenn_train.precision", PRECISIONS)
    check_strategy(c, "cenn_train.strategy")
    c.number("cenn_train.learning_rate", 0.0, 10.0, lo_open=True)
    c.number("cenn_train.l2", 0.0, 1.0)
    check_architecture(c, "cenn_net", ARCHITECTURES)
    n_train = c.value("scale.cenn.n_train")
    c.number("cenn_train.batch_size", 1, n_train if isinstance(n_train, int) and n_train >= 1 else 100_000,
             integer=True, why="at most scale.cenn.n_train, the training set")
    c.number("cenn_train.early_stopping_patience", 1, 100_000, integer=True)
    c.number("cenn_evaluate.n_example_patches", 1, 16, integer=True)
    c.text("mlflow.cenn_experiment")
    c.text("mlflow.cenn_registered_model_prefix")
    ranges = c.value("cenn_evaluate.residual_ell_ranges") or []
    for i, r in enumerate(ranges):
        if not (isinstance(r, list) and len(r) == 2 and all(isinstance(x, (int, float)) for x in r) and 0 <= r[0] < r[1]):
            c.fail(f"cenn_evaluate.residual_ell_ranges[{i}] = {r!r}: allowed [lo, hi] with 0 <= lo < hi")
    if pix is not None and npix is not None:
        _check_room_for_patches(c, FlatGrid(int(npix), float(pix)), bands)
    if npix is None or pix is None or nside is None:
        return instrument, None
    crop = c.number("scale.cenn.crop_pixels", 0, npix // 4 - 1, integer=True,
                    why=f"at most a quarter of the {npix}-pixel patch")
    if crop is None:
        return instrument, None
    geometry = CennGeometry(int(nside), int(npix), float(pix), int(crop))
    cropped, top = geometry.cropped, geometry.spectra_lmax
    c.number("cenn_evaluate.apodization_deg", 0.0, cropped.side_deg / 4, lo_open=True,
             why=f"a quarter of the cropped {cropped.side_deg:.2f} deg patch")
    key = "cenn_evaluate.bin_width"
    width = c.number(key, cropped.ell_fundamental, max(cropped.ell_fundamental, top / 2),
                     why=f"NaMaster needs every bin to hold a Fourier mode: at least the fundamental 2 pi / L = "
                         f"{cropped.ell_fundamental:.1f} of the cropped {cropped.side_deg:.2f} deg patch, "
                         f"and two bins below lmax {top:.0f}")
    if width is not None:
        try:  # the very edges NaMaster will get
            check_bins(geometry.bin_edges(width), cropped, top)
        except ValueError as err:
            c.fail(f"{key} = {width!r}: {err}")
        else:
            _check_ell_ranges(c, geometry.bin_edges(width))
    return instrument, geometry


def _check_foregrounds(c: Checker, block: str, conf_dir: Path) -> None:
    """One foreground-sky block: ``foregrounds`` (the training sky) or ``unseen_foregrounds``."""
    c.boolean(f"{block}.noise")
    c.choice(f"{block}.galactic_profile", ["cosecant", "uniform"])
    model = c.choice(f"{block}.model", available_options("foregrounds", conf_dir) or ["gaussian", "nongaussian"])
    c.number(f"{block}.spectral_fwhm_deg", 0.1, 180.0)
    c.number(f"{block}.dust.beta_scatter", 0.0, 0.5)
    c.number(f"{block}.dust.T_dust_scatter_K", 0.0, 5.0)
    c.number(f"{block}.synchrotron.beta_scatter", 0.0, 0.5)
    for name in ("dust", "synchrotron"):
        for key in ("A_EE", "A_BB"):
            c.number(f"{block}.{name}.{key}", 0.0, 1e6)
        for key in ("alpha_EE", "alpha_BB"):
            c.number(f"{block}.{name}.{key}", -5.0, 5.0)
        c.number(f"{block}.{name}.ref_GHz", 1.0, 2000.0)
        c.number(f"{block}.{name}.beta", -6.0, 6.0)
        if model == "nongaussian":
            c.number(f"{block}.{name}.ln_intensity_sigma", 0.0, 3.0)
            c.number(f"{block}.{name}.angle_sigma_deg", 0.0, 180.0)
        data_dir = c.params.get("paths", {}).get("cenn", {}).get("data_dir")  # a missing one is reported with the paths
        if c.value(f"{block}.{name}.template") is not None and data_dir is not None:
            c.file_in_repository(f"{block}.{name}.template", relative_to=data_dir,
                                 hint=" (copy it into data/ and run `dvc add data`, or set null for the Gaussian model)")
    c.number(f"{block}.dust.T_dust_K", 1.0, 1000.0)
    for name in ("radio", "infrared"):
        s_min = c.number(f"{block}.{name}.s_min_Jy", 0.0, 1e4, lo_open=True)
        s_max = c.number(f"{block}.{name}.s_max_Jy", s_min or 0.0, 1e5, lo_open=True, why="above s_min_Jy")
        data_dir = c.params.get("paths", {}).get("cenn", {}).get("data_dir")
        table = c.file_in_repository(f"{block}.{name}.counts_table", relative_to=data_dir,
                                     hint=" (a counts table S_Jy, dN_dS in data/, tracked by data.dvc)") \
            if data_dir is not None else None
        if table is not None and s_min is not None and s_max is not None:
            try:
                SourceCounts.read(table).cumulative(s_min, s_max, n_grid=2)
            except (ValueError, KeyError, OSError) as err:
                c.fail(f"{block}.{name}.counts_table = {c.value(f'{block}.{name}.counts_table')!r} with "
                       f"s_min_Jy = {s_min!r}, s_max_Jy = {s_max!r}: {err}")
        c.number(f"{block}.{name}.spectral_index", -10.0, 10.0)
        c.number(f"{block}.{name}.ref_GHz", 1.0, 2000.0)
        c.number(f"{block}.{name}.pol_mu", -10.0, 10.0)
        c.number(f"{block}.{name}.pol_sigma", 0.0, 5.0)
    if block != "foregrounds" and c.value(f"{block}.noise") != c.value("foregrounds.noise"):
        c.fail(f"{block}.noise = {c.value(f'{block}.noise')!r}: allowed only foregrounds.noise = "
               f"{c.value('foregrounds.noise')!r} (the unseen sky changes the foregrounds, never the instrument)")


def _check_ell_ranges(c: Checker, edges: np.ndarray) -> None:
    """Each residual range must hold at least one NaMaster bin centre, or its metrics would be missing."""
    centres = 0.5 * (edges[:-1] + edges[1:])
    for i, r in enumerate(c.value("cenn_evaluate.residual_ell_ranges") or []):
        if isinstance(r, list) and len(r) == 2 and all(isinstance(x, (int, float)) for x in r):
            if not ((centres >= r[0]) & (centres < r[1])).any():
                c.fail(f"cenn_evaluate.residual_ell_ranges[{i}] = {r!r} holds no bin: allowed ranges "
                       f"that contain a bin centre, within {centres[0]:.0f} <= ell < {centres[-1]:.0f} "
                       "(the bins of cenn_evaluate.bin_width on the cropped patch)")


def _check_room_for_patches(c: Checker, patch: FlatGrid, bands: Mapping[str, list]) -> None:
    """Every split needs sky: each band must fit a patch one diagonal from its edges at |b| > b_min_deg,
    and Train the sky outside both. Refused here so that the centre search never starts on empty sky."""
    from cmbml.cenn.patches import allowed_sky_fraction

    b_min = c.value("cenn_simulate.b_min_deg")
    if len(bands) != 2 or not isinstance(b_min, (int, float)) or not 0 <= b_min <= 80:
        return
    order = [tuple(bands["holdout_lon_deg"]), tuple(bands["early_stopping_lon_deg"])]
    buffer = patch.half_diagonal_deg
    # widest allowed band interior at |b| = b_min: distance to a meridian is asin(sin(dlon) cos b)
    min_width = 2 * np.degrees(np.arcsin(min(1.0, np.sin(np.radians(buffer)) / np.cos(np.radians(b_min)))))
    for k, key in enumerate(("holdout_lon_deg", "early_stopping_lon_deg")):
        if allowed_sky_fraction(b_min, order, k, buffer) < 5e-4:
            lo, hi = order[k]
            c.fail(f"cenn_simulate.{key} = {list(bands[key])!r} is {hi - lo:g} deg wide: no {patch.side_deg:.2f} deg "
                   f"patch fits one diagonal ({buffer:.2f} deg) from its edges at |b| > {b_min:g} deg; allowed "
                   f"hi - lo > {min_width:.1f} deg (a wider band or a lower cenn_simulate.b_min_deg)")
    if allowed_sky_fraction(b_min, order, None, buffer) < 1e-3:
        c.fail(f"cenn_simulate.holdout_lon_deg = {list(bands['holdout_lon_deg'])!r} and "
               f"cenn_simulate.early_stopping_lon_deg = {list(bands['early_stopping_lon_deg'])!r} leave no sky "
               f"for Train at |b| > {b_min:g} deg: allowed bands covering less longitude, so that the rest "
               f"keeps room for patches {buffer:.2f} deg from every edge")


DESCRIPTION = (
    "Component separation: CENN recovers the CMB at the target channel from three frequency channels of "
    "polarized skies (CMB, dust, synchrotron, radio and infrared sources, noise, beams). One run per training; "
    "its evaluation adds validation_* metrics (map MSE of the network beside the Wiener filter, the linear "
    "filter and the ILCs), NaMaster spectra (table spectra.json), the detailed scores and plots. "
    "Models: cmbml-cenn-<variant>@<scale>.")


def check_cenn(c: Checker, conf_dir: Path = Path("conf")) -> tuple[Instrument | None, CennGeometry | None]:
    """Every component-separation key, the shared cosmology and the paths."""
    out = _check_cenn(c, conf_dir)
    check_shared(c, CennPaths, "cenn", conf_dir)
    unseen = c.params.get("paths", {}).get("cenn", {}).get("unseen")
    if not isinstance(unseen, Mapping) or set(unseen) != set(UNSEEN_PATHS):
        c.fail(f"paths.cenn.unseen = {unseen!r}: allowed a block with exactly {list(UNSEEN_PATHS)}")
    else:
        for key, value in unseen.items():
            if not isinstance(value, str) or not value or Path(value).is_absolute() or ".." in Path(value).parts:
                c.fail(f"paths.cenn.unseen.{key} = {value!r}: paths must be relative and stay inside the repository")
    return out


@dataclass(frozen=True)
class CennSetup:
    """One component-separation parameter set (E, B or QU at a scale), checked, with what follows from it."""

    seed: int
    cosmology: Mapping[str, float]
    scale: str
    variant: str
    sky: str  # "training" or "unseen" (SKY_BLOCKS): which foreground sky `foregrounds` and the paths describe
    splits: tuple[str, ...]  # the splits cut from this sky: all three for training, Validation for unseen
    components: tuple[str, ...]
    spectra: tuple[str, ...]
    instrument: Instrument
    geometry: CennGeometry
    n_samples: Mapping[str, int]
    n_cmb_realisations: int
    foregrounds: Mapping[str, Any]
    b_min_deg: float
    holdout_lon_deg: tuple[float, float]
    early_stopping_lon_deg: tuple[float, float]
    executor: ExecutorSpec  # where the simulation runs; the files do not depend on it
    net_architecture: str  # a name of cmbml.cenn.networks.ARCHITECTURES
    net_params: Any  # that architecture's validated Params
    train: TrainSettings
    apodization_deg: float
    bin_width: float
    residual_ell_ranges: tuple[tuple[float, float], ...]
    n_example_patches: int
    tracking: Tracking
    paths: CennPaths
    dataset_digest: str  # of DATASET_KEYS: every patch file carries it, the gate compares

    DATASET_KEYS = ("seed", "cosmology", "instrument", "sky_maps.n_cmb_realisations", "foregrounds", "cenn.variant",
                    "cenn.components", "cenn_simulate.b_min_deg", "cenn_simulate.holdout_lon_deg",
                    "cenn_simulate.early_stopping_lon_deg", "scale.cenn.nside", "scale.cenn.npix",
                    "scale.cenn.pixel_arcmin", "scale.cenn.n_train", "scale.cenn.n_test", "scale.cenn.n_validation")
    """The parameters that decide the patches' content."""
    KEYS = ("seed", "cosmology", "instrument", "sky_maps", "foregrounds", "unseen_foregrounds", "cenn",
            "cenn_simulate", "cenn_net", "cenn_train", "cenn_evaluate", "scale.name", "scale.cenn")
    """The parameters of this experiment (what its MLflow runs log) ..."""
    EVALUATION_KEYS = ("cenn_evaluate", "unseen_foregrounds", "scale.cenn.crop_pixels", "cenn.spectra")
    """... of which these set only the evaluation (logged by it as tags)."""

    @classmethod
    def from_params(cls, params: Mapping[str, Any], conf_dir: str | Path = "conf",
                    source: str = "params.yaml", sky: str = "training") -> CennSetup:
        """The setup of one foreground sky: ``training``, or ``unseen``, where ``foregrounds`` holds the
        ``unseen_foregrounds`` block and the foreground, patch and report paths are those of ``paths.cenn.unseen``."""
        if sky not in SKY_BLOCKS:  # the stages' --sky option
            raise ParamError([f"--sky {sky!r}: allowed {' or '.join(SKY_BLOCKS)}"], "the command line")
        c = Checker(params)
        instrument, geometry = check_cenn(c, Path(conf_dir))
        c.raise_if_any(source)
        p = params
        if sky == "unseen":
            cenn_paths = p["paths"]["cenn"]
            p = {**p, "foregrounds": p["unseen_foregrounds"],
                 "paths": {**p["paths"], "cenn": {**cenn_paths, **cenn_paths["unseen"]}}}
        sc, tr, ev, variant = p["scale"]["cenn"], p["cenn_train"], p["cenn_evaluate"], p["cenn"]
        return cls(
            seed=int(p["seed"]), cosmology=dict(p["cosmology"]), scale=p["scale"]["name"],
            variant=variant["variant"], sky=sky, splits=SPLITS if sky == "training" else ("Validation",),
            components=tuple(variant["components"]), spectra=tuple(variant["spectra"]),
            instrument=instrument, geometry=geometry,
            n_samples={s: int(sc[f"n_{s.lower()}"]) for s in SPLITS},
            n_cmb_realisations=int(p["sky_maps"]["n_cmb_realisations"]), foregrounds=p["foregrounds"],
            b_min_deg=float(p["cenn_simulate"]["b_min_deg"]),
            holdout_lon_deg=tuple(p["cenn_simulate"]["holdout_lon_deg"]),
            early_stopping_lon_deg=tuple(p["cenn_simulate"]["early_stopping_lon_deg"]),
            executor=executor_spec(p, "cenn_simulate.workers"),
            net_architecture=p["cenn_net"]["architecture"],
            net_params=architecture_params(p["cenn_net"], ARCHITECTURES),
            train=TrainSettings(optimizer=tr["optimizer"], learning_rate=float(tr["learning_rate"]),
                                batch_size=int(tr["batch_size"]), epochs=int(sc["epochs"]),
                                early_stopping_patience=int(tr["early_stopping_patience"]), l2=float(tr["l2"]),
                                precision=tr["precision"], strategy=tr["strategy"]),
            apodization_deg=float(ev["apodization_deg"]), bin_width=float(ev["bin_width"]),
            residual_ell_ranges=tuple(tuple(r) for r in ev["residual_ell_ranges"]),
            n_example_patches=int(ev["n_example_patches"]),
            tracking=tracking_from_params(p, p["mlflow"]["cenn_experiment"],
                                          f"{p['mlflow']['cenn_registered_model_prefix']}-{variant['variant']}",
                                          cls.KEYS, cls.EVALUATION_KEYS, DESCRIPTION),
            paths=read_paths(Checker(p), CennPaths, ["spectra", "cenn"]),
            dataset_digest=params_digest(logged_params(p, cls.DATASET_KEYS)),
        )

    @property
    def nside(self) -> int:
        return self.geometry.nside

    @property
    def model_card(self) -> dict[str, Any]:
        """What a user of the trained network must know to apply it (stored beside the model, in its
        MLflow metadata and read by ``cmbml predict``): geometry, channels, beams and units."""
        from cmbml.cenn.simulate import CONVENTIONS

        patch, target = self.geometry.patch, self.instrument.target_channel
        return {
            "experiment": "cenn", "parameter_set": self.variant, "scale": self.scale,
            "registered_model": self.tracking.registered_model, "params_digest": self.dataset_digest,
            "components": list(self.components),
            "input": {"quantity": f"sky maps ({'/'.join(self.components)}) per frequency channel",
                      "channels": [f"{f:g}GHz" for f in self.instrument.freqs_ghz], "units": "uK_CMB",
                      "npix": patch.npix, "pixel_arcmin": patch.pixel_arcmin,
                      "fwhm_arcmin": [ch.fwhm_arcmin for ch in self.instrument.channels],
                      "layout": "[sample, y, x, channel]"},
            "output": {"quantity": f"CMB at {target.freq_ghz:g} GHz (its beam)", "channels": ["CMB"],
                       "units": "uK_CMB", "target_GHz": target.freq_ghz, "fwhm_arcmin": target.fwhm_arcmin,
                       "npix": patch.npix, "pixel_arcmin": patch.pixel_arcmin},
            "conventions": CONVENTIONS["layout"],
        }

    @property
    def spin(self) -> int:
        """NaMaster field spin: 2 for (Q, U) with B-mode purification, 0 for scalar E or B maps."""
        return 2 if self.components == ("Q", "U") else 0

    @cached_property
    def beams(self) -> list[np.ndarray]:
        """Gaussian beam transfer function of each channel to the sky band limit."""
        from cmbml.cenn.fullsky import gauss_beam

        return [gauss_beam(ch.fwhm_arcmin, self.geometry.sky_lmax) for ch in self.instrument.channels]

    @cached_property
    def interpolation_window(self) -> np.ndarray:
        """Transfer function of the HEALPix-to-patch interpolation, to the sky band limit."""
        from cmbml.cenn.fullsky import interpolation_window

        return interpolation_window(self.nside, self.geometry.sky_lmax)

    @property
    def label_transfer(self) -> np.ndarray:
        """What the label's CMB went through: the target beam and the interpolation window."""
        return self.beams[self.instrument.target] * self.interpolation_window

    @property
    def channel_response(self) -> np.ndarray:
        """Each channel's response to the label, ``B_c / B_target`` per multipole, (channels, sky_lmax + 1)."""
        return np.stack(self.beams) / self.beams[self.instrument.target]

    @cached_property
    def bin_edges(self) -> np.ndarray:
        return self.geometry.bin_edges(self.bin_width)

    @property
    def noise_sigma_pix(self) -> list[float]:
        """White-noise rms per patch pixel of each channel (uK), zero when noise is off."""
        return [ch.noise_uk_arcmin / self.geometry.pixel_arcmin if self.foregrounds["noise"] else 0.0
                for ch in self.instrument.channels]


def load(path: str | Path = "params.yaml", conf_dir: str | Path = "conf", sky: str = "training") -> CennSetup:
    """The CENN setup of a params file (what every CENN stage starts with), for one foreground sky."""
    return CennSetup.from_params(load_params(path), conf_dir, source=str(path), sky=sky)
