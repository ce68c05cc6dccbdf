"""Foreground emission laws and unit conversions."""

import healpy as hp
import numpy as np
import pytest

from cmbml.cenn.foregrounds import (
    GaussianForeground,
    dust_sed_rj,
    jy_to_cmb_uk,
    power_law_cl,
    rj_to_cmb,
    scale_dust,
    scale_synchrotron,
    synchrotron_sed_rj,
)
from tests.conftest import REPO, compose

FG = compose()["foregrounds"]


@pytest.mark.parametrize("freq, factor", [(100, 1.287), (143, 1.654), (217, 2.991), (353, 12.91)])
def test_rj_to_cmb_conversion(freq, factor):
    """dT_CMB/dT_RJ = (e^x - 1)^2 / (x^2 e^x), x = h nu / k T_CMB, monochromatic (band-averaged
    Planck values differ by up to 3%): to 0.5%, and 1 in the Rayleigh-Jeans limit."""
    assert rj_to_cmb(freq) == pytest.approx(factor, rel=0.005)
    assert rj_to_cmb(1.0) == pytest.approx(1.0, abs=1e-3)  # Rayleigh-Jeans limit


@pytest.mark.parametrize("freq, mjy_per_sr_per_k", [(100, 238.8), (143, 379.9), (217, 483.6), (353, 296.7)])
def test_flux_to_temperature(freq, mjy_per_sr_per_k):
    """dB/dT at T_CMB, monochromatic, in MJy/sr per K_CMB (band-averaged Planck HFI values are
    244, 372, 484 and 287): 1 Jy spread over 1 sr gives 1 / (dB/dT in Jy/sr/uK) uK, to 0.5%."""
    uk_per_jy_sr = jy_to_cmb_uk(freq, 1.0)
    assert uk_per_jy_sr == pytest.approx(1e6 / (mjy_per_sr_per_k * 1e6), rel=0.005)


def test_each_foreground_scales_with_frequency_as_its_sed():
    """Maps at 100/143/217 GHz are the reference map times SED(nu) x RJ-to-CMB(nu), pixel by pixel."""
    rng = np.random.default_rng(0)
    ref = rng.standard_normal((2, 48))
    for freq in (100.0, 143.0, 217.0):
        d = FG["dust"]
        nu, nu0 = freq, d["ref_GHz"]
        x, x0 = (
            6.62607015e-34 * nu * 1e9 / (1.380649e-23 * d["T_dust_K"]),
            6.62607015e-34 * nu0 * 1e9 / (1.380649e-23 * d["T_dust_K"]),
        )
        mbb = (nu / nu0) ** (d["beta"] + 1) * (np.exp(x0) - 1) / (np.exp(x) - 1)
        assert dust_sed_rj(freq, nu0, d["beta"], d["T_dust_K"]) == pytest.approx(mbb)
        assert np.allclose(scale_dust(ref, freq, d), ref * mbb * rj_to_cmb(freq))
        s = FG["synchrotron"]
        assert np.allclose(scale_synchrotron(ref, freq, s), ref * (freq / s["ref_GHz"]) ** s["beta"] * rj_to_cmb(freq))
    # from 100 to 217 GHz dust brightens (x2.8 in RJ, x6.6 in CMB units) and synchrotron fades as nu^-3
    assert dust_sed_rj(217, 353, 1.54, 20) / dust_sed_rj(100, 353, 1.54, 20) == pytest.approx(2.84, rel=0.01)
    assert synchrotron_sed_rj(217, 23, -3.0) / synchrotron_sed_rj(100, 23, -3.0) == pytest.approx((217 / 100) ** -3)


def test_gaussian_dust_reproduces_its_power_law():
    """A Gaussian dust sky has D_ell^EE = A (ell/80)^alpha: the EE and BB power of a realisation
    averaged over ell 40-120 matches the model to 10%."""
    d = FG["dust"]
    model = GaussianForeground(d["A_EE"], d["A_BB"], d["alpha_EE"], d["alpha_BB"], d["ref_GHz"])
    q, u = model.qu_map_rj(64, 191, np.random.default_rng(1))
    cls = hp.anafast([np.zeros_like(q), q, u], lmax=191)
    ell = np.arange(40, 121)
    for idx, a, alpha in [(1, d["A_EE"], d["alpha_EE"]), (2, d["A_BB"], d["alpha_BB"])]:
        expected = power_law_cl(191, a, alpha)[ell]
        assert cls[idx][ell].sum() == pytest.approx(expected.sum(), rel=0.1)


@pytest.mark.parametrize("name", ["radio", "infrared"])
def test_point_sources_follow_the_tabulated_counts_and_polarization_fractions(name):
    """A full-sky catalogue reproduces the table's N(>S) at four fluxes within 3 Poisson sigma (N(>S) from
    trapezoids of S dN/dS in ln S, checked against the Euclidean closed form on a power law), the median
    polarization fraction is exp(mu) %, and fluxes scale as nu^spectral_index."""
    from cmbml.cenn.foregrounds import load_source_counts, sources_from_params

    p = FG[name]
    counts = load_source_counts(FG, REPO / "data")[name]
    pop = sources_from_params(p, counts)
    cat = pop.catalogue(np.random.default_rng(2))
    for flux in np.geomspace(p["s_min_Jy"], p["s_max_Jy"] / 10, 4):
        expected = 4 * np.pi * counts.number_above(flux, p["s_max_Jy"])[0]
        assert abs((cat["flux_jy"] > flux).sum() - expected) < 3 * np.sqrt(expected) + 1, flux
    assert np.median(cat["pol_fraction"]) == pytest.approx(np.exp(p["pol_mu"]) / 100, rel=0.05)
    qu_100, qu_200 = pop.qu_map(cat, 32, 100.0), pop.qu_map(cat, 32, 200.0)
    ratio = (2.0 ** p["spectral_index"]) * jy_to_cmb_uk(200, 1) / jy_to_cmb_uk(100, 1)
    assert np.allclose(qu_200, qu_100 * ratio)


def test_integral_counts_of_a_euclidean_table():
    """dN/dS = k S^-2.5 integrates to N(>S) - N(>S_max) = (2 k / 3) (S^-1.5 - S_max^-1.5) (to 1e-5)."""
    from cmbml.cenn.source_counts import SourceCounts

    flux = np.geomspace(1e-3, 100.0, 51)
    counts = SourceCounts(flux, 7.0 * flux**-2.5)
    s = np.array([0.01, 0.1, 1.0])
    assert np.allclose(counts.number_above(s, 10.0), 2 * 7.0 / 3 * (s**-1.5 - 10.0**-1.5), rtol=1e-5)


def test_a_template_in_data_replaces_the_gaussian_dust(tmp_path):
    """A user's (Q, U) dust template at 353 GHz in uK_RJ, named in the params, is what the channel
    maps scale: at 100 GHz they equal template x SED x RJ-to-CMB (sources switched off)."""
    from cmbml.cenn.foregrounds import channel_maps, load_source_counts, load_templates
    from cmbml.common.fits import write_healpix

    nside = 16
    template = np.random.default_rng(3).standard_normal((2, hp.nside2npix(nside)))
    write_healpix(tmp_path / "my_dust.fits", template, ["Q", "U"], unit="uK_RJ")
    fg = compose()["foregrounds"]
    fg["dust"]["template"] = "my_dust.fits"
    fg["synchrotron"]["A_EE"] = fg["synchrotron"]["A_BB"] = 0.0
    totals, parts, _ = channel_maps(
        fg, [100.0], nside, 1, load_source_counts(fg, REPO / "data"), load_templates(fg, nside, tmp_path)
    )
    totals = {f: totals[f] - parts[f]["radio"] - parts[f]["infrared"] for f in totals}  # sources aside
    d = fg["dust"]
    expected = (
        template.astype(np.float32) * dust_sed_rj(100.0, d["ref_GHz"], d["beta"], d["T_dust_K"]) * rj_to_cmb(100.0)
    )
    assert np.allclose(totals[100.0], expected, rtol=1e-5, atol=1e-6)


def test_galactic_profile_keeps_the_high_latitude_level_and_brightens_the_plane():
    """1/sin|b| capped at 5 deg, normalised to unit mean square over |b| > 30 deg: the model
    amplitudes hold where patches are cut, the profile is 1/sin|b| pixel by pixel above the cap and
    flat below it, so the plane is sin(90)/sin(5) = 11.5 times brighter than the poles."""
    from cmbml.cenn.foregrounds import galactic_profile
    from cmbml.cenn.fullsky import galactic_latitude_deg

    nside = 32
    profile, b = galactic_profile(nside), galactic_latitude_deg(nside)
    assert np.mean(profile[np.abs(b) > 30] ** 2) == pytest.approx(1.0)
    above = np.abs(b) > 5
    shape = profile[above] * np.sin(np.radians(np.abs(b[above])))
    assert np.allclose(shape, shape[0], rtol=1e-10)  # 1 / sin|b| up to one normalisation
    capped = profile[np.abs(b) < 5]
    assert np.allclose(capped, shape[0] / np.sin(np.radians(5.0)), rtol=1e-10)
    assert capped.max() / profile.min() == pytest.approx(1 / np.sin(np.radians(5.0)), rel=0.01)


NG = compose("foregrounds=nongaussian")["foregrounds"]


def test_the_two_foreground_models_differ_only_in_the_sky():
    """foregrounds=nongaussian keeps the Gaussian model's spectra, SED means, sources and noise: it adds the
    model switch's own keys and non-zero spectral scatters, nothing about the instrument."""
    from cmbml.common.params import flatten

    g, ng = flatten(FG), flatten(NG)
    changed = {k for k in g if g[k] != ng[k]} | (set(ng) - set(g))
    assert changed == {
        "model",
        "dust.beta_scatter",
        "dust.T_dust_scatter_K",
        "synchrotron.beta_scatter",
        "dust.ln_intensity_sigma",
        "dust.angle_sigma_deg",
        "synchrotron.ln_intensity_sigma",
        "synchrotron.angle_sigma_deg",
    }


@pytest.mark.parametrize("component", ["dust", "synchrotron"])
def test_nongaussian_galactic_sky_has_the_target_mean_spectra_and_is_not_gaussian(component):
    """The log-normal, random-angle sky keeps the parameters' EE and BB (amplitude and slope): averaged over
    10 <= ell <= 2 nside its EE and BB are within 6% of the power laws (cosmic variance of this sky, whose
    power sits at low ell, measured at 2-3% per realisation), and its statistics are not Gaussian: the excess
    kurtosis of Q is above 1 (a Gaussian sky of the same spectra, whose few large-scale modes scatter it: |kurtosis| < 0.5) and the skewness of the
    polarized intensity is above 1 (Rayleigh, for Gaussian Q and U: 0.63; measured below 0.8)."""
    from scipy.stats import kurtosis, skew

    from cmbml.cenn.foregrounds import GaussianForeground, galactic_foreground_from_params
    from cmbml.common.sht import analysis

    nside, p = 128, NG[component]
    lmax = 3 * nside - 1
    ell = np.arange(lmax + 1)
    sel = (ell >= 10) & (ell <= 2 * nside)
    w = 2 * ell[sel] + 1.0
    sky = galactic_foreground_from_params(p, "nongaussian")
    qu = sky.qu_map_rj(nside, lmax, np.random.default_rng(11))
    alm_e, alm_b = analysis(qu, lmax, spin=2, iterations=3)
    for alm, a, alpha in ((alm_e, p["A_EE"], p["alpha_EE"]), (alm_b, p["A_BB"], p["alpha_BB"])):
        measured = np.sum(w * hp.alm2cl(alm)[sel]) / np.sum(w * power_law_cl(lmax, a, alpha)[sel])
        assert measured == pytest.approx(1.0, abs=0.06)
    assert kurtosis(qu[0]) > 1.0
    assert skew(np.hypot(*qu)) > 1.0
    gaussian = GaussianForeground(p["A_EE"], p["A_BB"], p["alpha_EE"], p["alpha_BB"], p["ref_GHz"])
    qu_g = gaussian.qu_map_rj(nside, lmax, np.random.default_rng(11))
    assert abs(kurtosis(qu_g[0])) < 0.5
    assert skew(np.hypot(*qu_g)) < 0.8


def test_spectral_parameter_map_has_the_mean_scatter_and_correlation_length():
    """beta_d across the sky: mean and rms as asked (to 0.02 and 15%: a 4 deg correlation leaves about 2500
    independent areas), a spectrum shaped like
    the smoothing beam (power at ell = 1 / sigma_beam is exp(-1) of the largest-scale power, to 25%), and the
    plain number when the scatter is 0."""
    from cmbml.cenn.foregrounds import spectral_parameter_map
    from cmbml.common.units import ARCMIN

    nside, fwhm = 128, 4.0
    beta = spectral_parameter_map(1.54, 0.1, fwhm, nside, np.random.default_rng(2))
    assert beta.shape == (hp.nside2npix(nside),)
    assert beta.mean() == pytest.approx(1.54, abs=0.02)
    assert beta.std() == pytest.approx(0.1, rel=0.15)
    cl = hp.anafast(beta - beta.mean(), lmax=120)
    sigma = fwhm * 60 * ARCMIN / np.sqrt(8 * np.log(2))
    ell_1 = int(round(1 / sigma))
    band = lambda lo, hi: cl[lo:hi].mean()  # noqa: E731
    assert band(ell_1 - 3, ell_1 + 4) / band(2, 8) == pytest.approx(np.exp(-1.0), rel=0.25)
    assert spectral_parameter_map(1.54, 0.0, fwhm, nside, np.random.default_rng(2)) == 1.54


def test_each_pixel_scales_with_its_own_spectral_parameters():
    """With beta_d, T_d and beta_s varying across the sky, every pixel of the 100 GHz dust and synchrotron maps
    is its reference-frequency value times the SED of that pixel's parameters (to 1e-12)."""
    from cmbml.cenn.foregrounds import channel_parts, foreground_sky, load_source_counts

    nside = 32
    sky = foreground_sky(NG, nside, 3, load_source_counts(NG, REPO / "data"))
    assert all(np.ndim(v) == 1 for v in sky.spectral.values())
    parts = dict(channel_parts(NG, sky, nside, 100.0))
    sp, d, s = sky.spectral, NG["dust"], NG["synchrotron"]
    for pix in (0, 777, 12 * nside**2 - 1):
        dust = (
            sky.galactic["dust"][:, pix]
            * dust_sed_rj(100.0, d["ref_GHz"], sp["beta_dust"][pix], sp["T_dust_K"][pix])
            * rj_to_cmb(100.0)
        )
        sync = (
            sky.galactic["synchrotron"][:, pix]
            * synchrotron_sed_rj(100.0, s["ref_GHz"], sp["beta_synchrotron"][pix])
            * rj_to_cmb(100.0)
        )
        np.testing.assert_allclose(parts["dust"][:, pix], dust, rtol=1e-12)
        np.testing.assert_allclose(parts["synchrotron"][:, pix], sync, rtol=1e-12)
    # the spectral index itself varies: dust/dust ratios between two channels differ from pixel to pixel
    ratio = dict(channel_parts(NG, sky, nside, 217.0))["dust"][0] / parts["dust"][0]
    assert np.std(ratio) > 0.01 * np.mean(ratio)


def test_the_two_foreground_models_draw_independent_skies():
    """Each model has its own generator streams: the Gaussian and non-Gaussian dust Q maps of one seed are
    uncorrelated multipole by multipole (the correlation coefficient C_gn / sqrt(C_gg C_nn), averaged over
    10 <= ell < 96 with weights 2 ell + 1, below 0.05, where chance gives about 0.01; the dust spectrum is
    too red for a pixel correlation to test this), and their source catalogues differ, so the unseen sky
    shares no structure with the training sky."""
    from cmbml.cenn.foregrounds import foreground_sky, load_source_counts

    nside = 32
    counts = load_source_counts(FG, REPO / "data")
    gaussian, nongaussian = foreground_sky(FG, nside, 7, counts), foreground_sky(NG, nside, 7, counts)
    q_g, q_n = gaussian.galactic["dust"][0], nongaussian.galactic["dust"][0]
    c_gn, c_gg, c_nn = hp.anafast(q_g, q_n), hp.anafast(q_g), hp.anafast(q_n)
    ell = np.arange(10, 96)
    r = np.sum((2 * ell + 1) * c_gn[ell] / np.sqrt(c_gg[ell] * c_nn[ell])) / np.sum(2 * ell + 1)
    assert abs(r) < 0.05
    assert gaussian.catalogues["radio"]["flux_jy"].size != nongaussian.catalogues["radio"]["flux_jy"].size
