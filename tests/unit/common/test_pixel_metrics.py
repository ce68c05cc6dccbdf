"""Pixel metrics (MAE, RMSE, NRMSE, PSNR, R^2).

Facts checked: each metric's value on maps where it is known in closed form; the error of the mean counts
independent samples, not patches.
"""

import numpy as np
import pytest

from cmbml.common.pixel_metrics import per_sample_pixel_metrics, pixel_scores


def test_each_metric_on_a_known_error():
    """Truth +-1 in a checkerboard, estimate off by a constant 0.5: MAE = RMSE = 0.5, NRMSE = 0.5 (truth rms 1),
    PSNR = 10 log10(2^2 / 0.25) dB, R^2 = 1 - 0.25 / 1."""
    truth = np.indices((8, 8)).sum(axis=0) % 2 * 2.0 - 1.0
    got = per_sample_pixel_metrics(truth[None] + 0.5, truth[None])
    assert got["mae"][0] == pytest.approx(0.5)
    assert got["rmse"][0] == pytest.approx(0.5)
    assert got["nrmse"][0] == pytest.approx(0.5)
    assert got["psnr_db"][0] == pytest.approx(10 * np.log10(16.0))
    assert got["r2"][0] == pytest.approx(0.75)


def test_a_zero_estimate_explains_nothing_and_the_truth_everything():
    rng = np.random.default_rng(0)
    truth = rng.normal(size=(5, 16, 16))
    truth -= truth.mean(axis=(1, 2), keepdims=True)
    assert per_sample_pixel_metrics(np.zeros_like(truth), truth)["r2"] == pytest.approx(np.zeros(5))
    assert per_sample_pixel_metrics(np.zeros_like(truth), truth)["nrmse"] == pytest.approx(np.ones(5))
    exact = per_sample_pixel_metrics(truth, truth)
    assert np.all(exact["r2"] == 1) and np.all(exact["mae"] == 0) and np.all(np.isinf(exact["psnr_db"]))


def test_the_error_of_the_mean_counts_independent_samples():
    rng = np.random.default_rng(1)
    truth = rng.normal(size=(40, 8, 8))
    estimate = truth + rng.normal(size=truth.shape) * rng.uniform(0.1, 1.0, size=(40, 1, 1))
    rmse = per_sample_pixel_metrics(estimate, truth)["rmse"]
    all_independent, overlapping = pixel_scores(estimate, truth, 40), pixel_scores(estimate, truth, 10)
    assert all_independent["rmse"] == pytest.approx(rmse.mean())
    assert all_independent["rmse_err"] == pytest.approx(rmse.std() / np.sqrt(40))
    assert overlapping["rmse_err"] == pytest.approx(2 * all_independent["rmse_err"])


def test_shapes_must_agree():
    with pytest.raises(ValueError, match="allowed equal shapes"):
        per_sample_pixel_metrics(np.zeros((2, 4, 4)), np.zeros((2, 4, 5)))


def test_names_carry_the_method_the_error_and_the_map_units():
    from cmbml.common.pixel_metrics import pixel_metric_name

    assert pixel_metric_name("rmse_err", "wiener", "uK") == "pixel_rmse_wiener_err_uK"
    assert pixel_metric_name("r2", "network", "uK") == "pixel_r2_network"
    assert pixel_metric_name("mae", "cnn") == "pixel_mae_cnn"  # kappa: dimensionless
