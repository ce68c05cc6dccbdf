"""Stage `lensing_evaluate`: MSE and rho(L) of the predicted kappa on the test split; plots; metrics to DVC and MLflow."""

from __future__ import annotations

from pathlib import Path

from stages._common import SPECTRA_CSV, stage_params
from stages._training import log_evaluation, require_validated
from stages.lensing_simulate import OUT_DIR
from stages.lensing_train import MODEL_FILE, RUN_FILE
from stages.lensing_validate import RESULT as VALIDATION_RESULT

METRICS = Path("metrics/lensing.json")
PLOT_DIR = Path("plots/lensing/evaluate")


def predict_streamed(model, path: Path, batch: int = 256):
    """Predictions for every test map, read from HDF5 in batches."""
    import h5py
    import numpy as np

    from cmbml.io import iter_chunks

    with h5py.File(path, "r") as h5:
        n = h5["T_lensed"].shape[0]
        out = np.empty(h5["kappa"].shape, dtype=np.float32)
        for sl in iter_chunks(n, batch):
            out[sl] = model.predict(h5["T_lensed"][sl][..., None], verbose=0)[..., 0]
        return out, h5["kappa"][:], h5["T_lensed"][:]


def main() -> None:
    params = stage_params("lensing")
    require_validated(VALIDATION_RESULT)

    import keras
    import numpy as np

    from cmbml.flatsky import linear_bins
    from cmbml.io import write_json
    from cmbml.metrics import correlation_spectra, mse
    from cmbml.params import lensing_grid
    from cmbml.plots import plot_binned_spectra, plot_map_triplets, plot_rho
    from cmbml.quadratic_estimator import binned_wiener_rho, n0_kappa, reconstruct_kappa
    from cmbml.spectra import read_spectra_csv

    version = params["lensing_version"]
    grid = lensing_grid(params)
    model = keras.models.load_model(MODEL_FILE)
    kappa_pred, kappa_true, t_lensed = predict_streamed(model, OUT_DIR / "test.h5")

    # rho(L) in bins of at least the fundamental mode, up to the kappa band limit.
    top = min(params["kappa_lmax"] or grid.ell_nyquist, grid.ell_nyquist)
    width = params["lensing_evaluate"]["rho_bin_width_in_fundamentals"] * grid.ell_fundamental
    edges = linear_bins(grid, width, top)
    spectra = correlation_spectra(grid, kappa_pred.astype(np.float64), kappa_true.astype(np.float64), edges)
    rho = spectra.rho
    # Benchmark: the Wiener-filtered TT quadratic estimator in linear theory on the same grid and bins.
    camb = read_spectra_csv(SPECTRA_CSV)
    n0 = n0_kappa(grid, camb["cl_tt_lensed"], params["noise_uK_arcmin"], 0.0, params["T_lmax"])
    cl_kk = grid.cl_on_grid(camb["cl_kk"], params["kappa_lmax"]) * params["kappa_exaggeration_factor"] ** 2
    _, rho_qe = binned_wiener_rho(grid, cl_kk, n0, edges)
    # ... and the same estimator run on the test maps (measured, non-perturbative lensing included).
    kappa_qe = reconstruct_kappa(grid, t_lensed.astype(np.float64), camb["cl_tt_lensed"], params["noise_uK_arcmin"],
                                 params["T_lmax"], n0=n0)
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
    write_json(METRICS, metrics)
    write_json(PLOT_DIR / "rho_L.json", {"rho_L": [
        {"L": float(ell), "rho": float(r), "rho_qe": float(m), "rho_qe_theory": float(q)}
        for ell, r, m, q in zip(spectra.ell, rho, rho_qe_measured, rho_qe)]})

    n_ex = params["lensing_evaluate"]["n_example_maps"]
    plot_map_triplets({"lensed T [uK]": t_lensed[:n_ex], "true kappa": kappa_true[:n_ex],
                       "predicted kappa": kappa_pred[:n_ex], "residual": (kappa_pred - kappa_true)[:n_ex]},
                      PLOT_DIR / "example_maps.png", grid.side_deg, "", f"lensing {version}: test maps",
                      same_scale_as={"predicted kappa": "true kappa", "residual": "true kappa"})
    plot_rho(spectra.ell, rho, PLOT_DIR / "rho_L.png", f"lensing {version}: CNN vs true kappa",
             references=[(spectra.ell, rho_qe_measured, "TT quadratic estimator on the test maps"),
                         (spectra.ell, rho_qe, "TT quadratic estimator, linear theory")])
    plot_binned_spectra(spectra.ell, {"true kappa": spectra.cl_true, "predicted kappa": spectra.cl_pred,
                                      "cross": np.abs(spectra.cl_cross)},
                        PLOT_DIR / "kappa_power.png", r"$C_L^{\kappa\kappa}$", f"lensing {version}: kappa power")

    log_evaluation(params, params["mlflow"]["lensing_experiment"], RUN_FILE, metrics,
                   [*sorted(PLOT_DIR.glob("*.png")), METRICS])
    print(f"lensing_evaluate: {version} rho_mean = {metrics['rho_mean']:.3f}, "
          f"MSE/var = {metrics['mse_kappa_over_var']:.3f} on {metrics['n_test']} test maps")
