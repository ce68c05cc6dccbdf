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

    import keras

    from cmbml.common.io import write_json
    from cmbml.common.prediction import predict_h5
    from cmbml.lensing.inputs import InputMaker

    paths = setup.paths
    # The network, given the input channels its model card names (derived ones rebuilt from T).
    model = keras.models.load_model(paths.model, safe_mode=True)
    card = json.loads(paths.model_card.read_text())
    maker = InputMaker.from_card(card["input"]["derived"]) if "derived" in card["input"] else InputMaker(("T",))
    kappa_pred = predict_h5(
        model,
        paths.evaluation,
        "T_lensed",
        batch=256,
        add_channel_axis=True,
        transform=maker if maker.derived else None,
    )
    metrics, per_bin, details = score_kappa(
        setup, kappa_pred, paths.evaluate_plots, f"lensing {setup.version}, {setup.net_architecture}", "network"
    )
    write_json(paths.metrics, metrics)
    write_json(paths.rho, {"rho_L": per_bin, "architecture": setup.net_architecture})
    log_evaluation(
        setup.tracking,
        paths.model,
        EVALUATION,
        metrics,
        [*sorted(paths.evaluate_plots.glob("*.png")), paths.metrics],
        tables={"rho_L.json": per_bin},
        stage="lensing_evaluate",
        datasets=[paths.evaluation],
        details=details,
    )
    print(f"lensing_evaluate: {setup.version} ({setup.net_architecture}) {summary_line(metrics)}")


def summary_line(metrics: dict) -> str:
    """rho of the scored method and of the quadratic estimator, the limit, their ratio, the leak flag."""
    leak = (
        " LEAK SUSPECTED: it beats what an optimal estimator could reach at physical kappa"
        if metrics.get("leak_suspected")
        else ""
    )
    return (
        f"rho: {metrics['rho_cnn_mean']:.3f} +- {metrics['rho_cnn_mean_err']:.3f}, QE {metrics['rho_qe_mean']:.3f} "
        f"+- {metrics['rho_qe_mean_err']:.3f}, QE limit {metrics['rho_opt_mean']:.3f}; / QE "
        f"{metrics['cnn_over_qe']:.3f} +- {metrics['cnn_over_qe_err']:.3f}; MSE/var = "
        f"{metrics['mse_kappa_over_var']:.3f} on {metrics['n_evaluation']} evaluation maps{leak}"
    )


def score_kappa(setup, kappa_pred, plots, title: str, label: str) -> tuple[dict, list[dict], dict]:
    """Every score of a kappa estimate ``kappa_pred`` (n, npix, npix[, 1]) of the evaluation maps, in their order,
    beside the quadratic estimator on the same maps (the network's scores and any other method's, by this code
    alone): summary metrics (rho, response, leak guard, pixel RMSE and R^2 of the estimate and of the
    Wiener-filtered estimator map), per-bin rows and every score (the summary and all pixel metrics); maps,
    rho(L) and power plotted into ``plots``, the estimate named ``label``."""
    import h5py
    import numpy as np

    from cmbml.common.pixel_metrics import pixel_metric_name, pixel_scores
    from cmbml.common.plotting import plot_map_columns
    from cmbml.common.spectra import read_spectra_csv
    from cmbml.lensing.evaluation import compare, first_order_response, leak_bound, sky_estimator
    from cmbml.lensing.metrics import correlation_spectra, mse
    from cmbml.lensing.plots import kappa_units, plot_kappa_power, plot_rho
    from cmbml.lensing.quadratic_estimator import binned_n0

    paths, grid, sim, edges = setup.paths, setup.grid, setup.sim, setup.rho_bin_edges
    kappa_pred = np.asarray(kappa_pred).reshape(-1, grid.npix, grid.npix)
    with h5py.File(paths.evaluation, "r") as h5:
        kappa_true, t_lensed = h5["kappa"][:].astype(np.float64), h5["T_lensed"][:]
        t_unlensed = h5["T_unlensed"][:300]

    # The TT quadratic estimator with the spectra of these maps' sky (measured on simulations of it), run on
    # the same maps, and its limit in linear theory sqrt(C / (C + N0)) on the same grid and bins.
    simulator = setup.simulator()
    estimator = sky_estimator(simulator)
    cl_kk_grid = simulator.cl_kk_grid
    network = correlation_spectra(grid, kappa_pred.astype(np.float64), kappa_true, edges)
    kappa_qe = estimator.reconstruct(t_lensed)
    qe = correlation_spectra(grid, kappa_qe, kappa_true, edges)
    _, rho_opt = estimator.wiener_rho(cl_kk_grid, edges)
    # rho with jackknife errors; at physical kappa an estimate above both the estimator and what an optimal
    # estimator could reach (the limit with N0 reduced by the largest published gain) is flagged as a leak.
    physical = sim.kappa_exaggeration_factor == 1 and not sim.same_T_realisation
    bound = leak_bound(estimator, cl_kk_grid, edges, setup.optimal_n0_gain)
    per_bin, scores = compare(network, qe, rho_opt, physical, rho_bound=bound)
    first_order = first_order_response(
        estimator, t_unlensed, kappa_true[:300], edges, sim.remap, sim.remap_epsilon, oversampling=sim.oversampling
    )
    n0_binned = binned_n0(grid, estimator.n0, edges)
    for i, row in enumerate(per_bin):
        row.update({"response_qe_first_order": float(first_order[i]), "n0": float(n0_binned[i])})
    n_maps = kappa_true.shape[0]  # independent maps
    # Pixel metrics of the estimate and of the classical minimum-variance map (the Wiener-filtered estimator).
    pixels = {
        pixel_metric_name(key, method): value
        for method, values in (
            ("cnn", pixel_scores(kappa_pred, kappa_true, n_maps)),
            ("qe_wiener", pixel_scores(estimator.wiener_filter(kappa_qe, cl_kk_grid), kappa_true, n_maps)),
        )
        for key, value in values.items()
    }
    metrics = {
        "mse_kappa": mse(kappa_pred, kappa_true),
        "mse_kappa_over_var": mse(kappa_pred, kappa_true) / float(np.var(kappa_true)),
        **scores,
        "response_qe_mean": float(np.mean(qe.response)),
        "response_qe_first_order_mean": float(np.mean(first_order)),
        **{k: v for k, v in pixels.items() if k.startswith(("pixel_rmse_", "pixel_r2_"))},  # the rest in details
        "n_evaluation": int(n_maps),
    }

    n_ex = setup.n_example_maps
    plot_map_columns(
        {
            "lensed T": t_lensed[:n_ex],
            "true kappa": kappa_true[:n_ex],
            f"{label} kappa": kappa_pred[:n_ex],
            "residual": (kappa_pred - kappa_true)[:n_ex],
        },
        plots / "example_maps.png",
        grid.side_deg,
        kappa_units(sim.kappa_exaggeration_factor),
        f"{title}: test maps",
        same_scale_as={f"{label} kappa": "true kappa", "residual": "true kappa"},
        column_units={"lensed T": "T [µK]"},
    )
    plot_rho(
        network.ell,
        network.rho,
        plots / "rho_L.png",
        f"{title}: {label} vs true kappa",
        references=[(network.ell, qe.rho, "TT quadratic estimator on the test maps")],
        limits=[(network.ell, rho_opt, "TT quadratic estimator, Wiener limit (linear theory)")],
        n_modes=network.n_modes * n_maps,
        exaggeration=sim.kappa_exaggeration_factor,
    )
    plot_kappa_power(
        network.ell,
        {"true kappa": network.cl_true, f"{label} kappa": network.cl_pred},
        {f"{label} effective noise": network.effective_noise, "QE noise N0": n0_binned},
        network.n_modes * n_maps,
        plots / "kappa_power.png",
        f"{title}: kappa power and noise",
        cl_kk=read_spectra_csv(paths.camb_cls)["cl_kk"],
        exaggeration=sim.kappa_exaggeration_factor,
    )
    return metrics, per_bin, {**metrics, **pixels}
