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
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from cmbml.cenn.source_counts import SourceCounts

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
        from cmbml.common.sht import synthesis
        from cmbml.cenn.fullsky import gaussian_alm

        zero = np.zeros(lmax + 1)
        alm = gaussian_alm(zero, power_law_cl(lmax, self.a_ee, self.alpha_ee),
                           power_law_cl(lmax, self.a_bb, self.alpha_bb), zero, lmax, rng)
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
    edges = np.unique(np.round(np.logspace(np.log10(2), np.log10(cl.size), 1 + int(bins_per_decade * np.log10(cl.size / 2)))))
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


def spectral_parameter_map(mean: float, scatter: float, fwhm_deg: float, nside: int,
                           rng: np.random.Generator, floor: float | None = None) -> np.ndarray | float:
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

    def qu_map(self, catalogue: Mapping[str, np.ndarray], nside: int, freq_ghz: float) -> np.ndarray:
        """(Q, U) in uK_CMB at ``freq_ghz``: each source in its pixel (the beam is applied later)."""
        import healpy as hp

        pix = hp.ang2pix(nside, catalogue["theta"], catalogue["phi"])
        pol_flux = catalogue["flux_jy"] * np.minimum(catalogue["pol_fraction"], 1.0)
        pol_flux = pol_flux * (freq_ghz / self.ref_ghz) ** self.spectral_index
        to_uk = jy_to_cmb_uk(freq_ghz, hp.nside2pixarea(nside))
        out = np.zeros((2, hp.nside2npix(nside)))
        np.add.at(out[0], pix, to_uk * pol_flux * np.cos(2 * catalogue["pol_angle"]))
        np.add.at(out[1], pix, to_uk * pol_flux * np.sin(2 * catalogue["pol_angle"]))
        return out


def gaussian_foreground_from_params(p: Mapping) -> GaussianForeground:
    """Dust or synchrotron Gaussian sky from its parameter block (A_EE, A_BB, alpha_EE, alpha_BB, ref_GHz)."""
    return GaussianForeground(p["A_EE"], p["A_BB"], p["alpha_EE"], p["alpha_BB"], p["ref_GHz"])


def scale_dust(qu_rj_ref: np.ndarray, freq_ghz: float, p: Mapping, beta=None, temperature_k=None) -> np.ndarray:
    """Dust (Q, U) at ``freq_ghz`` in uK_CMB from the reference-frequency RJ map; ``beta`` and
    ``temperature_k`` (numbers or per-pixel maps) default to the block's ``beta`` and ``T_dust_K``."""
    beta = p["beta"] if beta is None else beta
    temperature_k = p["T_dust_K"] if temperature_k is None else temperature_k
    return qu_rj_ref * (dust_sed_rj(freq_ghz, p["ref_GHz"], beta, temperature_k) * rj_to_cmb(freq_ghz))


def scale_synchrotron(qu_rj_ref: np.ndarray, freq_ghz: float, p: Mapping, beta=None) -> np.ndarray:
    """Synchrotron (Q, U) at ``freq_ghz`` in uK_CMB from the reference-frequency RJ map; ``beta`` (a number
    or a per-pixel map) defaults to the block's ``beta``."""
    beta = p["beta"] if beta is None else beta
    return qu_rj_ref * (synchrotron_sed_rj(freq_ghz, p["ref_GHz"], beta) * rj_to_cmb(freq_ghz))


def sources_from_params(p: Mapping, counts: SourceCounts | None = None) -> SourcePopulation:
    """A radio or infrared population from its parameter block, with its counts table (read by the caller)."""
    return SourcePopulation(counts, p["s_min_Jy"], p["s_max_Jy"], p["spectral_index"], p["ref_GHz"], p["pol_mu"],
                            p["pol_sigma"])


def load_source_counts(fg: Mapping, data_dir) -> dict[str, SourceCounts]:
    """The radio and infrared counts tables named by ``fg[name]["counts_table"]`` (relative to ``data_dir``)."""
    from pathlib import Path

    return {name: SourceCounts.read(Path(data_dir) / fg[name]["counts_table"]) for name in ("radio", "infrared")}


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


@dataclass
class ForegroundSky:
    """The frequency-independent foreground sky, from which every channel is scaled.

    Attributes
    ----------
    galactic : dict
        ``"dust"``, ``"synchrotron"`` -> (Q, U) (2, npix) at the component's reference frequency, uK_RJ.
    spectral : dict
        ``"beta_dust"``, ``"T_dust_K"``, ``"beta_synchrotron"``: a number, or a (npix,) map where the
        parameter varies across the sky.
    catalogues : dict
        ``"radio"``, ``"infrared"`` -> the catalogue of :meth:`SourcePopulation.catalogue`.
    """

    galactic: dict
    spectral: dict
    catalogues: dict


def galactic_foreground_from_params(p: Mapping, model: str):
    """The dust or synchrotron sky of ``model`` (``gaussian`` or ``nongaussian``) from its parameter block."""
    if model == "nongaussian":
        return NonGaussianForeground(p["A_EE"], p["A_BB"], p["alpha_EE"], p["alpha_BB"], p["ref_GHz"],
                                     p["ln_intensity_sigma"], p["angle_sigma_deg"])
    return gaussian_foreground_from_params(p)


MODEL_STREAMS = {"gaussian": 0, "nongaussian": 1}
"""Each foreground model draws from its own generator streams: two models' skies are independent, and one
model's sky is the same whichever role (training or unseen evaluation sky) it plays."""


def foreground_sky(fg: Mapping, nside: int, seed: int, counts: Mapping[str, SourceCounts],
                   templates: Mapping | None = None) -> ForegroundSky:
    """Draw the foreground sky of the parameters ``fg`` (the ``foregrounds`` block).

    Dust and synchrotron come from ``templates[name]`` ((Q, U) at ``ref_GHz`` in uK_RJ) when given, else
    from the model ``fg["model"]`` (Gaussian, or the log-normal :class:`NonGaussianForeground`), modulated
    by :func:`galactic_profile` when ``fg["galactic_profile"]`` is ``"cosecant"``. Spectral parameters
    vary across the sky where their ``*_scatter`` is non-zero (:func:`spectral_parameter_map`, correlated
    over ``fg["spectral_fwhm_deg"]``; T_d is kept above half its mean). Each part has its own generator
    stream derived from ``seed`` and the model (:data:`MODEL_STREAMS`). Radio and infrared sources are
    drawn from ``counts[name]`` (:func:`load_source_counts`).
    """
    templates = templates or {}
    model = fg.get("model", "gaussian")
    stream = MODEL_STREAMS[model]
    lmax = 3 * nside - 1
    profile = galactic_profile(nside) if fg.get("galactic_profile", "uniform") == "cosecant" else 1.0
    galactic = {}
    for i, name in enumerate(("dust", "synchrotron")):
        if name in templates:
            galactic[name] = templates[name]
        else:
            galactic[name] = galactic_foreground_from_params(fg[name], model).qu_map_rj(
                nside, lmax, np.random.default_rng([seed, 5, stream, i]))
            galactic[name] *= profile
    fwhm = fg.get("spectral_fwhm_deg", 2.0)
    spectral = {key: spectral_parameter_map(fg[comp][mean], fg[comp].get(scatter, 0.0), fwhm, nside,
                                            np.random.default_rng([seed, 6, stream, k]), floor)
                for k, (key, comp, mean, scatter, floor) in enumerate([
                    ("beta_dust", "dust", "beta", "beta_scatter", None),
                    ("T_dust_K", "dust", "T_dust_K", "T_dust_scatter_K", 0.5 * fg["dust"]["T_dust_K"]),
                    ("beta_synchrotron", "synchrotron", "beta", "beta_scatter", None)])}
    catalogues = {name: sources_from_params(fg[name], counts[name]).catalogue(
                      np.random.default_rng([seed, 5, stream, 2 + i]))
                  for i, name in enumerate(("radio", "infrared"))}
    return ForegroundSky(galactic, spectral, catalogues)


def channel_parts(fg: Mapping, sky: ForegroundSky, nside: int, freq_ghz: float):
    """Each foreground component's (Q, U) in uK_CMB at ``freq_ghz``, one at a time.

    Yields ``(name, (2, npix) array)`` for dust, synchrotron, radio and infrared, so that a caller
    summing them holds one component at a time (at nside 2048 each is 0.8 GB). Dust and synchrotron
    are scaled pixel by pixel with the local spectral parameters of ``sky.spectral``.
    """
    sp = sky.spectral
    yield "dust", scale_dust(sky.galactic["dust"], freq_ghz, fg["dust"], sp["beta_dust"], sp["T_dust_K"])
    yield "synchrotron", scale_synchrotron(sky.galactic["synchrotron"], freq_ghz, fg["synchrotron"],
                                           sp["beta_synchrotron"])
    for name in ("radio", "infrared"):
        yield name, sources_from_params(fg[name]).qu_map(sky.catalogues[name], nside, freq_ghz)


def channel_maps(fg: Mapping, freqs_ghz, nside: int, seed: int, counts: Mapping[str, SourceCounts],
                 templates: Mapping | None = None):
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

    from cmbml.common.sht import analysis
    from cmbml.cenn.fullsky import galactic_latitude_deg

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
    """(Q, U) templates at each component's ref_GHz (uK_RJ) for the components whose ``template``
    names a HEALPix file in ``data_dir`` (T, Q, U or Q, U columns), resampled to ``nside``."""
    from pathlib import Path

    from astropy.io import fits

    from cmbml.common.fits import read_healpix

    templates = {}
    for name in ("dust", "synchrotron"):
        if fg[name]["template"]:
            path = Path(data_dir) / fg[name]["template"]
            with fits.open(path) as hdul:
                fields = (1, 2) if len(hdul[1].columns) >= 3 else (0, 1)
            templates[name] = read_healpix(path, fields, nside)
    return templates
