"""Loading and checking the pipeline parameters (params.yaml).

Every stage checks the parameters it uses before any computation. A failure raises
:class:`ParamError` listing every offending key with its value and the allowed range.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from cmbml.flatsky import FlatGrid


class ParamError(ValueError):
    """One or more parameters are invalid; the message names each key and its allowed range."""

    def __init__(self, problems: list[str], source: str = "params.yaml"):
        self.problems = problems
        super().__init__(f"invalid parameters in {source}:\n  - " + "\n  - ".join(problems))


def load_params(path: str | Path = "params.yaml") -> dict[str, Any]:
    """Read the composed parameter file."""
    import yaml

    with open(path) as fh:
        return yaml.safe_load(fh)


def get_key(params: Mapping[str, Any], dotted: str) -> Any:
    """``get_key(p, "scale.lensing.n_train")`` -> ``p["scale"]["lensing"]["n_train"]``."""
    node: Any = params
    for part in dotted.split("."):
        node = node[part]
    return node


class _Checker:
    """Collects problems instead of stopping at the first one."""

    def __init__(self, params: Mapping[str, Any]):
        self.params = params
        self.problems: list[str] = []

    def value(self, key: str) -> Any:
        try:
            return get_key(self.params, key)
        except (KeyError, TypeError):
            self.problems.append(f"{key}: missing")
            return None

    def number(
        self,
        key: str,
        lo: float,
        hi: float,
        *,
        integer: bool = False,
        lo_open: bool = False,
        nullable: bool = False,
        why: str = "",
    ) -> float | None:
        v = self.value(key)
        if v is None:
            if not nullable and not any(p.startswith(f"{key}:") for p in self.problems):
                self.problems.append(f"{key} = null: a value is required")
            return None
        kind = "an integer" if integer else "a number"
        ok_type = isinstance(v, int) if integer else isinstance(v, (int, float))
        if isinstance(v, bool) or not ok_type or (isinstance(v, float) and not math.isfinite(v)):
            self.problems.append(f"{key} = {v!r}: must be {kind}")
            return None
        lo_sign = "<" if lo_open else "<="
        too_low = v <= lo if lo_open else v < lo
        if too_low or v > hi:
            extra = f" ({why})" if why else ""
            self.problems.append(f"{key} = {v!r} is out of range: allowed {lo:g} {lo_sign} {key} <= {hi:g}{extra}")
            return None
        return v

    def choice(self, key: str, allowed: list[str]) -> str | None:
        v = self.value(key)
        if v is not None and v not in allowed:
            self.problems.append(f"{key} = {v!r}: allowed values are {', '.join(map(str, allowed))}")
            return None
        return v

    def boolean(self, key: str) -> None:
        v = self.value(key)
        if v is not None and not isinstance(v, bool):
            self.problems.append(f"{key} = {v!r}: must be true or false")


def available_options(group: str, conf_dir: str | Path = "conf") -> list[str]:
    """Names of the option files of a Hydra config group (``conf/<group>/*.yaml``)."""
    return sorted(p.stem for p in Path(conf_dir, group).glob("*.yaml"))


def lensing_grid(params: Mapping[str, Any]) -> FlatGrid:
    return FlatGrid(npix=int(params["npix"]), pixel_arcmin=float(params["pixel_arcmin"]))


def check_spectra(c: _Checker) -> None:
    lmax = c.number("spectra.lmax", 100, 30000, integer=True)
    try:
        need = required_spectra_lmax(c.params)
    except (KeyError, TypeError, ValueError, ZeroDivisionError):
        return  # the keys it needs are reported by their own checks
    if lmax is not None and lmax < need:
        c.problems.append(f"spectra.lmax = {lmax}: the simulations need CAMB spectra to ell = {need}; "
                          f"allowed {need} <= spectra.lmax <= 30000")


def check_cosmology(c: _Checker) -> None:
    c.number("cosmology.H0", 20, 150)
    c.number("cosmology.ombh2", 0.005, 0.1)
    c.number("cosmology.omch2", 0.01, 0.99)
    c.number("cosmology.tau", 0.01, 0.8)
    c.number("cosmology.As", 1e-10, 1e-8)
    c.number("cosmology.ns", 0.5, 1.5)
    c.number("cosmology.mnu", 0.0, 3.0)
    c.number("cosmology.r", 0.0, 1.0)
    c.number("seed", 0, 2**63 - 1, integer=True)


def check_lensing(c: _Checker, conf_dir: str | Path = "conf") -> None:
    """Checks of the lensing simulation, training and evaluation keys."""
    options = available_options("lensing", conf_dir)
    if options:
        c.choice("lensing_version", options)
    npix = c.number("npix", 8, 1024, integer=True)
    pix = c.number("pixel_arcmin", 0.0, 600.0, lo_open=True)
    c.number("kappa_exaggeration_factor", 0.0, 1000.0, lo_open=True)
    c.number("noise_uK_arcmin", 0.0, 1000.0)
    c.boolean("same_T_realisation")
    c.choice("lensing_simulate.remap", ["fourier", "bicubic"])
    c.number("lensing_simulate.chunk_samples", 1, 100_000, integer=True)
    c.number("lensing_validate.kappa_rms_nsigma", 0.0, 1000.0, lo_open=True)
    n_train = None
    for split in ("n_train", "n_val", "n_test"):
        v = c.number(f"scale.lensing.{split}", 1, 10_000_000, integer=True)
        n_train = v if split == "n_train" else n_train
    c.number("scale.lensing.epochs", 1, 100_000, integer=True)
    c.number("scale.lensing.early_stopping_patience", 1, 100_000, integer=True)
    c.number("lensing_train.batch_size", 1, n_train or 10_000_000, integer=True,
             why="the batch cannot exceed scale.lensing.n_train")
    c.number("lensing_train.learning_rate", 0.0, 10.0, lo_open=True)
    c.number("lensing_train.clipnorm", 0.0, 1e6, lo_open=True, nullable=True)
    c.choice("lensing_train.optimizer", ["adam", "sgd", "adagrad", "rmsprop"])
    c.boolean("lensing_train.augment")
    filters = c.value("lensing_net.conv_filters") or []
    kernels = c.value("lensing_net.conv_kernels") or []
    if len(filters) != len(kernels) or not filters:
        c.problems.append(
            f"lensing_net.conv_filters (len {len(filters)}) and lensing_net.conv_kernels (len {len(kernels)}) "
            "must be non-empty lists of the same length"
        )
    for i, (f, k) in enumerate(zip(filters, kernels)):
        if not (isinstance(f, int) and 1 <= f <= 4096):
            c.problems.append(f"lensing_net.conv_filters[{i}] = {f!r}: allowed integers 1 <= filters <= 4096")
        if not (isinstance(k, int) and 1 <= k <= 31 and k % 2 == 1):
            c.problems.append(f"lensing_net.conv_kernels[{i}] = {k!r}: allowed odd integers 1 <= kernel <= 31")
    c.number("lensing_net.output_kernel", 1, 31, integer=True)

    if npix is None or pix is None:
        return
    grid = FlatGrid(int(npix), float(pix))
    geom = f"the Nyquist multipole of {npix} px x {pix:g} arcmin"
    c.number("T_lmax", 2, grid.ell_nyquist, nullable=True, why=geom)
    kappa_lmax = c.number("kappa_lmax", 1.5 * grid.ell_fundamental, grid.ell_nyquist, nullable=True,
                          why=f"a {grid.side_deg:.2f} deg patch needs kappa modes in at least one rho(L) bin "
                              f"of one fundamental mode; at most {geom}")
    c.number("lensing_evaluate.n_example_maps", 1, 16, integer=True)
    top = min(kappa_lmax or grid.ell_nyquist, grid.ell_nyquist)
    span = (top - 0.5 * grid.ell_fundamental) / grid.ell_fundamental  # widest bin, in fundamentals
    c.number("lensing_evaluate.rho_bin_width_in_fundamentals", 1.0, max(span, 1.0),
             why=f"a bin needs at least one fundamental mode (L = {grid.ell_fundamental:.1f} for a "
                 f"{grid.side_deg:.2f} deg patch) and must fit below L = {top:.0f}")


def check_cenn(c: _Checker, conf_dir: str | Path = "conf") -> None:
    """Checks of the component-separation keys (sky, foregrounds, patches, network, spectra)."""
    c.choice("cenn.variant", available_options("cenn", conf_dir) or ["E", "B", "QU"])
    comps = c.value("cenn.components")
    if comps is not None and comps not in (["E"], ["B"], ["Q", "U"]):
        c.problems.append(f"cenn.components = {comps!r}: allowed [E], [B] or [Q, U]")
    nside = c.value("scale.cenn.nside")
    if nside is not None and not (isinstance(nside, int) and 16 <= nside <= 8192 and nside & (nside - 1) == 0):
        c.problems.append(f"scale.cenn.nside = {nside!r}: allowed powers of two 16 <= nside <= 8192")
        nside = None
    npix = c.value("scale.cenn.npix")
    if npix is not None and not (isinstance(npix, int) and 16 <= npix <= 2048 and npix % 16 == 0):
        c.problems.append(f"scale.cenn.npix = {npix!r}: allowed multiples of 16 (four stride-2 layers), 16 <= npix <= 2048")
        npix = None
    pix = c.number("scale.cenn.pixel_arcmin", 0.0, 120.0, lo_open=True)
    for split in ("n_train", "n_test", "n_validation"):
        c.number(f"scale.cenn.{split}", 1, 10_000_000, integer=True)
    c.number("scale.cenn.epochs", 1, 100_000, integer=True)
    c.number("sky_maps.n_cmb_realisations", 1, 1000, integer=True)
    c.number("cenn_simulate.b_min_deg", 0.0, 80.0)
    c.number("cenn_simulate.workers", 1, 256, integer=True)
    band = c.value("cenn_simulate.holdout_lon_deg")
    if band is not None and not (isinstance(band, list) and len(band) == 2 and 0 <= band[0] < band[1] <= 360):
        c.problems.append(f"cenn_simulate.holdout_lon_deg = {band!r}: allowed [lo, hi] with 0 <= lo < hi <= 360")
    c.number("instrument.target_GHz", 1.0, 1000.0)
    c.boolean("foregrounds.noise")
    c.choice("foregrounds.galactic_profile", ["cosecant", "uniform"])
    for name in ("dust", "synchrotron"):
        for key in ("A_EE", "A_BB"):
            c.number(f"foregrounds.{name}.{key}", 0.0, 1e6)
        for key in ("alpha_EE", "alpha_BB"):
            c.number(f"foregrounds.{name}.{key}", -5.0, 5.0)
        c.number(f"foregrounds.{name}.ref_GHz", 1.0, 2000.0)
        c.number(f"foregrounds.{name}.beta", -6.0, 6.0)
        template = c.value(f"foregrounds.{name}.template")
        if template is not None and not (Path("data") / str(template)).is_file():
            c.problems.append(f"foregrounds.{name}.template = {template!r}: no such file in data/ "
                              "(copy it there and run `dvc add data`, or set null for the Gaussian model)")
    c.number("foregrounds.dust.T_dust_K", 1.0, 1000.0)
    for name in ("radio", "infrared"):
        c.number(f"foregrounds.{name}.n_per_sr", 0.0, 1e7)
        s_min = c.number(f"foregrounds.{name}.s_min_Jy", 0.0, 1e4, lo_open=True)
        c.number(f"foregrounds.{name}.s_max_Jy", s_min or 0.0, 1e5, lo_open=True, why="above s_min_Jy")
        c.number(f"foregrounds.{name}.count_slope", 0.0, 5.0, lo_open=True)
        c.number(f"foregrounds.{name}.pol_sigma", 0.0, 5.0)
    c.choice("cenn_train.optimizer", ["adam", "sgd", "adagrad", "rmsprop"])
    c.number("cenn_train.learning_rate", 0.0, 10.0, lo_open=True)
    c.number("cenn_train.l2", 0.0, 1.0)
    c.number("cenn_train.batch_size", 1, 100_000, integer=True)
    c.number("cenn_train.early_stopping_patience", 1, 100_000, integer=True)
    c.number("cenn_evaluate.n_example_patches", 1, 16, integer=True)
    if npix is None or pix is None:
        return
    crop = c.number("scale.cenn.crop_pixels", 0, npix // 4 - 1, integer=True,
                    why=f"at most a quarter of the {npix}-pixel patch")
    if crop is None:
        return
    side_deg = (npix - 2 * crop) * pix / 60.0
    fundamental = 360.0 / side_deg
    top = min(3 * nside - 1 if nside else math.inf, 180.0 * 60.0 / pix)
    c.number("cenn_evaluate.apodization_deg", 0.0, side_deg / 4, lo_open=True,
             why=f"a quarter of the cropped {side_deg:.2f} deg patch")
    c.number("cenn_evaluate.bin_width", fundamental, max(fundamental, top / 2),
             why=f"NaMaster needs every bin to hold a Fourier mode: at least the fundamental 2 pi / L = "
                 f"{fundamental:.1f} of the cropped {side_deg:.2f} deg patch, and two bins below lmax {top:.0f}")
    ranges = c.value("cenn_evaluate.residual_ell_ranges") or []
    for i, r in enumerate(ranges):
        if not (isinstance(r, list) and len(r) == 2 and 0 <= r[0] < r[1]):
            c.problems.append(f"cenn_evaluate.residual_ell_ranges[{i}] = {r!r}: allowed [lo, hi] with 0 <= lo < hi")


def check_mlflow(c: _Checker) -> None:
    for key in ("mlflow.tracking_uri", "mlflow.lensing_experiment", "mlflow.lensing_registered_model",
                "mlflow.cenn_experiment", "mlflow.cenn_registered_model_prefix"):
        v = c.value(key)
        if v is not None and (not isinstance(v, str) or not v):
            c.problems.append(f"{key} = {v!r}: must be a non-empty string")


CHECKS: dict[str, list[Callable[[_Checker], None]]] = {
    "spectra": [check_cosmology, check_spectra],
    "lensing": [check_cosmology, check_spectra, check_lensing, check_mlflow],
    "cenn": [check_cosmology, check_spectra, check_cenn, check_mlflow],
}


def validate(params: Mapping[str, Any], sections: list[str] | None = None, source: str = "params.yaml") -> None:
    """Check ``params`` for the named sections (default: all) and raise :class:`ParamError`."""
    c = _Checker(params)
    done = set()
    for section in sections or list(CHECKS):
        for check in CHECKS[section]:
            if check not in done:
                check(c)
                done.add(check)
    if c.problems:
        raise ParamError(c.problems, source)


def required_spectra_lmax(params: Mapping[str, Any]) -> int:
    """Highest multipole the simulations of this parameter set need from CAMB (<= spectra.lmax).

    The lensing patch's band limits and the CENN skies' ``3 nside - 1``. A band limit of ``null`` means every grid mode, up to the grid's corner
    ``sqrt(2) * ell_Nyquist``.
    """
    grid = lensing_grid(params)
    corner = math.ceil(math.sqrt(2.0) * grid.ell_nyquist) + 1
    need = [corner if params.get(k) is None else int(math.ceil(params[k])) for k in ("T_lmax", "kappa_lmax")]
    need.append(3 * int(params["scale"]["cenn"]["nside"]) - 1)  # HEALPix band limit of the CENN skies
    return max(need + [100])
