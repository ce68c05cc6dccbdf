"""Honest diagnostics of a separated map: cross-spectra with the label, not auto-spectra; a filter per patch as
the bound of what adapting to local foregrounds can gain; a network that sees Q and U together."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from cmbml.cenn.baselines import PerPatchWienerFilter, WienerFilter
from cmbml.cenn.evaluation import CrossDiagnostics, cenn_maps, cenn_metrics
from cmbml.cenn.fullsky import gauss_beam
from cmbml.cenn.namaster_flat import FlatSpectra
from cmbml.common.flatsky import FlatGrid

GRID = FlatGrid(32, 12.0)
LMAX = 1200
ELL = np.arange(LMAX + 1)
CL = 1.0 / (ELL + 60.0) ** 2 * 1e4
RESPONSE = np.stack([gauss_beam(f, LMAX) / gauss_beam(7.2, LMAX) for f in (9.7, 7.2, 4.9)])


def gaussian_maps(n, cl, rng, grid=GRID):
    """Periodic Gaussian fields (n, npix, npix) with spectrum ``cl``."""
    amp = np.sqrt(grid.cl_on_grid(cl) * grid.npix**2 / grid.dx**2)
    white = rng.standard_normal((n, grid.npix, grid.npix))
    return np.fft.ifft2(amp * np.fft.fft2(white, axes=(1, 2)) / grid.npix, axes=(1, 2)).real


def test_cross_spectra_measure_the_response_that_auto_spectra_confuse_with_noise():
    """An estimate 0.7 x label + independent noise: the cross-spectrum with the label gives response 0.7 and the
    noise as uncorrelated power; the auto-power ratio (the old "transfer") reads 0.7^2 + noise/label and would
    call noise signal."""
    rng = np.random.default_rng(0)
    n, bins = 400, 4
    label = rng.gamma(5.0, 1.0, (n, bins))  # per-patch label power
    noise = 0.3 * label.mean()
    # spectra of a = 0.7 t + e: <a a> = 0.49 L + N, <a t> = 0.7 L (+ scatter of t e, mean zero)
    cross = 0.7 * label + 0.05 * rng.standard_normal((n, bins))
    auto = 0.49 * label + noise + 0.05 * rng.standard_normal((n, bins))
    d = CrossDiagnostics(auto, cross, label).over_range(np.ones(bins, bool))
    assert d["response"] == pytest.approx(0.7, abs=0.01)
    assert d["uncorrelated"] == pytest.approx(noise, rel=0.05)
    assert d["auto_ratio"] == pytest.approx(0.49 + noise / label.mean(), rel=0.02)
    assert d["correlation"] == pytest.approx(0.7 / np.sqrt(0.49 + noise / label.mean()), rel=0.02)


def test_namaster_cross_of_an_estimate_with_the_label_is_unbiased_by_noise():
    """On flat Gaussian patches, NaMaster's cross-spectrum of (label + white noise) with the label recovers the
    label's power (response 1), and the power uncorrelated with the label is the white noise's, sigma^2 times the
    pixel solid angle; the auto-power ratio counts that noise as signal."""
    rng = np.random.default_rng(1)
    est = FlatSpectra(GRID, np.arange(GRID.ell_fundamental, 600, 2 * GRID.ell_fundamental), 0, 2.0, "EE")
    label = gaussian_maps(60, CL, rng)
    sigma = 0.5 * label.std()
    noisy = label + sigma * rng.standard_normal(label.shape)
    cross, auto, lab = [], [], []
    for t, a in zip(label, noisy):
        ft, fa = est.field([t]), est.field([a])
        cross.append(est.cross(fa, ft)["EE"])
        auto.append(est.cross(fa, fa)["EE"])
        lab.append(est.cross(ft, ft)["EE"])
    d = CrossDiagnostics(np.array(auto), np.array(cross), np.array(lab)).per_bin()
    np.testing.assert_allclose(d["response"], 1.0, atol=0.05)
    white = sigma**2 * GRID.dx**2
    assert np.mean(d["uncorrelated"]) == pytest.approx(white, rel=0.1)
    np.testing.assert_allclose(d["uncorrelated"], white, rtol=0.3)  # 60 patches: ~10 % scatter per bin
    assert np.all(d["auto_ratio"] > d["response"])
    np.testing.assert_allclose(est.spectra([noisy[0]])["EE"], auto[0], rtol=1e-12)


def test_a_filter_per_patch_gains_where_the_foregrounds_spectra_vary_from_patch_to_patch():
    """The per-patch Wiener oracle (each patch's own foreground power) beats the global filter when the foregrounds'
    frequency dependence differs between patches (a global filter must then null two directions in channel space,
    each patch's own only one), and is never worse than the global filter where only the amplitude varies (there
    one fixed direction is nulled by both): the gap is the room an estimator that adapts to local foregrounds has."""
    rng = np.random.default_rng(2)
    n = 40
    cmb = gaussian_maps(n, CL, rng)[..., None]
    amplitudes = rng.choice([0.1, 3.0], n)
    two_seds = np.where((np.arange(n) % 2 == 0)[:, None], [0.4, 1.0, 3.0], [3.0, 1.0, 0.4])
    for seds, gains in ((np.tile([0.4, 1.0, 3.0], (n, 1)), False), (two_seds, True)):
        fg = amplitudes[:, None, None, None] * gaussian_maps(n, 2 * CL, rng)[..., None] * seds[:, None, None, :]
        inputs = {"E": cmb * RESPONSE[:, 0] + fg + 0.05 * rng.standard_normal((n, 32, 32, 3))}
        labels = {"E": cmb}
        nuisance = WienerFilter.nuisance_from_train([(inputs, labels)], GRID, RESPONSE, 2 * GRID.ell_fundamental)
        glob = WienerFilter.build(GRID, {"E": CL}, RESPONSE, nuisance).apply(inputs)["E"]
        local = PerPatchWienerFilter.build(inputs, labels, GRID, {"E": CL}, RESPONSE, 2 * GRID.ell_fundamental).apply(
            inputs
        )["E"]
        mse_global, mse_local = np.mean((glob - cmb[..., 0]) ** 2), np.mean((local - cmb[..., 0]) ** 2)
        if gains:
            assert mse_local < 0.2 * mse_global
        else:
            assert mse_global * 0.8 < mse_local <= mse_global * 1.01


def test_a_per_patch_filter_refuses_other_patches():
    rng = np.random.default_rng(3)
    x = {"E": rng.standard_normal((3, 32, 32, 3))}
    f = PerPatchWienerFilter.build(x, {"E": x["E"][..., 1:2]}, GRID, {"E": CL}, RESPONSE, 120.0)
    with pytest.raises(ValueError, match="those patches only"):
        f.apply({"E": x["E"][:2]})


def test_the_leak_flag_allows_for_the_wiener_filters_known_excess():
    """A network 10% below the Wiener filter's MSE, where the filter's own prediction for periodic Gaussian patches
    lies 15% below its measured MSE, is not flagged (the filter is not the optimum on these patches); with a floor
    at the measured MSE the same network is flagged."""
    rng = np.random.default_rng(4)
    n = 300
    label = rng.standard_normal((n, 8, 8, 1))
    wiener = label[..., 0] + rng.standard_normal((n, 8, 8))
    network = label[..., 0] + np.sqrt(0.9) * rng.standard_normal((n, 8, 8))
    maps = {"E": cenn_maps(np.repeat(label, 3, -1), label, {"network": network, "wiener": wiener}, target=1)}
    cl = {
        name: {"EE": np.ones((n, 2))} for name in ("label", "network", "wiener", "network residual", "wiener residual")
    }
    ratio = np.mean((network - label[..., 0]) ** 2) / np.mean((wiener - label[..., 0]) ** 2)
    assert ratio < 0.95
    allowed = cenn_metrics(maps, np.array([100.0, 300.0]), cl, [(0, 1000)], n, reference_floor_uK2=0.85)
    assert allowed["leak_suspected"] == 0.0 and allowed["leak_floor_uK2"] == 0.85
    strict = cenn_metrics(maps, np.array([100.0, 300.0]), cl, [(0, 1000)], n)
    assert strict["leak_suspected"] == 1.0


def test_jackknife_errors_stand_beside_the_independent_area_errors():
    """With CMB-realisation and sky-block groups the MSE ratio carries both jackknife errors."""
    rng = np.random.default_rng(5)
    n = 120
    label = rng.standard_normal((n, 8, 8, 1))
    maps = {
        "E": cenn_maps(
            np.repeat(label, 3, -1),
            label,
            {
                "network": label[..., 0] + rng.standard_normal((n, 8, 8)),
                "wiener": label[..., 0] + rng.standard_normal((n, 8, 8)),
            },
            target=1,
        )
    }
    cl = {
        name: {"EE": np.ones((n, 2))} for name in ("label", "network", "wiener", "network residual", "wiener residual")
    }
    groups = {"cmb": np.arange(n) % 6, "sky": np.arange(n) // 12}
    m = cenn_metrics(maps, np.array([100.0, 300.0]), cl, [(0, 1000)], n, groups=groups)
    for key in ("mse_over_wiener_err_jk_cmb", "mse_over_wiener_err_jk_sky", "map_mse_network_err_jk_sky_uK2"):
        assert 0 < m[key] < 1, key


def test_the_qu_network_sees_q_and_u_together(tmp_path):
    """Q and U patch files are joined along channels ([Q at each frequency, U at each frequency]) for training
    and prediction, and the network returns both Stokes maps."""
    from cmbml.cenn.networks import ARCHITECTURES
    from cmbml.common.prediction import predict_h5
    from cmbml.common.training import H5Batches, stacked_mean_std

    rng = np.random.default_rng(6)
    files = []
    for k, comp in enumerate("QU"):
        path = tmp_path / f"{comp}.h5"
        with h5py.File(path, "w") as h5:
            h5["M"] = (10.0 * k + rng.standard_normal((5, 16, 16, 3))).astype(np.float32)
            h5["M0"] = (10.0 * k + rng.standard_normal((5, 16, 16, 1))).astype(np.float32)
        files.append(path)
    x_stats = stacked_mean_std(files, "M")
    assert len(x_stats[0]) == 6 and x_stats[0][3] == pytest.approx(10.0, abs=0.5)
    batches = H5Batches(files, "M", "M0", 4, x_stats, stacked_mean_std(files, "M0"), stack_channels=True)
    x, y = batches.batch(0, 0)
    assert x.shape == (4, 16, 16, 6) and y.shape == (4, 16, 16, 2) and batches.x_shape == (16, 16, 6)
    assert abs(x.mean()) < 0.2 and len(batches) == 2
    net = ARCHITECTURES["original"].build(ARCHITECTURES["original"].Params(), n_channels=6, l2=1e-6, n_outputs=2)
    out = predict_h5(net, files, "M", batch=2)
    assert out.shape == (5, 16, 16, 2)
    with h5py.File(files[0], "r") as q, h5py.File(files[1], "r") as u:
        joined = np.concatenate([q["M"][:], u["M"][:]], axis=-1)
    np.testing.assert_allclose(out, net.predict(joined, verbose=0), rtol=1e-5, atol=1e-6)
