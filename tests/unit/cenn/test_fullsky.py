"""Full-sky CMB maps: spectra, E/B decomposition and the patch interpolation window."""

import healpy as hp
import numpy as np
import pytest

from cmbml.cenn.fullsky import alm_from_qu, gaussian_alm, interpolation_window, tqu_from_alm

NSIDE, LMAX = 64, 191


@pytest.fixture(scope="module")
def sky(camb_cls):
    alm = gaussian_alm(
        camb_cls["cl_tt_lensed"],
        camb_cls["cl_ee_lensed"],
        camb_cls["cl_bb_lensed"],
        camb_cls["cl_te_lensed"],
        LMAX,
        np.random.default_rng(3),
    )
    return alm, tqu_from_alm(alm, NSIDE)


def test_full_sky_maps_recover_the_camb_spectra_within_cosmic_variance(sky, camb_cls):
    """anafast of the T/Q/U realisation matches CAMB TT, EE, BB and TE in bins of 20 multipoles to
    4 sigma of cosmic variance, sigma = C sqrt(2 / ((2 ell + 1) d_ell)) (TE: with its own variance)."""
    _, tqu = sky
    measured = hp.anafast(tqu, lmax=LMAX)  # TT, EE, BB, TE, EB, TB
    edges = np.arange(10, 130, 20)
    for idx, key in [(0, "cl_tt_lensed"), (1, "cl_ee_lensed"), (2, "cl_bb_lensed")]:
        for lo, hi in zip(edges[:-1], edges[1:]):
            ell = np.arange(lo, hi)
            theory = camb_cls[key][ell]
            sigma = np.sqrt(np.sum(2 * theory**2 / (2 * ell + 1))) / ell.size
            assert abs(measured[idx][ell].mean() - theory.mean()) < 4 * sigma, (key, lo)
    ell = np.arange(10, 130)
    te, tt, ee = (camb_cls[k][ell] for k in ("cl_te_lensed", "cl_tt_lensed", "cl_ee_lensed"))
    sigma_te = np.sqrt(np.sum((te**2 + tt * ee) / (2 * ell + 1))) / ell.size
    assert abs(measured[3][ell].mean() - te.mean()) < 4 * sigma_te


def test_eb_decomposition_recovers_the_input_e_and_b_maps(sky):
    """E and B maps from the spin-2 transform of (Q, U) equal the maps synthesised from the input
    a_E and a_B (healpy's map2alm with 3 iterations) below ell = 2 nside: errors, E-to-B leakage
    included, stay under 1% of the E-map rms (lensing B is 20x fainter than E here)."""
    alm, (_, q, u) = sky
    a_e, a_b = alm_from_qu(q, u, LMAX)
    e_map, b_map = hp.alm2map(a_e, NSIDE), hp.alm2map(a_b, NSIDE)
    lowpass = np.where(np.arange(LMAX + 1) < 2 * NSIDE, 1.0, 0.0)
    e_rms = np.std(hp.alm2map(alm[1], NSIDE))
    for rec, true_alm in [(e_map, alm[1]), (b_map, alm[2])]:
        truth = hp.alm2map(hp.almxfl(true_alm, lowpass), NSIDE)
        rec_low = hp.alm2map(hp.almxfl(hp.map2alm(rec, lmax=LMAX, iter=3), lowpass), NSIDE)
        assert np.std(rec_low - truth) < 0.01 * e_rms
    assert np.corrcoef(hp.alm2cl(a_e, alm[1])[2:100], hp.alm2cl(alm[1])[2:100])[0, 1] > 0.99


def test_bilinear_patch_interpolation_acts_as_a_one_pixel_gaussian():
    """The documented interpolation window (Gaussian, FWHM = one HEALPix pixel) matches the power
    that white noise keeps when interpolated onto 12 arcmin patches from nside 128, to 15%."""
    from cmbml.cenn.patches import PatchSampler
    from cmbml.common.flatsky import FlatGrid, bin_power, linear_bins, power_2d

    nside, npix, pix = 128, 32, 12.0
    lmax = 3 * nside - 1
    sky_map = hp.alm2map(
        gaussian_alm(np.ones(lmax + 1), *(np.zeros(lmax + 1),) * 3, lmax, np.random.default_rng(0))[0], nside
    )
    geometry, grid = FlatGrid(npix, pix), FlatGrid(npix, pix)
    taper = np.outer(np.hanning(npix), np.hanning(npix))
    rng = np.random.default_rng(1)
    power = np.mean(
        [
            power_2d(
                grid,
                PatchSampler.build(nside, geometry, rng.uniform(0, 360), rng.uniform(30, 80)).scalar(sky_map) * taper,
            )
            for _ in range(40)
        ],
        axis=0,
    ) / np.mean(taper**2)
    ell, binned, _ = bin_power(grid, power, linear_bins(grid, 2 * grid.ell_fundamental, lmax))
    window = interpolation_window(nside, lmax)[np.round(ell).astype(int)] ** 2
    assert np.allclose(binned / window, 1.0, atol=0.15), binned / window
