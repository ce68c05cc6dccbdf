"""Stage `lensing_evaluate`: MSE and rho(L) of the predicted kappa on the test split beside the TT
quadratic estimator on the same maps and its linear-theory limit; plots; metrics to DVC and MLflow."""

from __future__ import annotations

from stages._tracking import log_evaluation


def main() -> None:
    from cmbml.gate import require_passed
    from cmbml.lensing_config import load

    setup = load()
    require_passed(setup.paths.validation)

    import h5py
    import keras
    import numpy as np

    from cmbml.evaluation import predict_h5
    from cmbml.io import write_json
    from cmbml.metrics import correlation_spectra, mse
    from cmbml.plots import plot_binned_spectra, plot_map_columns, plot_rho
    from cmbml.quadratic_estimator import binned_wiener_rho, n0_kappa, reconstruct_kappa
    from cmbml.spectra import read_spectra_csv

    paths, grid, sim, edges = setup.paths, setup.grid, setup.sim, setup.rho_bin_edges
    model = keras.models.load_model(paths.model)
    kappa_pred = predict_h5(model, paths.test, "T_lensed", batch=256, add_channel_axis=True)
    with h5py.File(paths.test, "r") as h5:
        kappa_true, t_lensed = h5["kappa"][:], h5["T_lensed"][:]

    # rho(L) in bins of at least the fundamental mode, up to the kappa band limit.
    spectra = correlation_spectra(grid, kappa_pred.astype(np.float64), kappa_true.astype(np.float64), edges)
    rho = spectra.rho
    # Benchmark: the Wiener-filtered TT quadratic estimator in linear theory on the same grid and bins ...
    camb = read_spectra_csv(paths.camb_cls)
    n0 = n0_kappa(grid, camb["cl_tt_lensed"], sim.noise_uK_arcmin, sim.T_lmax)
    _, rho_qe = binned_wiener_rho(grid, sim.kappa_power_on_grid(camb["cl_kk"]), n0, edges)
    # ... and the same estimator run on the test maps (measured, non-perturbative lensing included).
    kappa_qe = reconstruct_kappa(grid, t_lensed.astype(np.float64), camb["cl_tt_lensed"], sim.noise_uK_arcmin,
                                 sim.T_lmax, n0=n0)
    rho_qe_measured = correlation_spectra(grid, kappa_qe, kappa_true.astype(np.float64), edges).rho
    metrics = {
        "mse_kappa": mse(kappa_pred, kappa_true),
        "mse_kappa_over_var": mse(kappa_pred, kappa_true) / float(np.var(kappa_true)),
        "rho_mean": float(np.mean(rho)),
        "rho_qe_theory_mean": float(np.mean(rho_qe)),
        "rho_qe_mean": float(np.mean(rho_qe_measured)),
        "n_test": int(kappa_true.shape[0]),
        **{f"rho_L{int(round(ell))}": float(r) for ell, r in zip(spectra.ell, rho)},
    }
    write_json(paths.metrics, metrics)
    write_json(paths.rho, {"rho_L": [
        {"L": float(ell), "rho": float(r), "rho_qe": float(m), "rho_qe_theory": float(q)}
        for ell, r, m, q in zip(spectra.ell, rho, rho_qe_measured, rho_qe)]})

    n_ex, plots, title = setup.n_example_maps, paths.evaluate_plots, f"lensing {setup.version}"
    plot_map_columns({"lensed T [uK]": t_lensed[:n_ex], "true kappa": kappa_true[:n_ex],
                      "predicted kappa": kappa_pred[:n_ex], "residual": (kappa_pred - kappa_true)[:n_ex]},
                     plots / "example_maps.png", grid.side_deg, "", f"{title}: test maps",
                     same_scale_as={"predicted kappa": "true kappa", "residual": "true kappa"})
    plot_rho(spectra.ell, rho, plots / "rho_L.png", f"{title}: CNN vs true kappa",
             references=[(spectra.ell, rho_qe_measured, "TT quadratic estimator on the test maps"),
                         (spectra.ell, rho_qe, "TT quadratic estimator, linear theory")])
    plot_binned_spectra(spectra.ell, {"true kappa": spectra.cl_true, "predicted kappa": spectra.cl_pred,
                                      "cross": np.abs(spectra.cl_cross)},
                        plots / "kappa_power.png", r"$C_L^{\kappa\kappa}$", f"{title}: kappa power")

    log_evaluation(setup.tracking, paths.mlflow_run, "test", metrics, [*sorted(plots.glob("*.png")), paths.metrics])
    print(f"lensing_evaluate: {setup.version} rho_mean = {metrics['rho_mean']:.3f}, "
          f"MSE/var = {metrics['mse_kappa_over_var']:.3f} on {metrics['n_test']} test maps")
