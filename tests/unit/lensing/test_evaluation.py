"""The lensing yardstick: the quadratic estimator built from the simulated sky (science notes, "Yardsticks done
right"), its limit, rho's sampling errors and the leak guard."""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import REPO, compose


@pytest.fixture(scope="module")
def camb_cls_13000():
    """CAMB spectra to lmax 13000 (v5's 0.86' pixels reach ell ~ 12.6k per axis)."""
    from cmbml.common.spectra import camb_spectra

    return camb_spectra(compose()["cosmology"], 13000)


def _version(version: str, cls: dict, n_test: int):
    from cmbml.lensing.setup import LensingSetup
    from cmbml.lensing.simulate import LensingSimulator

    setup = LensingSetup.from_params(compose(f"lensing={version}"), REPO / "conf")
    simulator = LensingSimulator(setup.sim, cls["cl_tt_unlensed"], cls["cl_kk"], seed=setup.seed)
    return setup, simulator, simulator.chunk("evaluation", slice(0, n_test))


def _scores(setup, simulator, test, estimator):
    from cmbml.lensing.evaluation import compare
    from cmbml.lensing.metrics import correlation_spectra

    edges = setup.rho_bin_edges
    kappa = test["kappa"].astype(np.float64)
    qe = correlation_spectra(setup.grid, estimator.reconstruct(test["T_lensed"]), kappa, edges)
    _, rho_opt = estimator.wiener_rho(simulator.cl_kk_grid, edges)
    rows, metrics = compare(qe, qe, rho_opt, physical=True)
    return qe, rho_opt, rows, metrics


def test_v5_estimator_from_camb_spectra_beats_its_own_limit_and_the_sky_estimator_does_not(camb_cls_13000):
    """Science notes, "Yardsticks done right": on v5 (kappa at 503 < L < 5000, 0.86' pixels) the estimator built
    from CAMB's full-sky lensed C_TT assumes damping-tail power the maps lack: its measured rho exceeds its
    "limit" by many sigma and its response is far from 1 (0.4-0.5 at L ~ 600). Built from the simulated sky
    (unlensed weights, the maps' total power, the lensed-gradient response) the measured rho sits at or below
    the limit plus two errors in every bin, the response is 1 +- 0.1 and the mean rho is about 0.72 (0.725
    measured independently)."""
    from cmbml.lensing.evaluation import sky_estimator
    from cmbml.lensing.quadratic_estimator import QuadraticEstimator

    setup, simulator, test = _version("v5", camb_cls_13000, 400)
    sim = setup.sim
    camb = QuadraticEstimator.from_spectra(setup.grid, camb_cls_13000["cl_tt_lensed"], sim.noise_uK_arcmin, sim.T_lmax)
    qe, _, _, m = _scores(setup, simulator, test, camb)
    assert m["qe_over_limit_max_z"] > 5 and np.min(qe.response) < 0.6

    qe, rho_opt, rows, m = _scores(setup, simulator, test, sky_estimator(simulator))
    assert m["qe_over_limit_max_z"] <= 2, rows
    assert np.all(np.abs(qe.response - 1) < 0.1), qe.response
    assert m["rho_qe_mean"] == pytest.approx(0.725, abs=0.02)


@pytest.mark.parametrize("version", ["v3", "v4", "v8"])
def test_sky_estimator_stays_within_its_limit_with_unit_response(version, camb_cls):
    """For an exaggerated version (v3, kappa x10, 15' deflections) and physical ones (v4 no noise, v8 5 uK'
    noise) the sky's estimator: measured rho <= rho_opt + 2 errors in every bin, response 1 +- 0.1 averaged
    over the bins (v4 and v8 have rho ~ 0.1, so one bin's response scatters by ~0.1 on 1000 maps)."""
    from cmbml.lensing.evaluation import sky_estimator

    setup, simulator, test = _version(version, camb_cls, 1000)
    qe, _, _, m = _scores(setup, simulator, test, sky_estimator(simulator))
    assert m["qe_over_limit_max_z"] <= 2
    assert np.mean(qe.response) == pytest.approx(1.0, abs=0.1)


def test_first_order_response_is_one_when_weights_and_response_spectra_agree(camb_cls):
    """The normalisation N0 of an estimator whose response spectrum equals its weight spectrum makes its
    response to a small kappa exactly 1 (science notes: wrapped convolutions cut it to 0.65): measured by
    lensing the same T by +eps kappa and -eps kappa, which cancels the estimator's Gaussian noise (what is left
    scatters by about 1 % per bin on 300 maps)."""
    from cmbml.lensing.evaluation import first_order_response
    from cmbml.lensing.quadratic_estimator import QuadraticEstimator

    setup, simulator, test = _version("v4", camb_cls, 300)
    estimator = QuadraticEstimator.from_spectra(setup.grid, camb_cls["cl_tt_unlensed"], 0.0, setup.sim.T_lmax)
    response = first_order_response(estimator, test["T_unlensed"], test["kappa"], setup.rho_bin_edges)
    np.testing.assert_allclose(response, 1.0, atol=0.03)


def test_estimator_with_one_spectrum_reproduces_n0_kappa_and_survives_its_card(camb_cls):
    """QuadraticEstimator.from_spectra is the original estimator (n0_kappa, reconstruct_kappa) exactly, and its
    JSON form (stored in a physics-informed network's model card) rebuilds it."""
    import json

    from cmbml.common.flatsky import FlatGrid, gaussian_realisation
    from cmbml.lensing.quadratic_estimator import QuadraticEstimator, n0_kappa, reconstruct_kappa

    grid = FlatGrid(32, 27.48)
    est = QuadraticEstimator.from_spectra(grid, camb_cls["cl_tt_lensed"], 5.0, 383)
    n0 = n0_kappa(grid, camb_cls["cl_tt_lensed"], 5.0, 383)
    finite = np.isfinite(n0)
    np.testing.assert_allclose(est.n0[finite], n0[finite], rtol=1e-10)
    t = np.stack(
        [
            gaussian_realisation(grid, grid.cl_on_grid(camb_cls["cl_tt_lensed"], 383), np.random.default_rng(i))
            for i in range(3)
        ]
    )
    np.testing.assert_allclose(
        est.reconstruct(t), reconstruct_kappa(grid, t, camb_cls["cl_tt_lensed"], 5.0, 383), rtol=1e-9, atol=1e-12
    )
    again = QuadraticEstimator.from_dict(json.loads(json.dumps(est.to_dict())))
    np.testing.assert_array_equal(again.reconstruct(t), est.reconstruct(t))
    with pytest.raises(ValueError, match="shells"):
        QuadraticEstimator(grid, est.cl_weight[:-1], est.cl_total, est.cl_response)


def test_jackknife_error_of_rho_matches_the_gaussian_formula():
    """For Gaussian fields with correlation rho, the standard error of rho measured on n independent modes is
    (1 - rho^2) / sqrt(n); the delete-a-group jackknife over maps reproduces it within 20 %."""
    from cmbml.common.flatsky import FlatGrid, linear_bins
    from cmbml.lensing.metrics import correlation_spectra, jackknife

    grid = FlatGrid(32, 10.0)
    rng = np.random.default_rng(1)
    truth = rng.standard_normal((600, 32, 32))
    rho_true = 0.3
    pred = rho_true * truth + np.sqrt(1 - rho_true**2) * rng.standard_normal(truth.shape)
    edges = linear_bins(grid, 4 * grid.ell_fundamental, 0.7 * grid.ell_nyquist)  # the Nyquist row is real
    spectra = correlation_spectra(grid, pred, truth, edges)
    rho, err = jackknife(lambda s: s.rho, [spectra])
    expected = (1 - rho_true**2) / np.sqrt(spectra.n_modes * 600)  # a complex mode and its conjugate: 2 real ones
    np.testing.assert_allclose(err, expected, rtol=0.2)
    assert np.all(np.abs(rho - rho_true) < 4 * err)


def test_leak_guard_flags_a_network_that_sees_the_truth_and_not_one_that_matches_the_estimator(camb_cls):
    """A planted leak: a "network" whose output is the true kappa plus noise, with rho above the quadratic
    estimator's and above what an optimal estimator could reach (its limit with 20 % less noise) by far more
    than the scatter, is flagged at physical kappa (v4); the estimator's own map is not; an exaggerated version
    (no bound applies) gets no flag at all."""
    from cmbml.lensing.evaluation import compare, leak_bound, sky_estimator
    from cmbml.lensing.metrics import correlation_spectra

    setup, simulator, test = _version("v4", camb_cls, 500)
    edges, grid = setup.rho_bin_edges, setup.grid
    kappa = test["kappa"].astype(np.float64)
    estimator = sky_estimator(simulator, 300)
    kappa_qe = estimator.reconstruct(test["T_lensed"])
    qe = correlation_spectra(grid, kappa_qe, kappa, edges)
    _, rho_opt = estimator.wiener_rho(simulator.cl_kk_grid, edges)
    bound = leak_bound(estimator, simulator.cl_kk_grid, edges, 0.2)
    assert np.all(bound > rho_opt)
    leaked = kappa + 3 * kappa.std() * np.random.default_rng(0).standard_normal(kappa.shape)
    leak = correlation_spectra(grid, leaked, kappa, edges)
    _, flagged = compare(leak, qe, rho_opt, physical=True, rho_bound=bound)
    assert flagged["rho_cnn_mean"] > 0.2 > flagged["rho_leak_bound_mean"] > flagged["rho_qe_mean"]
    assert flagged["leak_suspected"] == 1 and flagged["leak_z"] > 3
    _, honest = compare(
        correlation_spectra(grid, 2 * kappa_qe, kappa, edges), qe, rho_opt, physical=True, rho_bound=bound
    )
    assert honest["leak_suspected"] == 0 and honest["cnn_over_qe"] == pytest.approx(1.0)
    assert honest["cnn_over_qe_err"] < 1e-9  # the same map: the paired error vanishes
    _, exaggerated = compare(leak, qe, rho_opt, physical=False, rho_bound=bound)
    assert "leak_suspected" not in exaggerated


def test_leak_guard_lets_a_network_beat_the_estimator_where_the_estimator_is_not_optimal(camb_cls_13000):
    """On noise-free 0.86' maps (v5) the quadratic estimator is well below its own Gaussian limit (higher-order
    noise), so the optimum lies above it: a "network" with rho 0.78 in every bin (the truth plus an independent
    kappa map of the same spectrum) beats the estimator by far more than the scatter yet stays below the
    optimum's bound, and is not flagged; one with rho 0.95 exceeds the bound and is. Compared with the estimator
    alone (no bound), as a guard for noise-dominated maps does, the first would be flagged too."""
    from cmbml.lensing.evaluation import compare, leak_bound, sky_estimator
    from cmbml.lensing.metrics import correlation_spectra

    setup, simulator, test = _version("v5", camb_cls_13000, 400)
    edges, grid = setup.rho_bin_edges, setup.grid
    kappa = test["kappa"].astype(np.float64)
    estimator = sky_estimator(simulator, 300)
    qe = correlation_spectra(grid, estimator.reconstruct(test["T_lensed"]), kappa, edges)
    _, rho_opt = estimator.wiener_rho(simulator.cl_kk_grid, edges)
    bound = leak_bound(estimator, simulator.cl_kk_grid, edges, 0.2)
    other = np.roll(kappa, 1, axis=0)  # another map's kappa: independent, same spectrum

    def network(rho):
        return correlation_spectra(grid, kappa + np.sqrt(1 / rho**2 - 1) * other, kappa, edges)

    _, beyond_qe = compare(network(0.78), qe, rho_opt, physical=True, rho_bound=bound)
    assert beyond_qe["cnn_over_qe"] > 1.03 and beyond_qe["leak_suspected"] == 0
    _, against_qe_alone = compare(network(0.78), qe, rho_opt, physical=True)
    assert against_qe_alone["leak_suspected"] == 1
    _, beyond_optimum = compare(network(0.95), qe, rho_opt, physical=True, rho_bound=bound)
    assert beyond_optimum["leak_suspected"] == 1
