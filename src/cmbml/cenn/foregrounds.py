"""Polarized foregrounds: Galactic dust and synchrotron, radio and infrared point sources.

Units. Amplitudes are given in Rayleigh-Jeans brightness temperature at a reference frequency;
every map this module returns is in CMB thermodynamic uK at the requested frequency. The one
conversion is :func:`rj_to_cmb`, ``dT_CMB / dT_RJ = (e^x - 1)^2 / (x^2 e^x)`` with
``x = h nu / (k T_CMB)``.

Spectral energy distributions (in RJ temperature):

- dust, modified black body: ``T_RJ(nu) / T_RJ(nu0) = (nu / nu0)^(beta_d + 1) (e^{x0} - 1) / (e^{x} - 1)``,
  ``x = h nu / (k T_d)``;
- synchrotron, power law: ``(nu / nu0)^beta_s``;
- point sources: flux density ``S(nu) = S(nu0) (nu / nu0)^alpha``, converted to temperature in a pixel
  of solid angle Omega with ``dB/dT``.

Components. Each component of the sky is one class registered in :data:`COMPONENTS` under the name of its
parameter block (``foregrounds.<name>``): its ``Params`` (a pydantic model of the block: types, ranges, units),
its ``check`` (what the block's types cannot show: files in ``data/``, the needs of the sky model), its SED and
an explicit random-stream id, so that a component's sky never depends on which other components exist.
A diffuse Galactic component subclasses :class:`DiffuseComponent`, a point-source population
:class:`PointSourceComponent`; adding one is that class and its block in ``conf/foregrounds/``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from cmbml.cenn.pysm_sky import PRESET_COMPONENTS
from cmbml.cenn.source_counts import SourceCounts
from cmbml.common.registry import Registry

if TYPE_CHECKING:
    from cmbml.common.params import Checker

H_PLANCK = 6.62607015e-34  # J s
K_BOLTZMANN = 1.380649e-23  # J / K
C_LIGHT = 2.99792458e8  # m / s
T_CMB = 2.7255  # K
JY = 1e-26  # W / m^2 / Hz


def _x(freq_ghz, temperature_k):
    return H_PLANCK * np.asarray(freq_ghz, dtype=float) * 1e9 / (K_BOLTZMANN * temperature_k)


def rj_to_cmb(freq_ghz) -> np.ndarray:
    """Factor converting a Rayleigh-Jeans temperature fluctuation to CMB thermodynamic units."""
    x = _x(freq_ghz, T_CMB)
    return np.expm1(x) ** 2 / (x**2 * np.exp(x))


def dust_sed_rj(freq_ghz, ref_ghz: float, beta: float, temperature_k: float) -> np.ndarray:
    """Modified black body in RJ temperature, normalised to 1 at ``ref_ghz``."""
    nu = np.asarray(freq_ghz, dtype=float)
    return (nu / ref_ghz) ** (beta + 1.0) * np.expm1(_x(ref_ghz, temperature_k)) / np.expm1(_x(nu, temperature_k))


def synchrotron_sed_rj(freq_ghz, ref_ghz: float, beta: float) -> np.ndarray:
    """Power law in RJ temperature, normalised to 1 at ``ref_ghz``."""
    return (np.asarray(freq_ghz, dtype=float) / ref_ghz) ** beta


def db_dt_cmb(freq_ghz) -> np.ndarray:
    """dB_nu/dT at T_CMB in W / m^2 / Hz / sr / K."""
    nu = np.asarray(freq_ghz, dtype=float) * 1e9
    x = _x(freq_ghz, T_CMB)
    return 2.0 * K_BOLTZMANN * nu**2 / C_LIGHT**2 * x**2 * np.exp(x) / np.expm1(x) ** 2


def jy_to_cmb_uk(freq_ghz, solid_angle_sr: float) -> np.ndarray:
    """uK_CMB produced by 1 Jy spread over ``solid_angle_sr``."""
    return JY / (db_dt_cmb(freq_ghz) * solid_angle_sr) * 1e6


def power_law_cl(lmax: int, amplitude_dl: float, alpha: float, ell_ref: float = 80.0, ell_min: int = 2) -> np.ndarray:
    """``C_ell`` of ``D_ell = A (ell / ell_ref)^alpha``; zero below ``ell_min``."""
    ell = np.arange(lmax + 1, dtype=float)
    cl = np.zeros(lmax + 1)
    sel = ell >= ell_min
    cl[sel] = 2.0 * np.pi * amplitude_dl * (ell[sel] / ell_ref) ** alpha / (ell[sel] * (ell[sel] + 1.0))
    return cl


@dataclass(frozen=True)
class GaussianForeground:
    """A Gaussian polarized foreground with power-law EE/BB spectra at a reference frequency (uK_RJ^2)."""

    a_ee: float
    a_bb: float
    alpha_ee: float
    alpha_bb: float
    ref_ghz: float

    def qu_map_rj(self, nside: int, lmax: int, rng: np.random.Generator) -> np.ndarray:
        """(Q, U) at the reference frequency, uK_RJ."""
        from cmbml.cenn.fullsky import gaussian_alm
        from cmbml.common.sht import synthesis

        zero = np.zeros(lmax + 1)
        alm = gaussian_alm(
            zero,
            power_law_cl(lmax, self.a_ee, self.alpha_ee),
            power_law_cl(lmax, self.a_bb, self.alpha_bb),
            zero,
            lmax,
            rng,
        )
        return synthesis(alm[1:], nside, spin=2)


def unit_gaussian_field(cl: np.ndarray, nside: int, rng: np.random.Generator) -> np.ndarray:
    """A Gaussian scalar field with spectrum shape ``cl`` (ell 0 ignored), rescaled to unit pixel variance.

    The variance of a field with spectrum ``C_ell`` is ``sum (2 ell + 1) C_ell / (4 pi)``; dividing by its
    square root makes the ensemble variance exactly 1 (the pixel window is not applied).
    """
    import healpy as hp

    from cmbml.common.sht import synthesis

    cl = np.array(cl, dtype=float)
    cl[0] = 0.0
    ell, m = hp.Alm.getlm(cl.size - 1)
    norm = np.sqrt(np.sum((2 * np.arange(cl.size) + 1) * cl) / (4 * np.pi))
    # unit complex Gaussian for m > 0, unit real Gaussian for m = 0
    g = (rng.standard_normal(ell.size) + 1j * rng.standard_normal(ell.size)) / np.sqrt(2.0)
    g[m == 0] = rng.standard_normal(int((m == 0).sum()))
    return synthesis(np.sqrt(cl[ell]) / norm * g, nside)


def smoothed_spectrum(cl: np.ndarray, bins_per_decade: int = 12) -> np.ndarray:
    """``cl`` averaged in logarithmic multipole bins (weights 2 ell + 1), interpolated back onto every
    ell >= 2 in log-log: the expected spectrum of a realisation, without its cosmic variance."""
    ell = np.arange(cl.size)
    edges = np.unique(
        np.round(np.logspace(np.log10(2), np.log10(cl.size), 1 + int(bins_per_decade * np.log10(cl.size / 2))))
    )
    centres, means = [], []
    for lo, hi in zip(edges[:-1].astype(int), edges[1:].astype(int)):
        w = 2 * ell[lo:hi] + 1.0
        centres.append(np.sum(w * ell[lo:hi]) / w.sum())
        means.append(np.sum(w * cl[lo:hi]) / w.sum())
    out = np.zeros_like(cl, dtype=float)
    out[2:] = np.exp(np.interp(np.log(ell[2:]), np.log(centres), np.log(np.maximum(means, 1e-300))))
    return out


@dataclass(frozen=True)
class NonGaussianForeground:
    """A filamentary, non-Gaussian polarized foreground whose mean EE and BB spectra are power laws.

    Construction at the reference frequency (uK_RJ):

    1. the polarized intensity is log-normal, ``P = exp(s g - s^2 / 2)`` with ``g`` a unit Gaussian
       field whose spectrum has the slope of the target EE (``C_ell ~ ell^(alpha_EE - 2)``) and ``s``
       the rms of ``ln P``: bright, sparse structures on a faint background;
    2. the polarization angle ``psi`` is its own Gaussian field with the same slope and an rms of
       ``angle_sigma_deg``: coherent where the field is ordered, tangled elsewhere;
    3. ``Q = P cos 2 psi``, ``U = P sin 2 psi`` are split into E and B and each is multiplied by the
       smooth filter ``sqrt(C_target / C_smooth)``, with ``C_smooth`` the realisation's own spectrum
       averaged in log-multipole bins. The filter is smooth, so the realisation keeps its cosmic
       variance and its non-Gaussian phases while its mean EE and BB take the target amplitudes and
       slopes (the EE/BB ratio of the real dust sky comes from the parameters, not from the construction).
    """

    a_ee: float
    a_bb: float
    alpha_ee: float
    alpha_bb: float
    ref_ghz: float
    ln_intensity_sigma: float
    angle_sigma_deg: float

    def qu_map_rj(self, nside: int, lmax: int, rng: np.random.Generator) -> np.ndarray:
        """(Q, U) at the reference frequency, uK_RJ."""
        import healpy as hp

        from cmbml.common.sht import analysis, synthesis

        shape = power_law_cl(lmax, 1.0, self.alpha_ee)
        s = self.ln_intensity_sigma
        intensity = np.exp(s * unit_gaussian_field(shape, nside, rng) - 0.5 * s**2)
        angle = np.radians(self.angle_sigma_deg) * unit_gaussian_field(shape, nside, rng)
        qu = np.stack([intensity * np.cos(2 * angle), intensity * np.sin(2 * angle)])
        del intensity, angle
        alm_e, alm_b = analysis(qu, lmax, spin=2, iterations=0)
        del qu
        for alm, amplitude, alpha in ((alm_e, self.a_ee, self.alpha_ee), (alm_b, self.a_bb, self.alpha_bb)):
            target = power_law_cl(lmax, amplitude, alpha)
            smooth = smoothed_spectrum(hp.alm2cl(alm))
            gain = np.sqrt(np.divide(target, smooth, out=np.zeros_like(target), where=smooth > 0))
            alm[:] = hp.almxfl(alm, gain)
        return synthesis(np.stack([alm_e, alm_b]), nside, spin=2)


def spectral_parameter_map(
    mean: float, scatter: float, fwhm_deg: float, nside: int, rng: np.random.Generator, floor: float | None = None
) -> np.ndarray | float:
    """A spectral parameter across the sky: ``mean + scatter * u`` with ``u`` a unit Gaussian field
    smoothed by a Gaussian of ``fwhm_deg`` (white noise times the beam); ``mean`` itself when
    ``scatter`` is 0. Values below ``floor`` (if given) are raised to it."""
    if scatter == 0:
        return float(mean)
    from cmbml.cenn.fullsky import gauss_beam

    lmax = int(min(3 * nside - 1, max(8 * 180.0 / fwhm_deg, 16)))  # the beam is 1e-9 beyond
    field = mean + scatter * unit_gaussian_field(gauss_beam(fwhm_deg * 60.0, lmax) ** 2, nside, rng)
    return field if floor is None else np.maximum(field, floor)


@dataclass(frozen=True)
class SourcePopulation:
    """Polarized point sources with tabulated counts at ``ref_ghz`` (:class:`SourceCounts`), cut to
    ``s_min_jy <= S <= s_max_jy``, and a power-law spectrum ``S ~ nu^spectral_index``.

    Polarization fractions are log-normal: ``ln(Pi / %) ~ N(mu, sigma)``; angles are uniform.
    """

    counts: SourceCounts | None  # needed to draw a catalogue, not to paint one
    s_min_jy: float
    s_max_jy: float
    spectral_index: float
    ref_ghz: float
    pol_mu: float
    pol_sigma: float

    def catalogue(self, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """Positions (theta, phi), flux at ref_ghz (Jy), polarization fraction and angle over the whole sky:
        a Poisson number of sources with mean ``4 pi N(>s_min)``, fluxes drawn from the counts (inverse CDF)."""
        grid, n_above = self.counts.cumulative(self.s_min_jy, self.s_max_jy)
        n = rng.poisson(4.0 * np.pi * n_above[0])
        u = rng.uniform(size=n) * n_above[0]
        flux = np.exp(np.interp(u, n_above[::-1], np.log(grid[::-1])))
        return {
            "theta": np.arccos(rng.uniform(-1.0, 1.0, size=n)),
            "phi": rng.uniform(0.0, 2.0 * np.pi, size=n),
            "flux_jy": flux,
            "pol_fraction": np.exp(rng.normal(self.pol_mu, self.pol_sigma, size=n)) / 100.0,
            "pol_angle": rng.uniform(0.0, np.pi, size=n),
        }

    def qu_map(
        self, catalogue: Mapping[str, np.ndarray], nside: int, freq_ghz: float, flux_ratio: float | None = None
    ) -> np.ndarray:
        """(Q, U) in uK_CMB at ``freq_ghz``: each source in its pixel (the beam is applied later).

        ``flux_ratio``: ``S(freq_ghz) / S(ref_ghz)``, the same for every source; default the power law
        ``(freq_ghz / ref_ghz)^spectral_index``.
        """
        import healpy as hp

        if flux_ratio is None:
            flux_ratio = (freq_ghz / self.ref_ghz) ** self.spectral_index
        pix = hp.ang2pix(nside, catalogue["theta"], catalogue["phi"])
        pol_flux = catalogue["flux_jy"] * np.minimum(catalogue["pol_fraction"], 1.0)
        pol_flux = pol_flux * flux_ratio
        to_uk = jy_to_cmb_uk(freq_ghz, hp.nside2pixarea(nside))
        out = np.zeros((2, hp.nside2npix(nside)))
        np.add.at(out[0], pix, to_uk * pol_flux * np.cos(2 * catalogue["pol_angle"]))
        np.add.at(out[1], pix, to_uk * pol_flux * np.sin(2 * catalogue["pol_angle"]))
        return out


def gaussian_foreground_from_params(p: Mapping) -> GaussianForeground:
    """Dust or synchrotron Gaussian sky from its parameter block (A_EE, A_BB, alpha_EE, alpha_BB, ref_GHz)."""
    return GaussianForeground(p["A_EE"], p["A_BB"], p["alpha_EE"], p["alpha_BB"], p["ref_GHz"])


def galactic_foreground_from_params(p: Mapping, model: str):
    """The dust or synchrotron sky of ``model`` (``gaussian`` or ``nongaussian``) from its parameter block."""
    if model == "nongaussian":
        return NonGaussianForeground(
            p["A_EE"],
            p["A_BB"],
            p["alpha_EE"],
            p["alpha_BB"],
            p["ref_GHz"],
            p["ln_intensity_sigma"],
            p["angle_sigma_deg"],
        )
    return gaussian_foreground_from_params(p)


def sources_from_params(p: Mapping, counts: SourceCounts | None = None) -> SourcePopulation:
    """A radio or infrared population from its parameter block, with its counts table (read by the caller)."""
    return SourcePopulation(
        counts, p["s_min_Jy"], p["s_max_Jy"], p["spectral_index"], p["ref_GHz"], p["pol_mu"], p["pol_sigma"]
    )


def galactic_profile(nside: int, b_floor_deg: float = 5.0, b_norm_deg: float = 30.0) -> np.ndarray:
    """Latitude modulation of Galactic emission, ``1 / sin|b|`` (a plane-parallel slab), capped at
    ``b_floor_deg`` and normalised so that its mean square over ``|b| > b_norm_deg`` is 1.

    A Gaussian sky multiplied by it keeps the model's power at high latitude and brightens
    towards the plane, so patch contamination depends on latitude as on the real sky.
    """
    from cmbml.cenn.fullsky import galactic_latitude_deg

    sin_b = np.abs(np.sin(np.radians(galactic_latitude_deg(nside))))
    profile = 1.0 / np.maximum(sin_b, np.sin(np.radians(b_floor_deg)))
    high = sin_b > np.sin(np.radians(b_norm_deg))
    return profile / np.sqrt(np.mean(profile[high] ** 2))


MODEL_STREAMS = {"gaussian": 0, "nongaussian": 1, "pysm": 2}
"""Each foreground model draws from its own generator streams: two models' skies are independent, and one
model's sky is the same whichever role (training or unseen evaluation sky) it plays."""

PYSM_REPLACES = frozenset(PRESET_COMPONENTS.values())
"""The diffuse components that PySM's presets replace under ``foregrounds.model: pysm`` (dust, synchrotron); the
point sources stay this project's."""

COMPONENT_STREAMS = 5
"""A component's realisation draws from ``default_rng([seed, 5, model stream, component.stream])``."""

SPECTRAL_STREAMS = 6
"""A spectral parameter's map draws from ``default_rng([seed, 6, model stream, parameter.stream])``."""


@dataclass(frozen=True)
class SpectralParameter:
    """A spectral parameter of a diffuse component that may vary across the sky (:func:`spectral_parameter_map`).

    Attributes
    ----------
    key : str
        Its name in :attr:`ForegroundSky.spectral` (``"beta_dust"``), unique over the components.
    mean : str
        The block key of its mean (``"beta"``), also the name the component's SED reads it by.
    scatter : str
        The block key of its rms across the sky (``"beta_scatter"``); absent or 0: the mean everywhere.
    stream : int
        Its generator stream (:data:`SPECTRAL_STREAMS`), unique over the components' spectral parameters.
    floor_fraction : float or None
        Values below this fraction of the mean are raised to it (keeps a temperature positive).
    """

    key: str
    mean: str
    scatter: str
    stream: int
    floor_fraction: float | None = None


@dataclass(frozen=True)
class SkyDraw:
    """What a component's realisation may use besides its own block: the resolution, the sky model
    (``foregrounds.model``), the Galactic latitude profile ((npix,) or 1.0), what was read from ``data/``
    (templates ``{name: (2, npix)}`` in uK_RJ at ``ref_GHz``, counts tables ``{name: SourceCounts}``) and, for
    the ``pysm`` model, the PySM emission of each diffuse component it replaces
    (``{name: cmbml.cenn.pysm_sky.PysmEmission}``)."""

    nside: int
    model: str
    profile: np.ndarray | float
    templates: Mapping[str, np.ndarray]
    counts: Mapping[str, SourceCounts]
    pysm: Mapping[str, Any] = field(default_factory=dict)

    @property
    def lmax(self) -> int:
        return 3 * self.nside - 1


class ComponentRegistry(Registry):
    """The foreground components, refusing a stream id already taken.

    Two components on one stream would draw the same random numbers and their skies would be silently
    correlated; the ids are therefore explicit and checked here, never derived from the order of registration.
    """

    def register(self, entry=None, *, name: str | None = None):
        def add(cls):
            if name is not None and name != getattr(cls, "name", None):
                raise ValueError(
                    f"{self.key}: {cls.__name__} is registered as {name!r} but reads the block "
                    f"{getattr(cls, 'name', None)!r}; a component's name is its block's"
                )
            self._refuse_taken_streams(cls)
            return Registry.register(self, cls)

        return add(entry) if entry is not None else add

    def _refuse_taken_streams(self, cls) -> None:
        for attr in ("name", "stream", "Params"):
            if not hasattr(cls, attr):
                raise TypeError(f"{self.key}: {cls.__name__} has no {attr!r}")
        others = [(n, c) for n, c in self.items() if n != cls.name]  # a duplicate name is refused by Registry
        ids = [sp.stream for sp in cls.spectral_parameters]
        if (
            not isinstance(cls.stream, int)
            or isinstance(cls.stream, bool)
            or cls.stream < 0
            or any(not isinstance(i, int) or isinstance(i, bool) or i < 0 for i in ids)
        ):
            raise ValueError(f"{self.key}.{cls.name}: stream ids must be integers >= 0")
        taken = {c.stream: n for n, c in others}
        if cls.stream in taken:
            raise ValueError(
                f"{self.key}.{cls.name}: stream {cls.stream} is already {taken[cls.stream]}'s (two "
                f"components on one stream draw correlated skies); free ids start at {max(taken) + 1}"
            )
        spectral = {sp.stream: f"{n}.{sp.key}" for n, c in others for sp in c.spectral_parameters}
        keys = {sp.key: n for n, c in others for sp in c.spectral_parameters}
        if len(set(ids)) < len(ids) or len({sp.key for sp in cls.spectral_parameters}) < len(ids):
            raise ValueError(f"{self.key}.{cls.name}: its spectral parameters repeat a stream id or a key")
        for sp in cls.spectral_parameters:
            if sp.stream in spectral:
                raise ValueError(
                    f"{self.key}.{cls.name}: spectral parameter {sp.key!r} takes stream {sp.stream}, "
                    f"already {spectral[sp.stream]}'s; free ids start at {max(spectral) + 1}"
                )
            if sp.key in keys:
                raise ValueError(f"{self.key}.{cls.name}: spectral parameter {sp.key!r} is already {keys[sp.key]}'s")


COMPONENTS: ComponentRegistry = ComponentRegistry("foregrounds")
"""The foreground components of every sky, by block name, summed in registration order."""


class Block(BaseModel):
    """A component's parameter block: unknown keys and values of the wrong type (a string, a boolean for a
    number) are refused."""

    model_config = ConfigDict(extra="forbid", strict=True)


class ForegroundComponent:
    """A registered foreground component.

    Attributes
    ----------
    name : str
        Its parameter block, ``foregrounds.<name>``, and its name in the stage's outputs.
    stream : int
        Its generator stream (:data:`COMPONENT_STREAMS`), unique over the components and fixed for good: a
        component's sky is the same whichever components are registered beside it.
    Params : type[Block]
        The pydantic model of its block (types, ranges, units in the field descriptions).
    spectral_parameters : tuple of SpectralParameter
        Parameters of its SED that may vary across the sky.
    realisation : str
        The :class:`ForegroundSky` attribute holding its frequency-independent realisation.
    """

    name: ClassVar[str]
    stream: ClassVar[int]
    Params: ClassVar[type[Block]]
    spectral_parameters: ClassVar[tuple[SpectralParameter, ...]] = ()
    realisation: ClassVar[str] = "galactic"

    @classmethod
    def draw(cls, p: Mapping, sky: SkyDraw, rng: np.random.Generator) -> Any:
        """Its frequency-independent realisation from its block ``p``."""
        raise NotImplementedError

    @classmethod
    def at_frequency(cls, p: Mapping, realisation: Any, spectral: Mapping, nside: int, freq_ghz: float) -> np.ndarray:
        """(Q, U) (2, npix) in uK_CMB at ``freq_ghz``; ``spectral`` is :attr:`ForegroundSky.spectral`."""
        raise NotImplementedError

    @classmethod
    def check(cls, c: Checker, key: str, data_dir: str | Path | None) -> None:
        """What :attr:`Params` cannot see in the block at ``key`` (``"foregrounds.dust"``): files in
        ``data_dir``, the needs of the sky model. Problems go to ``c``."""


class DiffuseParams(Block):
    """Keys common to diffuse components: EE and BB power laws ``D_ell = A (ell / 80)^alpha`` at ``ref_GHz``."""

    A_EE: float = Field(ge=0.0, le=1e6, description="D_ell^EE at ell = 80 and ref_GHz, uK_RJ^2")
    A_BB: float = Field(ge=0.0, le=1e6, description="D_ell^BB at ell = 80 and ref_GHz, uK_RJ^2")
    alpha_EE: float = Field(ge=-5.0, le=5.0, description="slope of D_ell^EE against ell (dimensionless)")
    alpha_BB: float = Field(ge=-5.0, le=5.0, description="slope of D_ell^BB against ell (dimensionless)")
    ref_GHz: float = Field(ge=1.0, le=2000.0, description="frequency of the amplitudes and of the template, GHz")
    template: str | None = Field(
        min_length=1,
        description=(
            "HEALPix FITS file in data/ with (Q, U) at ref_GHz in uK_RJ, used instead of a drawn sky; or null"
        ),
    )
    ln_intensity_sigma: float | None = Field(
        None, ge=0.0, le=3.0, description=("nongaussian model: rms of ln(polarized intensity) (dimensionless)")
    )
    angle_sigma_deg: float | None = Field(
        None, ge=0.0, le=180.0, description=("nongaussian model: rms of the polarization-angle field, deg")
    )


class DiffuseComponent(ForegroundComponent):
    """Diffuse Galactic emission.

    Its realisation is (Q, U) (2, npix) at ``ref_GHz`` in uK_RJ: the block's ``template`` from ``data/`` when
    one is named, else drawn by the sky model (:func:`galactic_foreground_from_params`) and multiplied by the
    latitude profile. Each channel is that map times :meth:`sed_rj` and :func:`rj_to_cmb`, pixel by pixel
    where a spectral parameter varies across the sky.

    Under the ``pysm`` model a component that PySM's presets replace
    (:data:`cmbml.cenn.pysm_sky.PRESET_COMPONENTS`) is instead PySM's emission of its presets, evaluated per
    channel (:class:`cmbml.cenn.pysm_sky.PysmEmission`), or nothing (zero maps) when no preset replaces it.
    """

    Params: ClassVar[type[Block]] = DiffuseParams

    @staticmethod
    def sed_rj(freq_ghz, p: Mapping, values: Mapping) -> np.ndarray:
        """``T_RJ(freq) / T_RJ(ref_GHz)``; ``values[parameter.mean]`` is each spectral parameter, a number or
        a (npix,) map."""
        raise NotImplementedError

    @classmethod
    def draw(cls, p: Mapping, sky: SkyDraw, rng: np.random.Generator) -> Any:
        if sky.model == "pysm" and cls.name in PYSM_REPLACES:
            return sky.pysm.get(cls.name)  # None: no preset of the pysm block replaces it
        if cls.name in sky.templates:
            return sky.templates[cls.name]
        qu = galactic_foreground_from_params(p, sky.model).qu_map_rj(sky.nside, sky.lmax, rng)
        qu *= sky.profile
        return qu

    @classmethod
    def scale(cls, qu_rj_ref: np.ndarray, freq_ghz: float, p: Mapping, values: Mapping) -> np.ndarray:
        """(Q, U) in uK_CMB at ``freq_ghz`` from the reference-frequency map in uK_RJ."""
        return qu_rj_ref * (cls.sed_rj(freq_ghz, p, values) * rj_to_cmb(freq_ghz))

    @classmethod
    def at_frequency(cls, p: Mapping, realisation: Any, spectral: Mapping, nside: int, freq_ghz: float) -> np.ndarray:
        if realisation is None:  # a pysm sky without a preset for this component
            return np.zeros((2, 12 * nside**2))
        if not isinstance(realisation, np.ndarray):  # a PysmEmission: PySM's own SED, already in uK_CMB
            return realisation.qu_cmb(freq_ghz, nside)
        return cls.scale(realisation, freq_ghz, p, {sp.mean: spectral[sp.key] for sp in cls.spectral_parameters})

    @classmethod
    def check(cls, c: Checker, key: str, data_dir: str | Path | None) -> None:
        block = c.value(key)
        if not isinstance(block, Mapping):
            return
        if c.value(f"{key.rpartition('.')[0]}.model") == "nongaussian":
            for field in ("ln_intensity_sigma", "angle_sigma_deg"):
                if block.get(field) is None:
                    c.fail(f"{key}.{field}: missing; the nongaussian model needs it")
        if block.get("template") is not None and data_dir is not None:
            c.file_in_repository(
                f"{key}.template",
                relative_to=data_dir,
                hint=" (copy it into data/ and run `dvc add data`, or set null for a drawn sky)",
            )


class SourceParams(Block):
    """Keys of a point-source population: its counts table, flux cuts, spectrum and polarization fractions."""

    counts_table: str = Field(
        min_length=1,
        description=(
            "CSV in data/ with S_Jy and dN_dS (Jy^-1 sr^-1) at ref_GHz (cmbml.cenn.source_counts.SourceCounts)"
        ),
    )
    ref_GHz: float = Field(ge=1.0, le=2000.0, description="frequency of the counts table, GHz")
    s_min_Jy: float = Field(gt=0.0, le=1e4, description="faintest source drawn, Jy at ref_GHz")
    s_max_Jy: float = Field(gt=0.0, le=1e5, description="brightest source drawn, Jy at ref_GHz (above s_min_Jy)")
    spectral_index: float = Field(ge=-10.0, le=10.0, description="alpha of S ~ nu^alpha (dimensionless)")
    pol_mu: float = Field(ge=-10.0, le=10.0, description="mean of ln(polarization fraction / %)")
    pol_sigma: float = Field(ge=0.0, le=5.0, description="rms of ln(polarization fraction / %)")

    @model_validator(mode="after")
    def _cuts_in_order(self):
        if self.s_max_Jy <= self.s_min_Jy:
            raise ValueError(f"s_max_Jy = {self.s_max_Jy} must lie above s_min_Jy = {self.s_min_Jy}")
        return self


class PointSourceComponent(ForegroundComponent):
    """Extragalactic point sources.

    Its realisation is a full-sky catalogue (:meth:`SourcePopulation.catalogue`) drawn from the counts table in
    ``data/`` named by the block's ``counts_table``; each channel paints it into the pixels with the flux ratio
    of :meth:`sed`.
    """

    Params: ClassVar[type[Block]] = SourceParams
    realisation: ClassVar[str] = "catalogues"

    @staticmethod
    def sed(freq_ghz: float, p: Mapping) -> float:
        """Flux-density ratio ``S(freq) / S(ref_GHz) = (freq / ref_GHz)^spectral_index``."""
        return (freq_ghz / p["ref_GHz"]) ** p["spectral_index"]

    @classmethod
    def read_counts(cls, p: Mapping, data_dir: str | Path) -> SourceCounts:
        return SourceCounts.read(Path(data_dir) / p["counts_table"])

    @classmethod
    def draw(cls, p: Mapping, sky: SkyDraw, rng: np.random.Generator) -> dict[str, np.ndarray]:
        return sources_from_params(p, sky.counts[cls.name]).catalogue(rng)

    @classmethod
    def at_frequency(
        cls, p: Mapping, realisation: Mapping, spectral: Mapping, nside: int, freq_ghz: float
    ) -> np.ndarray:
        return sources_from_params(p).qu_map(realisation, nside, freq_ghz, cls.sed(freq_ghz, p))

    @classmethod
    def check(cls, c: Checker, key: str, data_dir: str | Path | None) -> None:
        block = c.value(key)
        if not isinstance(block, Mapping) or data_dir is None:
            return
        table = c.file_in_repository(
            f"{key}.counts_table",
            relative_to=data_dir,
            hint=" (a counts table S_Jy, dN_dS in data/, tracked by data.dvc)",
        )
        s_min, s_max = block.get("s_min_Jy"), block.get("s_max_Jy")
        if table is not None and isinstance(s_min, (int, float)) and isinstance(s_max, (int, float)):
            try:
                SourceCounts.read(table).cumulative(s_min, s_max, n_grid=2)
            except (ValueError, KeyError, OSError) as err:
                c.fail(
                    f"{key}.counts_table = {block['counts_table']!r} with s_min_Jy = {s_min!r}, "
                    f"s_max_Jy = {s_max!r}: {err}"
                )


@COMPONENTS.register
class Dust(DiffuseComponent):
    """Thermal dust: a modified black body of index ``beta`` and temperature ``T_dust_K``, both of which may
    vary across the sky."""

    name: ClassVar[str] = "dust"
    stream: ClassVar[int] = 0
    spectral_parameters: ClassVar[tuple[SpectralParameter, ...]] = (
        SpectralParameter("beta_dust", "beta", "beta_scatter", stream=0),
        SpectralParameter("T_dust_K", "T_dust_K", "T_dust_scatter_K", stream=1, floor_fraction=0.5),
    )

    class Params(DiffuseParams):
        beta: float = Field(ge=-6.0, le=6.0, description="modified black-body index beta_d (dimensionless)")
        T_dust_K: float = Field(ge=1.0, le=1000.0, description="dust temperature T_d, K")
        beta_scatter: float = Field(ge=0.0, le=0.5, description="rms of beta_d across the sky")
        T_dust_scatter_K: float = Field(ge=0.0, le=5.0, description="rms of T_d across the sky, K")

    @staticmethod
    def sed_rj(freq_ghz, p: Mapping, values: Mapping) -> np.ndarray:
        return dust_sed_rj(freq_ghz, p["ref_GHz"], values["beta"], values["T_dust_K"])


@COMPONENTS.register
class Synchrotron(DiffuseComponent):
    """Synchrotron: a power law of index ``beta`` in RJ temperature, which may vary across the sky."""

    name: ClassVar[str] = "synchrotron"
    stream: ClassVar[int] = 1
    spectral_parameters: ClassVar[tuple[SpectralParameter, ...]] = (
        SpectralParameter("beta_synchrotron", "beta", "beta_scatter", stream=2),
    )

    class Params(DiffuseParams):
        beta: float = Field(ge=-6.0, le=6.0, description="power-law index beta_s in RJ temperature (dimensionless)")
        beta_scatter: float = Field(ge=0.0, le=0.5, description="rms of beta_s across the sky")

    @staticmethod
    def sed_rj(freq_ghz, p: Mapping, values: Mapping) -> np.ndarray:
        return synchrotron_sed_rj(freq_ghz, p["ref_GHz"], values["beta"])


@COMPONENTS.register
class Radio(PointSourceComponent):
    """Radio sources (synchrotron-dominated, falling spectra)."""

    name: ClassVar[str] = "radio"
    stream: ClassVar[int] = 2


@COMPONENTS.register
class Infrared(PointSourceComponent):
    """Dusty star-forming galaxies (rising spectra)."""

    name: ClassVar[str] = "infrared"
    stream: ClassVar[int] = 3


def scale_dust(qu_rj_ref: np.ndarray, freq_ghz: float, p: Mapping, beta=None, temperature_k=None) -> np.ndarray:
    """Dust (Q, U) at ``freq_ghz`` in uK_CMB from the reference-frequency RJ map; ``beta`` and
    ``temperature_k`` (numbers or per-pixel maps) default to the block's ``beta`` and ``T_dust_K``."""
    return Dust.scale(
        qu_rj_ref,
        freq_ghz,
        p,
        {
            "beta": p["beta"] if beta is None else beta,
            "T_dust_K": p["T_dust_K"] if temperature_k is None else temperature_k,
        },
    )


def scale_synchrotron(qu_rj_ref: np.ndarray, freq_ghz: float, p: Mapping, beta=None) -> np.ndarray:
    """Synchrotron (Q, U) at ``freq_ghz`` in uK_CMB from the reference-frequency RJ map; ``beta`` (a number
    or a per-pixel map) defaults to the block's ``beta``."""
    return Synchrotron.scale(qu_rj_ref, freq_ghz, p, {"beta": p["beta"] if beta is None else beta})


def component_block(fg: Mapping, name: str) -> Mapping:
    """``fg[name]``, the block of a registered component; a missing one is named with where it belongs."""
    try:
        return fg[name]
    except KeyError:
        raise KeyError(
            f"foregrounds.{name}: missing; every registered component needs its block (conf/foregrounds/gaussian.yaml)"
        ) from None


def load_source_counts(fg: Mapping, data_dir) -> dict[str, SourceCounts]:
    """The counts tables of the point-source components, named by ``fg[name]["counts_table"]`` (relative to
    ``data_dir``)."""
    return {
        name: comp.read_counts(component_block(fg, name), data_dir)
        for name, comp in COMPONENTS.items()
        if issubclass(comp, PointSourceComponent)
    }


@dataclass
class ForegroundSky:
    """The frequency-independent foreground sky, from which every channel is scaled.

    Attributes
    ----------
    galactic : dict
        Diffuse components (``"dust"``, ``"synchrotron"``) -> (Q, U) (2, npix) at the component's reference
        frequency, uK_RJ.
    spectral : dict
        Spectral parameters (``"beta_dust"``, ``"T_dust_K"``, ``"beta_synchrotron"``): a number, or a (npix,)
        map where the parameter varies across the sky.
    catalogues : dict
        Point-source components (``"radio"``, ``"infrared"``) -> the catalogue of :meth:`SourcePopulation.catalogue`.
    """

    galactic: dict
    spectral: dict
    catalogues: dict


def foreground_sky(
    fg: Mapping, nside: int, seed: int, counts: Mapping[str, SourceCounts], templates: Mapping | None = None
) -> ForegroundSky:
    """Draw the foreground sky of the parameters ``fg`` (the ``foregrounds`` block), every registered component.

    Diffuse components come from ``templates[name]`` ((Q, U) at ``ref_GHz`` in uK_RJ) when given, else from the
    model ``fg["model"]`` (Gaussian, or the log-normal :class:`NonGaussianForeground`), modulated by
    :func:`galactic_profile` when ``fg["galactic_profile"]`` is ``"cosecant"``. Spectral parameters vary across
    the sky where their ``*_scatter`` is non-zero (:func:`spectral_parameter_map`, correlated over
    ``fg["spectral_fwhm_deg"]``, above the floor a parameter declares: T_d above half its mean). Point sources
    are drawn from ``counts[name]`` (:func:`load_source_counts`).
    Under ``fg["model"] == "pysm"`` dust and synchrotron are PySM's presets (``fg["pysm"]``: ``presets``,
    ``nside``, ``data_dir`` read relative to the working directory; :func:`cmbml.cenn.pysm_sky.pysm_components`).
    Each component and each spectral parameter has its own generator stream, derived from ``seed``, the model
    (:data:`MODEL_STREAMS`) and its stream id.
    """
    model = fg.get("model", "gaussian")
    stream = MODEL_STREAMS[model]
    profile = galactic_profile(nside) if fg.get("galactic_profile", "uniform") == "cosecant" else 1.0
    pysm = {}
    if model == "pysm":
        from cmbml.cenn.pysm_sky import pysm_components

        pysm = pysm_components(fg["pysm"], nside)
    draw = SkyDraw(nside, model, profile, templates or {}, counts, pysm)
    sky = ForegroundSky({}, {}, {})
    for name, comp in COMPONENTS.items():
        getattr(sky, comp.realisation)[name] = comp.draw(
            component_block(fg, name), draw, np.random.default_rng([seed, COMPONENT_STREAMS, stream, comp.stream])
        )
    fwhm = fg.get("spectral_fwhm_deg", 2.0)
    for name, comp in COMPONENTS.items():
        p = fg[name]
        for sp in comp.spectral_parameters:
            floor = None if sp.floor_fraction is None else sp.floor_fraction * p[sp.mean]
            sky.spectral[sp.key] = spectral_parameter_map(
                p[sp.mean],
                p.get(sp.scatter, 0.0),
                fwhm,
                nside,
                np.random.default_rng([seed, SPECTRAL_STREAMS, stream, sp.stream]),
                floor,
            )
    return sky


def channel_parts(fg: Mapping, sky: ForegroundSky, nside: int, freq_ghz: float):
    """Each foreground component's (Q, U) in uK_CMB at ``freq_ghz``, one at a time, in registration order.

    Yields ``(name, (2, npix) array)``, so that a caller summing them holds one component at a time (at nside
    2048 each is 0.8 GB). Diffuse components are scaled pixel by pixel with the local spectral parameters of
    ``sky.spectral``.
    """
    for name, comp in COMPONENTS.items():
        yield name, comp.at_frequency(fg[name], getattr(sky, comp.realisation)[name], sky.spectral, nside, freq_ghz)


def channel_maps(
    fg: Mapping, freqs_ghz, nside: int, seed: int, counts: Mapping[str, SourceCounts], templates: Mapping | None = None
):
    """Total polarized foreground (Q, U) in uK_CMB at each frequency, and its parts, all held in memory
    (for small skies; the stage goes channel by channel with :func:`channel_parts`).

    Returns
    -------
    totals : dict
        ``freq -> (2, npix)`` total foreground.
    parts : dict
        ``freq -> {component: (2, npix)}``.
    catalogues : dict
        The source catalogues.
    """
    sky = foreground_sky(fg, nside, seed, counts, templates)
    parts = {freq: dict(channel_parts(fg, sky, nside, freq)) for freq in freqs_ghz}
    totals = {freq: sum(p.values()) for freq, p in parts.items()}
    return totals, parts, sky.catalogues


def polarization_spectra(qu: np.ndarray, lmax: int, b_min_deg: float = 0.0) -> dict[str, np.ndarray]:
    """EE and BB of a (Q, U) map over ``|b| > b_min_deg`` (raw C_ell, uK^2), divided by the sky
    fraction: the level of the sky the patches see. The cut sky is not band-limited, so the pixel
    quadrature is not iterated."""
    import healpy as hp

    from cmbml.cenn.fullsky import galactic_latitude_deg
    from cmbml.common.sht import analysis

    mask = np.abs(galactic_latitude_deg(hp.get_nside(qu[0]))) > b_min_deg
    alm_e, alm_b = analysis(np.where(mask, qu, 0.0), lmax, spin=2, iterations=0)
    return {"EE": hp.alm2cl(alm_e) / mask.mean(), "BB": hp.alm2cl(alm_b) / mask.mean()}


def write_foreground_spectra(path, spectra: Mapping[float, Mapping[str, np.ndarray]]) -> None:
    """CSV with ``ell`` and ``cl_{EE,BB}_{freq}GHz`` columns (``spectra[freq]["EE"]``), written atomically."""
    from cmbml.common.io import atomic_path

    names, columns = ["ell"], [np.arange(len(next(iter(spectra.values()))["EE"]))]
    for freq, cl in sorted(spectra.items()):
        for key in ("EE", "BB"):
            names.append(f"cl_{key}_{freq:g}GHz")
            columns.append(cl[key])
    with atomic_path(path) as tmp:
        np.savetxt(tmp, np.column_stack(columns), delimiter=",", header=",".join(names), comments="", fmt="%.8e")


def read_foreground_spectra(path) -> dict[str, np.ndarray]:
    """The table of :func:`write_foreground_spectra`, column name -> array."""
    table = np.genfromtxt(path, delimiter=",", names=True)
    return {name: np.asarray(table[name]) for name in table.dtype.names}


def load_templates(fg: Mapping, nside: int, data_dir) -> dict[str, np.ndarray]:
    """(Q, U) templates at each component's ref_GHz (uK_RJ) for the diffuse components whose ``template``
    names a HEALPix file in ``data_dir`` (T, Q, U or Q, U columns), resampled to ``nside``."""
    from astropy.io import fits

    from cmbml.common.fits import read_healpix

    templates = {}
    for name, comp in COMPONENTS.items():
        if issubclass(comp, DiffuseComponent) and component_block(fg, name).get("template"):
            path = Path(data_dir) / fg[name]["template"]
            with fits.open(path) as hdul:
                fields = (1, 2) if len(hdul[1].columns) >= 3 else (0, 1)
            templates[name] = read_healpix(path, fields, nside)
    return templates
