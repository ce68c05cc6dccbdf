"""The classical component-separation baselines on synthetic stationary Gaussian skies, where the optimum is known."""

from __future__ import annotations

import numpy as np
import pytest

from cmbml.cenn.baselines import (
    PerModeLinearFilter,
    WienerFilter,
    harmonic_ilc,
    harmonic_modes,
    maps_from_modes,
    pixel_ilc,
)
from cmbml.cenn.evaluation import cenn_maps, cenn_metrics
from cmbml.cenn.fullsky import gauss_beam
from cmbml.cenn.patches import independent_patch_areas
from cmbml.common.flatsky import FlatGrid, gaussian_realisation

GRID = FlatGrid(32, 12.0)
LMAX = 2000
ELL = np.arange(LMAX + 1)
CL_LABEL = 1.0 / (ELL + 50.0) ** 1.5 * gauss_beam(7.2, LMAX) ** 2  # uK^2 sr: a red, beamed CMB-like label
CL_FG = 50.0 / (ELL + 10.0) ** 2.4  # one foreground with a fixed SED across channels
SED = np.array([0.6, 1.0, 2.2])
NOISE_PIX = np.array([4.0, 2.5, 3.5])  # uK per pixel
RESPONSE = np.stack([gauss_beam(f, LMAX) / gauss_beam(7.2, LMAX) for f in (9.7, 7.2, 4.9)])


def simulate(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Inputs (n, 32, 32, 3) = response x label + SED x foreground + white noise; labels (n, 32, 32, 1)."""
    rng = np.random.default_rng(seed)
    a = np.stack([GRID.cl_on_grid(r) for r in RESPONSE], axis=-1)
    labels, inputs = np.empty((n, 32, 32, 1)), np.empty((n, 32, 32, 3))
    for i in range(n):
        t = gaussian_realisation(GRID, GRID.cl_on_grid(CL_LABEL), rng)
        fg = gaussian_realisation(GRID, GRID.cl_on_grid(CL_FG), rng)
        beamed = np.fft.ifft2(np.fft.fft2(t)[..., None] * a, axes=(0, 1)).real
        labels[i, ..., 0] = t
        inputs[i] = beamed + SED * fg[..., None] + NOISE_PIX * rng.standard_normal((32, 32, 3))
    return inputs, labels


@pytest.fixture(scope="module")
def skies():
    return simulate(600, 1), simulate(300, 2)


def mse(estimate, labels):
    return float(np.mean((estimate - labels[..., 0]) ** 2))


def test_wiener_filter_mse_matches_its_prediction_and_beats_every_other_method(skies):
    """On periodic stationary Gaussian skies the Wiener filter built from the label spectrum and the Train
    nuisance covariance reaches its predicted MSE, and nothing linear does better."""
    (train_in, train_lab), (test_in, test_lab) = skies
    nuisance = WienerFilter.nuisance_from_train(
        [({"E": train_in}, {"E": train_lab})], GRID, RESPONSE, GRID.ell_fundamental
    )
    wiener = WienerFilter.build(GRID, {"E": CL_LABEL}, RESPONSE, nuisance)
    measured = mse(wiener.apply({"E": test_in})["E"], test_lab)
    assert measured == pytest.approx(wiener.predicted_mse, rel=0.05)
    linear = PerModeLinearFilter.fit([({"E": train_in}, {"E": train_lab})], ["E"]).apply({"E": test_in})["E"]
    hilc = harmonic_ilc({"E": test_in}, GRID, RESPONSE, 2 * GRID.ell_fundamental)["E"]
    zero = mse(0 * test_lab[..., 0], test_lab)
    # The empirical filter approaches the optimum from above (fit noise: 3 channels, 600 samples per mode).
    assert measured < mse(linear, test_lab) < 1.1 * measured
    assert measured < mse(hilc, test_lab) and measured < mse(pixel_ilc(test_in), test_lab) and measured < zero


def test_spin2_wiener_filter_on_q_u_reaches_its_prediction(skies):
    """From Q and U patches (E and B skies rotated into Stokes maps) the Wiener filter works on E and B modes and
    returns Q and U estimates (N, n, n) whose MSE is its predicted one (the rotation is unitary)."""

    def qu(e, b):
        return maps_from_modes({"E": np.fft.fft2(e, axes=(1, 2)), "B": np.fft.fft2(b, axes=(1, 2))}, GRID)

    (e_in, e_lab), (b_in, b_lab) = skies[0], simulate(600, 3)
    (e_test, e_test_lab), (b_test, b_test_lab) = skies[1], simulate(300, 4)
    nuisance = WienerFilter.nuisance_from_train(
        [(qu(e_in, b_in), qu(e_lab, b_lab))], GRID, RESPONSE, GRID.ell_fundamental
    )
    wiener = WienerFilter.build(GRID, {"E": CL_LABEL, "B": CL_LABEL}, RESPONSE, nuisance)
    estimate, labels = wiener.apply(qu(e_test, b_test)), qu(e_test_lab, b_test_lab)
    assert estimate["Q"].shape == estimate["U"].shape == (300, 32, 32)
    measured = np.mean([mse(estimate[c], labels[c]) for c in ("Q", "U")])
    assert measured == pytest.approx(wiener.predicted_mse, rel=0.05)
    assert measured < 0.5 * np.mean([mse(0 * estimate[c], labels[c]) for c in ("Q", "U")])


def test_ilcs_pass_the_cmb_unchanged():
    """Unit response: with inputs that are the label through each channel's beam, both ILCs return the label."""
    _, labels = simulate(4, 3)
    a = np.stack([GRID.cl_on_grid(r) for r in RESPONSE], axis=-1)
    beamed = np.fft.ifft2(np.fft.fft2(labels[..., 0], axes=(1, 2))[..., None] * a, axes=(1, 2)).real
    np.testing.assert_allclose(harmonic_ilc({"E": beamed}, GRID, RESPONSE, 60.0)["E"], labels[..., 0], atol=1e-9)
    same = np.repeat(labels, 3, axis=-1)
    np.testing.assert_allclose(pixel_ilc(same), labels[..., 0], atol=1e-9)


def test_pixel_ilc_weights_see_a_foreground_offset():
    """Full second moments: a foreground that is a constant offset over the patch is removed, which weights from
    the mean-subtracted covariance cannot see."""
    rng = np.random.default_rng(4)
    cmb = rng.standard_normal((1, 32, 32, 1))
    inputs = cmb + 10.0 * SED + 0.01 * rng.standard_normal((1, 32, 32, 3))
    assert np.mean((pixel_ilc(inputs) - cmb[..., 0]) ** 2) < 0.01


def test_q_u_go_to_e_b_modes_and_back():
    rng = np.random.default_rng(5)
    qu = {"Q": rng.standard_normal((2, 32, 32, 3)), "U": rng.standard_normal((2, 32, 32, 3))}
    back = maps_from_modes({s: m for s, m in harmonic_modes(qu, GRID).items()}, GRID)
    np.testing.assert_allclose(back["Q"], qu["Q"], atol=1e-12)
    np.testing.assert_allclose(back["U"], qu["U"], atol=1e-12)


def test_evaluation_flags_a_network_that_beats_the_wiener_filter(skies):
    """A leak (the label in the output) gives MSE / Wiener far below 1 and the flag; a network that is the Wiener
    filter plus a little noise gives a ratio above 1 and no flag."""
    (train_in, train_lab), (test_in, test_lab) = skies
    nuisance = WienerFilter.nuisance_from_train([({"E": train_in}, {"E": train_lab})], GRID, RESPONSE, 50.0)
    wiener = WienerFilter.build(GRID, {"E": CL_LABEL}, RESPONSE, nuisance).apply({"E": test_in})["E"]
    rng = np.random.default_rng(6)
    ell = np.array([100.0, 400.0])
    cl = {
        name: {"EE": np.ones((len(test_lab), 2))}
        for name in ("label", "network", "wiener", "network residual", "wiener residual")
    }
    for network, leak in (
        (test_lab[..., 0] + 0.1 * rng.standard_normal(wiener.shape), 1.0),
        (wiener + 0.3 * rng.standard_normal(wiener.shape), 0.0),
    ):
        maps = {"E": cenn_maps(test_in, test_lab, {"network": network, "wiener": wiener}, target=1)}
        metrics = cenn_metrics(maps, ell, cl, [(0, 1000)], n_independent=300)
        assert metrics["leak_suspected"] == leak
        assert (metrics["mse_over_wiener"] < 0.5) == bool(leak)


def test_independent_patch_areas_count_overlaps_once():
    """Patches on one spot are worth one patch; far-apart patches count fully; another CMB realisation adds CMB
    independence but no new foreground sky."""
    grid = FlatGrid(64, 6.0)
    same = independent_patch_areas(np.full(5, 100.0), np.full(5, 50.0), np.zeros(5), grid)
    assert same["cmb"] == pytest.approx(1.0, rel=0.1) and same["sky"] == pytest.approx(1.0, rel=0.1)
    apart = independent_patch_areas(np.array([0.0, 90.0, 180.0]), np.array([45.0, 45.0, 45.0]), np.zeros(3), grid)
    assert apart["cmb"] == pytest.approx(3.0, rel=0.1)
    twice = independent_patch_areas(np.full(2, 100.0), np.full(2, 50.0), np.array([0, 1]), grid)
    assert twice["cmb"] == pytest.approx(2.0, rel=0.1) and twice["sky"] == pytest.approx(1.0, rel=0.1)


def test_e_b_rotation_agrees_with_namaster():
    """Q and U built from E modes alone are pure E for NaMaster's spin-2 estimator (and B alone pure B), so the
    Wiener filter of the QU variant gives E and B the right spectra."""
    from cmbml.cenn.namaster_flat import FlatSpectra

    grid = FlatGrid(64, 6.0)
    rng = np.random.default_rng(7)
    cl = 1.0 / (np.arange(4000) + 50.0) ** 2
    field = np.fft.fft2(gaussian_realisation(grid, grid.cl_on_grid(cl), rng))[None, ..., None]
    estimator = FlatSpectra(grid, np.arange(120.0, 1500.0, 120.0), spin=2, apodization_deg=1.0)
    for name, other in (("E", "B"), ("B", "E")):
        qu = maps_from_modes({name: field, other: 0 * field}, grid)
        spectra = estimator.spectra([qu["Q"][0, ..., 0], qu["U"][0, ..., 0]])
        assert np.all(spectra[f"{other}{other}"] < 0.05 * spectra[f"{name}{name}"])
