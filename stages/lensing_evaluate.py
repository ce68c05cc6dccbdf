"""Stage `lensing_evaluate`: MSE and rho(L) of the predicted kappa on the test split beside the TT
quadratic estimator on the same maps and its linear-theory limit; plots; metrics to DVC and MLflow."""

from __future__ import annotations

from cmbml.common.roles import EVALUATION
from stages.tracking import log_evaluation


def main() -> None:
    from cmbml.common.gate import require_passed
    from cmbml.lensing.setup import load

    setup = load()
    require_passed(setup.paths.validation)

    import h5py
    import keras
    import numpy as np

    from cmbml.common.prediction import predict_h5
    from cmbml.common.io import write_json
    from cmbml.lensing.metrics import correlation_spectra, mse
    from cmbml.lensing.plots import kappa_units, plot_kappa_power, plot_rho
    from cmbml.common.plotting import plot_map_columns
    from cmbml.lensing.quadratic_estimator import binned_n0, binned_wiener_rho, n0_kappa, reconstruct_kappa
    from cmbml.common.spectra import read_spectra_csv

    paths, grid, sim, edges = setup.paths, setup.grid, setup.sim, setup.rho_bin_edges
    model = keras.models.load_model(paths.model)
    kappa_pred = predict_h5(model, paths.evaluation, "T_lensed", batch=256, add_channel_axis=True)
    with h5py.File(paths.evaluation, "r") as h5:
        kappa_true, t_lensed = h5["kappa"][:], h5["T_lensed"][:]

    # rho(L) in bins of at least the fundamental mode, up to the kappa band limit.
    cnn = correlation_spectra(grid, kappa_pred.astype(np.float64), kappa_true.astype(np.float64), edges)
    # Beside it: the TT quadratic estimator run on the same test maps (non-perturbative lensing included) ...
    camb = read_spectra_csv(paths.camb_cls)
    n0 = n0_kappa(grid, camb["cl_tt_lensed"], sim.noise_uK_arcmin, sim.T_lmax)
    kappa_qe = reconstruct_kappa(grid, t_lensed.astype(np.float64), camb["cl_tt_lensed"], sim.noise_uK_arcmin,
                                 sim.T_lmax, n0=n0)
    qe = correlation_spectra(grid, kappa_qe, kappa_true.astype(np.float64), edges)
    # ... and its Wiener limit in linear theory, sqrt(C / (C + N0)), on the same grid and bins.
    _, rho_opt = binned_wiener_rho(grid, sim.kappa_power_on_grid(camb["cl_kk"]), n0, edges)
    n0_binned = binned_n0(grid, n0, edges)
    per_bin = [{"L": float(ell), "rho_cnn": float(cnn.rho[i]), "rho_qe": float(qe.rho[i]), "rho_opt": float(rho_opt[i]),
                "response_cnn": float(cnn.response[i]), "response_qe": float(qe.response[i]),
                "noise_cnn": float(cnn.effective_noise[i]), "n0": float(n0_binned[i]),
                "cl_kk": float(cnn.cl_true[i])} for i, ell in enumerate(cnn.ell)]
    metrics = {
        "mse_kappa": mse(kappa_pred, kappa_true),
        "mse_kappa_over_var": mse(kappa_pred, kappa_true) / float(np.var(kappa_true)),
        "rho_cnn_mean": float(np.mean(cnn.rho)),
        "rho_qe_mean": float(np.mean(qe.rho)),
        "rho_opt_mean": float(np.mean(rho_opt)),
        "cnn_over_qe_min": float(np.min(cnn.rho / qe.rho)),
        "n_evaluation": int(kappa_true.shape[0]),
    }
    write_json(paths.metrics, metrics)
    write_json(paths.rho, {"rho_L": per_bin})

    n_ex, plots, title = setup.n_example_maps, paths.evaluate_plots, f"lensing {setup.version}"
    plot_map_columns({"lensed T": t_lensed[:n_ex], "true kappa": kappa_true[:n_ex],
                      "predicted kappa": kappa_pred[:n_ex], "residual": (kappa_pred - kappa_true)[:n_ex]},
                     plots / "example_maps.png", grid.side_deg, kappa_units(sim.kappa_exaggeration_factor),
                     f"{title}: test maps", same_scale_as={"predicted kappa": "true kappa", "residual": "true kappa"},
                     column_units={"lensed T": "T [µK]"})
    plot_rho(cnn.ell, cnn.rho, plots / "rho_L.png", f"{title}: CNN vs true kappa",
             references=[(cnn.ell, qe.rho, "TT quadratic estimator on the test maps")],
             limits=[(cnn.ell, rho_opt, "TT quadratic estimator, Wiener limit (linear theory)")],
             n_modes=cnn.n_modes * kappa_true.shape[0], exaggeration=sim.kappa_exaggeration_factor)
    plot_kappa_power(cnn.ell, {"true kappa": cnn.cl_true, "predicted kappa": cnn.cl_pred},
                     {"CNN effective noise": cnn.effective_noise, "QE noise N0": n0_binned},
                     cnn.n_modes * kappa_true.shape[0], plots / "kappa_power.png", f"{title}: kappa power and noise",
                     cl_kk=camb["cl_kk"], exaggeration=sim.kappa_exaggeration_factor)

    log_evaluation(setup.tracking, paths.model, EVALUATION, metrics, [*sorted(plots.glob("*.png")), paths.metrics],
                   tables={"rho_L.json": per_bin}, stage="lensing_evaluate", datasets=[paths.evaluation])
    print(f"lensing_evaluate: {setup.version} rho: CNN {metrics['rho_cnn_mean']:.3f}, QE {metrics['rho_qe_mean']:.3f}, "
          f"QE limit {metrics['rho_opt_mean']:.3f}; MSE/var = {metrics['mse_kappa_over_var']:.3f} "
          f"on {metrics['n_evaluation']} evaluation maps")
