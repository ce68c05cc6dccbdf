"""Flat-sky geometry, Gaussian realisations and power-spectrum binning."""

import numpy as np
import pytest

from cmbml.cenn.fullsky import pixel_arcmin
from cmbml.common.flatsky import FlatGrid, bin_power, gaussian_realisation, linear_bins, power_2d


def test_nside_equivalent_pixels_match_the_seed_versions():
    # science notes: v1-v4 use 27.48 arcmin pixels (nside 128); v5 nside-4096-equivalent 0.86 arcmin.
    assert pixel_arcmin(128) == pytest.approx(27.48, abs=0.01)
    assert pixel_arcmin(4096) == pytest.approx(0.8588, abs=1e-3)


def test_grid_multipoles_of_the_v1_patch():
    # science notes: 27.48' pixels give ell_Nyquist ~ 393 and a fundamental ell ~ 16 on 50 px.
    grid = FlatGrid(50, 27.48)
    assert grid.ell_nyquist == pytest.approx(393, abs=1)
    assert grid.ell_fundamental == pytest.approx(15.7, abs=0.1)
    assert grid.side_deg == pytest.approx(22.9, abs=0.01)


def test_realisations_recover_the_input_spectrum_within_cosmic_variance():
    """The mean binned power of N maps matches the input C_ell to 4 sigma of cosmic variance per bin."""
    grid = FlatGrid(64, 4.0)
    ells = np.arange(6000)
    cl = 1e3 * (ells + 50.0) ** -2.0
    cl_grid = grid.cl_on_grid(cl)
    rng = np.random.default_rng(5)
    maps = np.stack([gaussian_realisation(grid, cl_grid, rng) for _ in range(200)])
    edges = linear_bins(grid, 3 * grid.ell_fundamental, grid.ell_nyquist)
    _, measured, n_modes = bin_power(grid, power_2d(grid, maps).mean(axis=0), edges)
    _, expected, _ = bin_power(grid, cl_grid, edges)
    sigma = expected * np.sqrt(2.0 / (n_modes * maps.shape[0]))  # n_modes counts +k and -k
    assert np.all(np.abs(measured - expected) < 4 * sigma), measured / expected


def test_realisation_variance_matches_the_grid_sum():
    grid = FlatGrid(50, 27.48)
    cl = np.full(400, 2e-3)
    rng = np.random.default_rng(0)
    var = np.mean([gaussian_realisation(grid, grid.cl_on_grid(cl, 200), rng).var() for _ in range(400)])
    assert var == pytest.approx(grid.expected_variance(cl, 200), rel=0.03)


def test_white_noise_has_flat_power_sigma2_dx2():
    """Power normalisation: white noise of per-pixel variance s^2 has C_ell = s^2 dx^2."""
    grid = FlatGrid(128, 2.0)
    rng = np.random.default_rng(1)
    noise = 3.0 * rng.standard_normal((20, 128, 128))
    power = power_2d(grid, noise).mean()
    assert power == pytest.approx(9.0 * grid.dx**2, rel=0.01)


def test_bins_narrower_than_the_fundamental_are_refused():
    # science notes: a bin with no Fourier mode is fatal downstream; refuse it up front.
    grid = FlatGrid(50, 27.48)
    with pytest.raises(ValueError, match="fundamental"):
        linear_bins(grid, 10.0, 300)
    edges = linear_bins(grid, grid.ell_fundamental, 50)
    ell, _, n_modes = bin_power(grid, np.ones((50, 50)), edges)
    assert np.all(n_modes > 0) and edges[-1] == 50
