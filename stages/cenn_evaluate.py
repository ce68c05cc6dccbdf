"""Stage `cenn_evaluate`: CENN on the held-out Validation patches, gated; NaMaster EE/BB of label, output
and residual against the beam-convolved theory; an ILC baseline; metrics and plots to DVC and MLflow."""

from __future__ import annotations

import sys
from pathlib import Path

from stages._common import SPECTRA_CSV, stage_params
from stages._training import log_evaluation, require_validated
from stages.cenn_simulate import dataset_path, target_index
from stages.cenn_train import MODEL_FILE, RUN_FILE
from stages.cenn_validate import RESULT as VALIDATION_RESULT

METRICS = Path("metrics/cenn.json")
PLOT_DIR = Path("plots/cenn/evaluate")
OUTPUT_GATE_DIR = Path("reports/cenn_outputs")


def predict(model, path: Path, batch: int = 64):
    """Inputs, labels and network outputs of a Validation file, predicted in batches."""
    import h5py
    import numpy as np

    from cmbml.io import iter_chunks

    with h5py.File(path, "r") as h5:
        m, m0 = h5["M"][:], h5["M0"][:]
    out = np.concatenate([model.predict(m[sl], verbose=0) for sl in iter_chunks(m.shape[0], batch)])
    return m, m0, out


def gate_outputs(outputs: dict, labels: dict) -> None:
    """The network outputs must have the labels' shape and be finite before NaMaster sees them."""
    from cmbml.cenn_validation import prediction_expectations, prediction_table
    from cmbml.gate import GateTable, run_gate
    from cmbml.io import write_json

    tables = [GateTable(f"outputs_{c}", prediction_table(outputs[c], labels[c].shape),
                        prediction_expectations(labels[c].shape[0])) for c in outputs]
    result = run_gate(OUTPUT_GATE_DIR, "cenn_outputs", tables)
    write_json(OUTPUT_GATE_DIR / "validation.json", result.as_dict())
    if not result.success:
        sys.exit("cenn_evaluate: network outputs FAILED validation:\n  - " + "\n  - ".join(result.failures))


def main() -> None:
    params = stage_params("cenn")
    require_validated(VALIDATION_RESULT)

    import keras
    import numpy as np

    from cmbml.cenn_sim import read_instrument
    from cmbml.ilc import pixel_ilc
    from cmbml.io import write_json
    from cmbml.namaster_flat import FlatSpectra
    from cmbml.plots import plot_cenn_patches, plot_cenn_spectra
    from cmbml.sky import gauss_beam, interpolation_window
    from cmbml.spectra import cl_to_dl, read_spectra_csv

    scale, variant, ev = params["scale"]["cenn"], params["cenn"], params["cenn_evaluate"]
    channels = read_instrument(params["instrument"]["table"])
    target = target_index(channels, params["instrument"]["target_GHz"])
    model = keras.models.load_model(MODEL_FILE)
    inputs, labels, outputs = {}, {}, {}
    for comp in variant["components"]:
        inputs[comp], labels[comp], outputs[comp] = predict(model, dataset_path("Validation", comp))
    gate_outputs(outputs, labels)

    # Crop the patch edges, where the convolutions see padding, before measuring spectra.
    c = scale["crop_pixels"]
    crop = (slice(None), slice(c, -c or None), slice(c, -c or None))
    maps = {comp: {"label": labels[comp][crop][..., 0], "output": outputs[comp][crop][..., 0],
                   "ILC": pixel_ilc(inputs[comp][crop]), "input": inputs[comp][crop][..., target]}
            for comp in variant["components"]}
    for m in maps.values():
        m["residual"], m["ILC residual"] = m["output"] - m["label"], m["ILC"] - m["label"]

    npix = scale["npix"] - 2 * c
    side_deg = npix * scale["pixel_arcmin"] / 60.0
    lmax = min(3 * scale["nside"] - 1, 180.0 * 60.0 / scale["pixel_arcmin"])
    edges = np.arange(360.0 / side_deg, lmax, ev["bin_width"])
    spin = 2 if variant["components"] == ["Q", "U"] else 0
    estimator = FlatSpectra(npix, side_deg, edges, spin, ev["apodization_deg"])
    names = ["label", "output", "residual", "ILC", "ILC residual"]
    n_val = labels[variant["components"][0]].shape[0]
    per_patch = {name: [] for name in names}
    for i in range(n_val):
        for name in names:
            fields = [maps[comp][name][i] for comp in variant["components"]]
            cl = estimator.spectra(fields)
            per_patch[name].append(cl if spin == 2 else {variant["spectra"][0]: cl["TT"]})
    measured = variant["spectra"]  # EE and/or BB
    dl = {name: {s: cl_to_dl(estimator.ell, np.array([p[s] for p in per_patch[name]])) for s in measured}
          for name in names}

    camb = read_spectra_csv(SPECTRA_CSV)
    transfer = (gauss_beam(channels[target].fwhm_arcmin, int(lmax)) * interpolation_window(scale["nside"], int(lmax))) ** 2
    cl_theory = {s: camb[f"cl_{s.lower()}_lensed"][: int(lmax) + 1] * transfer for s in ("EE", "BB")}
    theory = estimator.binned_theory(cl_theory if spin == 2 else {"TT": cl_theory[measured[0]]})
    theory_dl = {s: cl_to_dl(estimator.ell, theory[s] if spin == 2 else theory["TT"]) for s in measured}

    metrics = {
        "map_mse_uK2": float(np.mean([np.mean(maps[k]["residual"] ** 2) for k in maps])),
        "map_mse_ilc_uK2": float(np.mean([np.mean(maps[k]["ILC residual"] ** 2) for k in maps])),
        "map_mse_uncleaned_uK2": float(np.mean([np.mean((maps[k]["input"] - maps[k]["label"]) ** 2) for k in maps])),
        "map_mse_zero_prediction_uK2": float(np.mean([np.mean(maps[k]["label"] ** 2) for k in maps])),
        "n_validation": n_val,
    }
    for s in measured:
        for lo, hi in ev["residual_ell_ranges"]:
            sel = (estimator.ell >= lo) & (estimator.ell < hi)
            if not sel.any():
                continue
            tag = f"{s.lower()}_ell{lo}_{hi}"
            diff = dl["output"][s][:, sel] - dl["label"][s][:, sel]
            metrics[f"{tag}_residual_dl_abs_mean_uK2"] = float(np.mean(np.abs(dl["residual"][s][:, sel].mean(0))))
            metrics[f"{tag}_ilc_residual_dl_abs_mean_uK2"] = float(np.mean(np.abs(dl["ILC residual"][s][:, sel].mean(0))))
            metrics[f"{tag}_output_minus_label_dl_mean_uK2"] = float(diff.mean())
            metrics[f"{tag}_output_minus_label_dl_std_uK2"] = float(diff.mean(axis=1).std())
    write_json(METRICS, metrics)
    write_json(PLOT_DIR / "spectra.json", {"spectra": [
        {"ell": float(ell), **{f"{name}_{s}_dl_mean": float(dl[name][s][:, i].mean()) for name in names for s in measured},
         **{f"theory_{s}_dl": float(theory_dl[s][i]) for s in measured}} for i, ell in enumerate(estimator.ell)]})

    comp0 = variant["components"][0]
    n_ex = min(ev["n_example_patches"], n_val)
    plot_cenn_patches(inputs[comp0][:n_ex], labels[comp0][:n_ex, ..., 0], outputs[comp0][:n_ex, ..., 0],
                      [ch.freq_ghz for ch in channels], scale["npix"] * scale["pixel_arcmin"] / 60.0,
                      PLOT_DIR / "example_patches.png", f"CENN {variant['variant']}: Validation patches ({comp0})")
    for s in measured:
        plot_cenn_spectra(estimator.ell, {name: dl[name][s] for name in names}, theory_dl[s],
                          PLOT_DIR / f"spectra_{s}.png", f"CENN {variant['variant']}: {s} on {n_val} Validation patches")
    log_evaluation(params, params["mlflow"]["cenn_experiment"], RUN_FILE, metrics,
                   [*sorted(PLOT_DIR.glob("*.png")), METRICS])
    print(f"cenn_evaluate: {variant['variant']} map MSE {metrics['map_mse_uK2']:.3f} uK^2 "
          f"(ILC {metrics['map_mse_ilc_uK2']:.3f}, uncleaned {metrics['map_mse_uncleaned_uK2']:.3f}) "
          f"on {n_val} Validation patches")
