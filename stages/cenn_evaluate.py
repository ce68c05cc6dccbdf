"""Stage `cenn_evaluate`: CENN on the held-out Validation patches, gated; NaMaster spectra of label, output
and residual against the beam-convolved theory; a pixel-ILC baseline; metrics and plots to DVC and MLflow."""

from __future__ import annotations

import sys

from stages._tracking import log_evaluation


def main() -> None:
    from cmbml.cenn_config import load
    from cmbml.gate import require_passed

    setup = load()
    require_passed(setup.paths.validation)

    import h5py
    import keras

    from cmbml.cenn_validation import gate_outputs
    from cmbml.evaluation import CENN_MAPS, cenn_maps, cenn_metrics, patch_spectra, predict_h5
    from cmbml.io import write_json
    from cmbml.namaster_flat import FlatSpectra
    from cmbml.plots import plot_cenn_patches, plot_cenn_spectra
    from cmbml.spectra import cl_to_dl, read_spectra_csv

    paths, geometry, components, measured = setup.paths, setup.geometry, setup.components, setup.spectra
    model = keras.models.load_model(paths.model)
    inputs, labels, outputs = {}, {}, {}
    for comp in components:
        outputs[comp] = predict_h5(model, paths.patch_file("Validation", comp), "M", batch=64)
        with h5py.File(paths.patch_file("Validation", comp), "r") as h5:
            inputs[comp], labels[comp] = h5["M"][:], h5["M0"][:]
    # The outputs must have the labels' shape and be finite before NaMaster sees them.
    result = gate_outputs(outputs, labels, paths.output_report)
    write_json(paths.output_report / "validation.json", result.as_dict())
    if not result.success:
        sys.exit("cenn_evaluate: network outputs FAILED validation:\n  - " + "\n  - ".join(result.failures))

    # Crop the patch edges, where the convolutions see padding, before comparing maps and spectra.
    maps = {comp: cenn_maps(geometry.crop(inputs[comp]), geometry.crop(labels[comp]), geometry.crop(outputs[comp]),
                            setup.instrument.target) for comp in components}
    estimator = FlatSpectra(geometry.cropped, setup.bin_edges, setup.spin, setup.apodization_deg,
                            spin0_name=measured[0])
    cl = patch_spectra(estimator, maps, components, measured)
    dl = {name: {s: cl_to_dl(estimator.ell, cl[name][s]) for s in measured} for name in CENN_MAPS}

    # Theory: lensed CMB through the label's beam and interpolation window, coupled and binned as the data.
    camb = read_spectra_csv(paths.camb_cls)
    lmax = int(geometry.spectra_lmax)
    transfer = setup.label_transfer[: lmax + 1] ** 2
    cl_theory = {s: camb[f"cl_{s.lower()}_lensed"][: lmax + 1] * transfer for s in ("EE", "BB")}
    theory = estimator.binned_theory(cl_theory if setup.spin == 2 else {measured[0]: cl_theory[measured[0]]})
    theory_dl = {s: cl_to_dl(estimator.ell, theory[s]) for s in measured}

    n_val = labels[components[0]].shape[0]
    metrics = {**cenn_metrics(maps, estimator.ell, dl, setup.residual_ell_ranges), "n_validation": n_val}
    write_json(paths.metrics, metrics)
    write_json(paths.spectra, {"spectra": [
        {"ell": float(ell), **{f"{name}_{s}_dl_mean": float(dl[name][s][:, i].mean()) for name in CENN_MAPS
                               for s in measured},
         **{f"theory_{s}_dl": float(theory_dl[s][i]) for s in measured}} for i, ell in enumerate(estimator.ell)]})

    comp0, title = components[0], f"CENN {setup.variant}"
    n_ex = min(setup.n_example_patches, n_val)
    plot_cenn_patches(inputs[comp0][:n_ex], labels[comp0][:n_ex, ..., 0], outputs[comp0][:n_ex, ..., 0],
                      setup.instrument.freqs_ghz, geometry.patch.side_deg, paths.evaluate_plots / "example_patches.png",
                      f"{title}: Validation patches ({comp0})")
    for s in measured:
        plot_cenn_spectra(estimator.ell, {name: dl[name][s] for name in CENN_MAPS}, theory_dl[s],
                          paths.evaluate_plots / f"spectra_{s}.png", f"{title}: {s} on {n_val} Validation patches")
    log_evaluation(setup.tracking, paths.mlflow_run, "validation", metrics,
                   [*sorted(paths.evaluate_plots.glob("*.png")), paths.metrics])
    print(f"cenn_evaluate: {setup.variant} map MSE {metrics['map_mse_uK2']:.3f} uK^2 "
          f"(ILC {metrics['map_mse_ilc_uK2']:.3f}, uncleaned {metrics['map_mse_uncleaned_uK2']:.3f}) "
          f"on {n_val} Validation patches")
