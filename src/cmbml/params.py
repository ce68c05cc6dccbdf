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


def check_mlflow(c: _Checker) -> None:
    for key in ("mlflow.tracking_uri", "mlflow.lensing_experiment", "mlflow.lensing_registered_model"):
        v = c.value(key)
        if v is not None and (not isinstance(v, str) or not v):
            c.problems.append(f"{key} = {v!r}: must be a non-empty string")


CHECKS: dict[str, list[Callable[[_Checker], None]]] = {
    "spectra": [check_cosmology, check_lensing],
    "lensing": [check_cosmology, check_lensing, check_mlflow],
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
    """Highest multipole any simulation in this parameter set needs from CAMB.

    A band limit of ``null`` means every grid mode, up to the grid's corner
    ``sqrt(2) * ell_Nyquist``.
    """
    grid = lensing_grid(params)
    corner = math.ceil(math.sqrt(2.0) * grid.ell_nyquist) + 1
    need = [corner if params.get(k) is None else int(math.ceil(params[k])) for k in ("T_lmax", "kappa_lmax")]
    return max(need + [100])
