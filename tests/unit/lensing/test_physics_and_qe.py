"""Lensing physics: kappa/phi/deflection consistency, the sign convention and exact remapping."""

import numpy as np
import pytest

from cmbml.common.flatsky import FlatGrid, bin_power, gaussian_realisation, power_2d
from cmbml.common.units import ARCMIN
from cmbml.lensing.physics import (
    deflection_from_kappa,
    deflection_from_phi,
    kappa_to_phi,
    lens_map,
    phi_to_kappa,
    remap_bicubic,
    remap_fourier,
    white_noise_sigma_pix,
)
from tests.reference import remap_direct_sum

GRID = FlatGrid(64, 8.0)


def smooth_field(seed, amplitude=1.0, lmax=400):
    ells = np.arange(3000)
    cl = np.exp(-((ells / 150.0) ** 2)) * 1e-4
    return amplitude * gaussian_realisation(GRID, GRID.cl_on_grid(cl, lmax), np.random.default_rng(seed))


def spectral_divergence(grid, d_x, d_y):
    lx, ly = grid.ell_xy
    return np.fft.ifft2(1j * lx * np.fft.fft2(d_x) + 1j * ly * np.fft.fft2(d_y)).real


def test_kappa_phi_round_trip():
    kappa = smooth_field(1)
    kappa -= kappa.mean()
    assert np.allclose(phi_to_kappa(GRID, kappa_to_phi(GRID, kappa)), kappa, atol=1e-12 * np.abs(kappa).max() + 1e-15)


def test_deflection_divergence_is_minus_two_kappa():
    """d = grad(phi) and kappa = -laplacian(phi)/2, so div(d) = -2 kappa."""
    kappa = smooth_field(2)
    kappa -= kappa.mean()
    d_x, d_y = deflection_from_kappa(GRID, kappa)
    assert np.allclose(spectral_divergence(GRID, d_x, d_y), -2 * kappa, atol=1e-10)


def test_deflection_is_the_gradient_of_phi_by_finite_differences():
    phi = smooth_field(3, lmax=150)
    d_x, d_y = deflection_from_phi(GRID, phi)
    fd_x = (np.roll(phi, -1, axis=1) - np.roll(phi, 1, axis=1)) / (2 * GRID.dx)
    fd_y = (np.roll(phi, -1, axis=0) - np.roll(phi, 1, axis=0)) / (2 * GRID.dx)
    assert np.corrcoef(d_x.ravel(), fd_x.ravel())[0, 1] > 0.99
    assert np.corrcoef(d_y.ravel(), fd_y.ravel())[0, 1] > 0.99


def hot_spot_area(t_map, level):
    return int((t_map > level).sum())


@pytest.mark.parametrize("method", ["fourier", "bicubic"])
def test_positive_kappa_magnifies_a_hot_spot(method):
    """Standard convention T_lensed(x) = T(x + grad phi): a positive kappa blob enlarges a hot
    spot behind it and a negative one shrinks it (science notes, lensing convention)."""
    grid = FlatGrid(128, 2.0)
    lx, ly = grid.ell_xy
    y, x = (np.mgrid[0:128, 0:128] - 64) * grid.dx
    r2 = x**2 + y**2
    spot = 100.0 * np.exp(-r2 / (2 * (20 * ARCMIN) ** 2))
    spot = np.fft.ifft2(np.fft.fft2(spot) * (grid.ell < 0.9 * grid.ell_nyquist)).real  # band-limit
    blob = 0.1 * np.exp(-r2 / (2 * (40 * ARCMIN) ** 2))
    base = hot_spot_area(spot, 50.0)
    assert hot_spot_area(lens_map(grid, spot, blob, method), 50.0) > 1.1 * base
    assert hot_spot_area(lens_map(grid, spot, -blob, method), 50.0) < 0.9 * base


def test_zero_kappa_is_the_identity():
    t_map = smooth_field(4, amplitude=100.0)
    assert np.allclose(lens_map(GRID, t_map, np.zeros_like(t_map)), t_map, atol=1e-9)


def test_fourier_remap_of_a_constant_deflection_is_an_exact_shift():
    """T(x + d0) with d0 = three pixels along x equals the map rolled by three pixels."""
    t_map = smooth_field(5, amplitude=100.0)
    d_x = np.full_like(t_map, 3 * GRID.dx)
    shifted = remap_fourier(GRID, t_map, d_x, np.zeros_like(t_map))
    assert np.allclose(shifted, np.roll(t_map, -3, axis=1), atol=1e-9)


@pytest.mark.parametrize("npix, pixel_arcmin", [(16, 27.48), (33, 6.0), (50, 27.48)])
@pytest.mark.parametrize("epsilon", [1e-6, 1e-10, 1e-12])
def test_nufft_remap_equals_the_direct_sum_of_the_fourier_series_to_epsilon(npix, pixel_arcmin, epsilon):
    """The NUFFT remap evaluates the same series as the O(npix^4) direct sum: on even and odd grids,
    with deflections of several pixels, the maximum difference stays below epsilon times the map's
    largest value (ducc0 bounds the error by epsilon times the sum of |coefficients|)."""
    grid = FlatGrid(npix, pixel_arcmin)
    rng = np.random.default_rng(npix)
    ells = np.arange(20000)
    t_map = gaussian_realisation(grid, grid.cl_on_grid(1e3 / (ells + 10.0) ** 2), rng)
    d_x, d_y = 3 * grid.dx * rng.standard_normal((2, npix, npix))
    reference = remap_direct_sum(grid, t_map, d_x, d_y)
    fast = remap_fourier(grid, t_map, d_x, d_y, epsilon=epsilon)
    assert np.abs(fast - reference).max() < epsilon * np.abs(t_map).max()


def test_remap_epsilon_is_honoured_not_exceeded_by_orders_of_magnitude():
    """A looser epsilon gives a larger error: the parameter controls the accuracy."""
    grid = FlatGrid(50, 27.48)
    rng = np.random.default_rng(1)
    t_map = gaussian_realisation(grid, grid.cl_on_grid(1e3 / (np.arange(20000) + 10.0) ** 2), rng)
    d_x, d_y = 2 * grid.dx * rng.standard_normal((2, 50, 50))
    reference = remap_direct_sum(grid, t_map, d_x, d_y)
    err = {eps: np.abs(remap_fourier(grid, t_map, d_x, d_y, epsilon=eps) - reference).max() for eps in (1e-4, 1e-10)}
    assert err[1e-10] < 1e-3 * err[1e-4]


def test_bicubic_remap_agrees_with_the_exact_one_on_smooth_maps():
    t_map = smooth_field(6, amplitude=100.0, lmax=200)
    kappa = smooth_field(7, amplitude=3.0, lmax=150)
    d_x, d_y = deflection_from_kappa(GRID, kappa)
    exact, spline = remap_fourier(GRID, t_map, d_x, d_y), remap_bicubic(GRID, t_map, d_x, d_y)
    assert np.std(exact - spline) < 0.02 * np.std(t_map)


def test_noise_depth_in_uk_arcmin():
    """sigma_pix = Delta_T / pixel side, so the noise power is C_N = (Delta_T arcmin)^2 (v8: 5 uK-arcmin)."""
    grid = FlatGrid(50, 27.48)
    sigma = white_noise_sigma_pix(5.0, grid.pixel_arcmin)
    noise = sigma * np.random.default_rng(0).standard_normal((50, 50, 50))
    assert power_2d(grid, noise).mean() == pytest.approx((5.0 * ARCMIN) ** 2, rel=0.02)


def _brute_force_n0(grid, cl_tt_lensed, t_lmax):
    """N0^kk(L) from the direct sum over pairs of true grid vectors l1 + l2 = L, both on the grid
    (Hu & Okamoto; science notes: a pair whose l2 falls outside the grid does not exist)."""
    n = grid.npix
    k = np.round(np.fft.fftfreq(n) * n).astype(int)
    kx, ky = np.meshgrid(k, k, indexing="xy")
    kx, ky = kx.ravel(), ky.ravel()
    f0 = grid.ell_fundamental

    def cl(ix, iy):
        return np.where(
            np.hypot(ix, iy) * f0 <= t_lmax,
            np.interp(np.hypot(ix, iy) * f0, np.arange(cl_tt_lensed.size), cl_tt_lensed),
            0.0,
        )

    out = np.full(n * n, np.inf)
    for j, (lx, ly) in enumerate(zip(kx, ky)):
        if lx == 0 and ly == 0:
            continue
        l2x, l2y = lx - kx, ly - ky
        on_grid = (l2x >= -(n // 2)) & (l2x < n - n // 2) & (l2y >= -(n // 2)) & (l2y < n - n // 2)
        c1, c2 = cl(kx, ky), cl(l2x, l2y)
        use = on_grid & (c1 > 0) & (c2 > 0)
        dot1, dot2 = (lx * kx + ly * ky) * f0**2, (lx * l2x + ly * l2y) * f0**2
        f = c1 * dot1 + c2 * dot2
        total = np.sum(np.where(use, f**2 / (2 * np.where(use, c1 * c2, 1.0)), 0.0))
        big_l = np.hypot(lx, ly) * f0
        out[j] = big_l**4 / 4.0 * grid.area_sr / total
    return out.reshape(n, n)


def test_n0_from_ffts_equals_the_direct_sum_over_true_vector_pairs(camb_cls):
    """The FFT-factorised N0 (zero-padded to 2N) equals the brute-force sum over pairs l1 + l2 = L of
    true grid vectors to 1% at every L off the Nyquist row and column on a 16 x 16 grid of 27.48' pixels
    (T_lmax 383; on the Nyquist index the wavevector's sign is ambiguous and the estimator's gradient factor is
    0); the periodic (wrapped) convolution gets it wrong by far more."""
    from cmbml.lensing.quadratic_estimator import n0_kappa, off_nyquist

    grid = FlatGrid(16, 27.48)
    fast = n0_kappa(grid, camb_cls["cl_tt_lensed"], 0.0, 383)
    slow = _brute_force_n0(grid, camb_cls["cl_tt_lensed"], 383)
    finite = np.isfinite(slow) & off_nyquist(grid)
    assert np.allclose(fast[finite], slow[finite], rtol=0.01)
    assert not np.isfinite(fast[0, 0])


@pytest.mark.parametrize(
    "version, rho_mean", [("v2", 0.958), ("v3", 0.746), ("v4", 0.111), ("v7", 0.060), ("v8", 0.124)]
)
def test_quadratic_estimator_wiener_limit_matches_the_direct_sum(camb_cls, version, rho_mean):
    """Linear-theory rho(L) = sqrt(C / (C + N0)) of the Wiener-filtered TT estimator, mean over the rho(L)
    bins, equals the science notes' values computed with the unwrapped N0 (v2 0.958, v3 0.746, v4 0.111,
    v7 0.060, v8 0.124) to 0.005."""
    from cmbml.lensing.quadratic_estimator import binned_wiener_rho, n0_kappa
    from cmbml.lensing.setup import LensingSetup
    from tests.conftest import REPO, compose

    setup = LensingSetup.from_params(compose(f"lensing={version}"), REPO / "conf")
    grid, sim = setup.grid, setup.sim
    n0 = n0_kappa(grid, camb_cls["cl_tt_lensed"], sim.noise_uK_arcmin, sim.T_lmax)
    # the evaluation stage's quantities: kappa power on the grid and rho(L) bins, from the setup
    _, rho = binned_wiener_rho(grid, sim.kappa_power_on_grid(camb_cls["cl_kk"]), n0, setup.rho_bin_edges)
    assert np.mean(rho) == pytest.approx(rho_mean, abs=0.005), rho


def test_quadratic_estimator_has_unit_response_to_small_deflections(camb_cls):
    """On exactly lensed maps with the physical kappa (v4: 1.5' rms deflection) the normalised estimator
    responds to kappa with <kappa_hat kappa> / <kappa kappa> = 1 +- 0.1 in every rho(L) bin. The
    estimator's Gaussian noise is removed by subtracting its value on the same unlensed T, so 100 maps
    measure the response to a few percent."""
    from cmbml.lensing.metrics import correlation_spectra
    from cmbml.lensing.quadratic_estimator import reconstruct_kappa
    from cmbml.lensing.setup import LensingSetup
    from cmbml.lensing.simulate import LensingSimulator
    from tests.conftest import REPO, compose

    setup = LensingSetup.from_params(compose("lensing=v4"), REPO / "conf")
    sim = LensingSimulator(setup.sim, camb_cls["cl_tt_unlensed"], camb_cls["cl_kk"], seed=5)
    samples = [sim.sample("evaluation", i) for i in range(100)]
    lensed, unlensed, kappa = (np.stack([s[k] for s in samples]) for k in ("T_lensed", "T_unlensed", "kappa"))

    def qe(t):
        return reconstruct_kappa(setup.grid, t, camb_cls["cl_tt_lensed"], 0.0, setup.sim.T_lmax)

    spectra = correlation_spectra(setup.grid, qe(lensed) - qe(unlensed), kappa, setup.rho_bin_edges)
    response = spectra.cl_cross / spectra.cl_true
    assert np.all(np.abs(response - 1.0) < 0.1), response


def test_quadratic_estimator_noise_on_unlensed_maps_is_n0(camb_cls):
    """On Gaussian unlensed maps (lensed spectrum, no kappa) the estimate is pure reconstruction noise:
    its binned power over 200 maps equals N0 within 15% in every rho(L) bin (v4 grid)."""
    from cmbml.lensing.quadratic_estimator import n0_kappa, reconstruct_kappa
    from cmbml.lensing.setup import LensingSetup
    from tests.conftest import REPO, compose

    setup = LensingSetup.from_params(compose("lensing=v4"), REPO / "conf")
    grid, t_lmax = setup.grid, setup.sim.T_lmax
    rng = np.random.default_rng(0)
    cl_grid = grid.cl_on_grid(camb_cls["cl_tt_lensed"], t_lmax)
    maps = np.stack([gaussian_realisation(grid, cl_grid, rng) for _ in range(200)])
    kappa_hat = reconstruct_kappa(grid, maps, camb_cls["cl_tt_lensed"], 0.0, t_lmax)
    n0 = n0_kappa(grid, camb_cls["cl_tt_lensed"], 0.0, t_lmax)
    _, measured, _ = bin_power(grid, power_2d(grid, kappa_hat).mean(axis=0), setup.rho_bin_edges)
    _, expected, _ = bin_power(grid, np.where(np.isfinite(n0), n0, 0.0), setup.rho_bin_edges)
    assert np.allclose(measured / expected, 1.0, atol=0.15), measured / expected


def test_quadratic_estimator_recovers_plus_kappa_on_our_maps(camb_cls):
    """The lensing sign, checked by a standard estimator: the TT quadratic estimator run on v3 maps
    (T(x + grad phi), kappa x10) correlates positively with the input kappa, rho(L) in 0.7-0.9
    (science notes: 0.78-0.82 measured), and with -kappa on maps lensed the other way."""
    from cmbml.lensing.metrics import correlation_spectra
    from cmbml.lensing.quadratic_estimator import reconstruct_kappa
    from cmbml.lensing.setup import LensingSetup
    from cmbml.lensing.simulate import LensingSimulator
    from tests.conftest import REPO, compose

    p = compose("lensing=v3")
    setup = LensingSetup.from_params(p, REPO / "conf")
    sim = LensingSimulator(setup.sim, camb_cls["cl_tt_unlensed"], camb_cls["cl_kk"], seed=3)
    samples = [sim.sample("evaluation", i) for i in range(80)]
    t_maps, kappa = np.stack([s["T_lensed"] for s in samples]), np.stack([s["kappa"] for s in samples])
    kappa_hat = reconstruct_kappa(sim.grid, t_maps, camb_cls["cl_tt_lensed"], 0.0, p["T_lmax"])
    spectra = correlation_spectra(sim.grid, kappa_hat, kappa, setup.rho_bin_edges)
    assert np.all(spectra.rho > 0.7) and np.all(spectra.rho < 0.9), spectra.rho
    flipped = reconstruct_kappa(
        sim.grid,
        np.stack([lens_map(sim.grid, s["T_unlensed"], -s["kappa"]) for s in samples]),
        camb_cls["cl_tt_lensed"],
        0.0,
        p["T_lmax"],
    )
    assert np.all(correlation_spectra(sim.grid, flipped, kappa, setup.rho_bin_edges).rho < -0.6)


def test_band_limited_lensing_removes_the_modes_that_fold_back_onto_the_grid():
    """Lensing a cosine T mode at n = 14 (32 x 32 grid, Nyquist 16) by a kappa cosine at m = 5 makes first-order
    modes at 14 - 5 = 9 and 14 + 5 = 19; at the pixels alone 19 folds back to 32 - 19 = 13, a spurious mode a
    band-limited instrument never records. Lensed on a finer grid and band-limited (oversampling 2), the map
    keeps the mode at 9 as the plain remap does and has nothing at 13."""
    from cmbml.lensing.physics import lens_band_limited

    grid = FlatGrid(32, 20.0)
    x = np.arange(32)[None, :] * np.ones((32, 1))
    t_map = np.cos(2 * np.pi * 14 * x / 32)
    kappa = 0.02 * np.cos(2 * np.pi * 5 * x / 32)
    amp = lambda m: np.abs(np.fft.fft2(m)[0]) / 32**2  # noqa: E731  (the l_y = 0 row, per n_x)
    aliased, clean = amp(lens_map(grid, t_map, kappa)), amp(lens_band_limited(grid, t_map, kappa, 2))
    assert aliased[13] > 1e-3 and aliased[9] > 1e-3
    assert clean[13] < 1e-9 * clean[14]
    assert clean[9] == pytest.approx(aliased[9], rel=1e-3)


def test_band_limited_lensing_has_converged_and_keeps_an_unlensed_map():
    """On a v7-like patch (T to the grid's corner, kappa to its Nyquist multipole) oversampling 2 and 4 give the same
    map to 1e-6 of its rms, while lensing at the pixels alone differs by more than 10 % of the lensing signal (the
    folded modes); with kappa = 0 the band-limited lensing returns the map itself, Nyquist modes included."""
    from cmbml.lensing.physics import lens_band_limited

    grid = FlatGrid(40, 27.48)
    rng = np.random.default_rng(3)
    ell = np.arange(2000.0)
    t_map = gaussian_realisation(grid, grid.cl_on_grid(1e3 / (ell + 10) ** 2), rng)
    kappa = gaussian_realisation(grid, grid.cl_on_grid(1e-6 / (ell + 10) ** 1), rng)
    two, four = lens_band_limited(grid, t_map, kappa, 2), lens_band_limited(grid, t_map, kappa, 4)
    rms = t_map.std()
    assert np.abs(two - four).max() < 1e-6 * rms
    assert np.std(lens_map(grid, t_map, kappa) - two) > 0.1 * np.std(two - t_map)  # 28 % of the lensing signal
    np.testing.assert_allclose(lens_band_limited(grid, t_map, np.zeros_like(kappa), 2), t_map, atol=1e-9 * rms)
