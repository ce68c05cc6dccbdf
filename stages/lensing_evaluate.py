"""Stage `lensing_evaluate`: rho(L) of the predicted kappa on the evaluation maps beside the TT quadratic
estimator run on the same maps with the spectra of the version's own sky, and that estimator's limit; errors,
the leak guard, plots; metrics to DVC and MLflow."""

from __future__ import annotations

from cmbml.common.roles import EVALUATION
from stages.tracking import log_evaluation


def main() -> None:
    from cmbml.common.gate import require_passed
    from cmbml.lensing.setup import load

    setup = load()
    require_passed(setup.paths.validation)

    import json

    import h5py
    import keras
    import numpy as np

    from cmbml.common.io import write_json
    from cmbml.common.plotting import plot_map_columns
    from cmbml.common.prediction import predict_h5
    from cmbml.lensing.evaluation import compare, first_order_response, leak_bound, sky_estimator
    from cmbml.lensing.inputs import InputMaker
    from cmbml.lensing.metrics import correlation_spectra, mse
    from cmbml.lensing.plots import kappa_units, plot_kappa_power, plot_rho
    from cmbml.lensing.quadratic_estimator import binned_n0
    from cmbml.common.spectra import read_spectra_csv

    paths, grid, sim, edges = setup.paths, setup.grid, setup.sim, setup.rho_bin_edges
    # The network, given the input channels its model card names (derived ones rebuilt from T).
    model = keras.models.load_model(paths.model, safe_mode=True)
    card = json.loads(paths.model_card.read_text())
    maker = InputMaker.from_card(card["input"]["derived"]) if "derived" in card["input"] else InputMaker(("T",))
    kappa_pred = predict_h5(model, paths.evaluation, "T_lensed", batch=256, add_channel_axis=True,
                            transform=maker if maker.derived else None)
    with h5py.File(paths.evaluation, "r") as h5:
        kappa_true, t_lensed = h5["kappa"][:].astype(np.float64), h5["T_lensed"][:]
        t_unlensed = h5["T_unlensed"][:300]

    # The TT quadratic estimator with the spectra of these maps' sky (measured on simulations of it), run on
    # the same maps, and its limit in linear theory sqrt(C / (C + N0)) on the same grid and bins.
    simulator = setup.simulator()
    estimator = sky_estimator(simulator)
    cl_kk_grid = simulator.cl_kk_grid
    network = correlation_spectra(grid, kappa_pred.astype(np.float64), kappa_true, edges)
    qe = correlation_spectra(grid, estimator.reconstruct(t_lensed), kappa_true, edges)
    _, rho_opt = estimator.wiener_rho(cl_kk_grid, edges)
    # rho with jackknife errors; at physical kappa a network above both the estimator and what an optimal
    # estimator could reach (the limit with N0 reduced by the largest published gain) is flagged as a leak.
    physical = sim.kappa_exaggeration_factor == 1 and not sim.same_T_realisation
    bound = leak_bound(estimator, cl_kk_grid, edges, setup.optimal_n0_gain)
    per_bin, scores = compare(network, qe, rho_opt, physical, rho_bound=bound)
    first_order = first_order_response(estimator, t_unlensed, kappa_true[:300], edges, sim.remap, sim.remap_epsilon,
                                       oversampling=sim.oversampling)
    n0_binned = binned_n0(grid, estimator.n0, edges)
    for i, row in enumerate(per_bin):
        row.update({"response_qe_first_order": float(first_order[i]), "n0": float(n0_binned[i])})
    metrics = {
        "mse_kappa": mse(kappa_pred, kappa_true),
        "mse_kappa_over_var": mse(kappa_pred, kappa_true) / float(np.var(kappa_true)),
        **scores,
        "response_qe_mean": float(np.mean(qe.response)),
        "response_qe_first_order_mean": float(np.mean(first_order)),
        "n_evaluation": int(kappa_true.shape[0]),
    }
    write_json(paths.metrics, metrics)
    write_json(paths.rho, {"rho_L": per_bin, "architecture": setup.net_architecture})

    n_ex, plots = setup.n_example_maps, paths.evaluate_plots
    title = f"lensing {setup.version}, {setup.net_architecture}"
    plot_map_columns({"lensed T": t_lensed[:n_ex], "true kappa": kappa_true[:n_ex],
                      "predicted kappa": kappa_pred[:n_ex], "residual": (kappa_pred - kappa_true)[:n_ex]},
                     plots / "example_maps.png", grid.side_deg, kappa_units(sim.kappa_exaggeration_factor),
                     f"{title}: test maps", same_scale_as={"predicted kappa": "true kappa", "residual": "true kappa"},
                     column_units={"lensed T": "T [µK]"})
    plot_rho(network.ell, network.rho, plots / "rho_L.png", f"{title}: network vs true kappa",
             references=[(network.ell, qe.rho, "TT quadratic estimator on the test maps")],
             limits=[(network.ell, rho_opt, "TT quadratic estimator, Wiener limit (linear theory)")],
             n_modes=network.n_modes * kappa_true.shape[0], exaggeration=sim.kappa_exaggeration_factor)
    plot_kappa_power(network.ell, {"true kappa": network.cl_true, "predicted kappa": network.cl_pred},
                     {"network effective noise": network.effective_noise, "QE noise N0": n0_binned},
                     network.n_modes * kappa_true.shape[0], plots / "kappa_power.png",
                     f"{title}: kappa power and noise", cl_kk=read_spectra_csv(paths.camb_cls)["cl_kk"],
                     exaggeration=sim.kappa_exaggeration_factor)

    log_evaluation(setup.tracking, paths.model, EVALUATION, metrics, [*sorted(plots.glob("*.png")), paths.metrics],
                   tables={"rho_L.json": per_bin}, stage="lensing_evaluate", datasets=[paths.evaluation])
    leak = " LEAK SUSPECTED: the network beats what an optimal estimator could reach at physical kappa" \
        if metrics.get("leak_suspected") else ""
    print(f"lensing_evaluate: {setup.version} ({setup.net_architecture}) rho: network "
          f"{metrics['rho_cnn_mean']:.3f} +- {metrics['rho_cnn_mean_err']:.3f}, QE {metrics['rho_qe_mean']:.3f} +- "
          f"{metrics['rho_qe_mean_err']:.3f}, QE limit {metrics['rho_opt_mean']:.3f}; network / QE "
          f"{metrics['cnn_over_qe']:.3f} +- {metrics['cnn_over_qe_err']:.3f}; MSE/var = "
          f"{metrics['mse_kappa_over_var']:.3f} on {metrics['n_evaluation']} evaluation maps{leak}")
