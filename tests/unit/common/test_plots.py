"""Figures: the error bars they draw are the scatter they claim, and every figure is written."""

import numpy as np
import pytest

from cmbml.cenn.plots import plot_cenn_spectra
from cmbml.common.flatsky import FlatGrid, bin_power, linear_bins, power_2d
from cmbml.common.plotting import plot_map_columns, plot_training_curve, power_error
from cmbml.lensing.metrics import correlation_spectra
from cmbml.lensing.plots import kappa_units, plot_kappa_power, plot_rho, plot_rho_versions, rho_error


def correlated_maps(grid, rho, n_maps, rng):
    """White-noise map pairs whose Fourier modes correlate with coefficient ``rho``."""
    a = rng.standard_normal((n_maps, grid.npix, grid.npix))
    b = rho * a + np.sqrt(1 - rho**2) * rng.standard_normal(a.shape)
    return a, b


def test_rho_error_is_the_scatter_of_rho_over_realisations():
    """rho(L) per bin from the pipeline's estimator (binned spectra of map stacks) scatters by
    (1 - rho^2) / sqrt(n - 1), n the bin's grid modes times the maps: a real map's full-plane mode count is
    its number of independent real degrees of freedom."""
    rng = np.random.default_rng(1)
    grid = FlatGrid(32, 30.0)
    edges = linear_bins(grid, 3 * grid.ell_fundamental, grid.ell_nyquist * 0.9)
    rho_true, n_maps = 0.8, 4
    rhos, n_modes = [], None
    for _ in range(300):
        a, b = correlated_maps(grid, rho_true, n_maps, rng)
        spectra = correlation_spectra(grid, a, b, edges)
        rhos.append(spectra.rho)
        n_modes = spectra.n_modes * n_maps
    rhos = np.array(rhos)
    predicted = rho_error(rhos.mean(axis=0), n_modes)
    assert np.allclose(rhos.std(axis=0), predicted, rtol=0.2), rhos.std(axis=0) / predicted


def test_power_error_is_the_cosmic_variance_of_a_binned_power():
    rng = np.random.default_rng(2)
    grid = FlatGrid(32, 30.0)
    edges = linear_bins(grid, 3 * grid.ell_fundamental, grid.ell_nyquist * 0.9)
    n_maps = 3
    powers = []
    for _ in range(300):
        maps = rng.standard_normal((n_maps, grid.npix, grid.npix))
        _, cl, n_modes = bin_power(grid, power_2d(grid, maps).mean(axis=0), edges)
        powers.append(cl)
    powers = np.array(powers)
    predicted = power_error(powers.mean(axis=0), n_modes * n_maps)
    assert np.allclose(powers.std(axis=0), predicted, rtol=0.2), powers.std(axis=0) / predicted


def test_every_figure_is_written(tmp_path):
    rng = np.random.default_rng(3)
    ell = np.geomspace(20, 3000, 12)
    rho = 0.9 * np.exp(-ell / 2000)
    plot_rho(
        ell,
        rho,
        tmp_path / "rho.png",
        "rho",
        references=[(ell, 0.9 * rho, "QE")],
        limits=[(ell, np.sqrt(rho), "limit")],
        n_modes=np.full(ell.size, 400.0),
        exaggeration=10,
    )
    cl_kk = 1e-7 * np.ones(4000)
    plot_kappa_power(
        ell,
        {"true kappa": 1e-5 * np.ones(12)},
        {"N0": 1e-6 * np.ones(12)},
        np.full(12, 400.0),
        tmp_path / "kappa.png",
        "kappa",
        cl_kk=cl_kk,
        exaggeration=10,
    )
    maps = rng.standard_normal((2, 16, 16))
    plot_map_columns(
        {"T": maps, "kappa": maps}, tmp_path / "maps.png", 5.0, kappa_units(10), "maps", column_units={"T": "T [µK]"}
    )
    plot_training_curve({"loss": [1.0, 0.5, 0.4], "val_loss": [0.9, 0.6, 0.7]}, tmp_path / "curve.png", "training")
    dl = {name: rng.uniform(1, 2, (5, 12)) for name in ("label", "network", "network residual")}
    plot_cenn_spectra(ell, dl, np.ones(12), tmp_path / "spectra.png", "spectra", {"network": "CENN"})
    rows = [{"L": float(e), "rho_cnn": float(r), "rho_qe": float(r), "rho_opt": float(r)} for e, r in zip(ell, rho)]
    plot_rho_versions(
        [{"name": "v1", "params": {"kappa_exaggeration_factor": "1"}, "rows": rows}], tmp_path / "versions.png"
    )
    for name in ("rho", "kappa", "maps", "curve", "spectra", "versions"):
        assert (tmp_path / f"{name}.png").stat().st_size > 1000


def test_rho_error_shrinks_with_modes_and_vanishes_at_full_correlation():
    assert rho_error(np.array([1.0]), np.array([10.0]))[0] == 0.0
    assert rho_error(np.array([0.5]), np.array([101.0]))[0] == pytest.approx(0.75 / 10)
    assert power_error(np.array([2.0]), np.array([8.0]))[0] == pytest.approx(1.0)  # 2 sqrt(2 / 8)
