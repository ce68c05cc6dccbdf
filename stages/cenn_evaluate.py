"""Stage `cenn_evaluate`: CENN on the held-out Validation patches, gated, beside the classical answers on the
same patches (Wiener filter, per-mode linear filter fitted on Train, harmonic and pixel ILC), all scored by the
same code: map MSE, NaMaster spectra, transfer and residual per multipole; metrics and plots to DVC and MLflow."""

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

    from cmbml.cenn_evaluation import (
        CENN_MAPS,
        METHOD_LABELS,
        METHODS,
        baseline_estimates,
        cenn_maps,
        cenn_metrics,
        summary_metrics,
        patch_spectra,
        spectra_rows,
    )
    from cmbml.cenn_validation import gate_outputs
    from cmbml.evaluation import predict_h5
    from cmbml.gate import data_docs_dir
    from cmbml.params import get_key, load_params
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
            n_independent = float(h5.attrs["n_independent_cmb"])
    # The outputs must have the labels' shape and be finite before NaMaster sees them.
    # Data Docs carry run times: kept outside the stage's outputs (as for cenn_validate).
    result = gate_outputs(outputs, labels, data_docs_dir(get_key(load_params(), "paths.data_docs"), "cenn_evaluate"),
                          run_name=f"cenn_evaluate-{setup.variant}-{setup.scale}")
    write_json(paths.output_report / "validation.json", result.as_dict())
    if not result.success:
        sys.exit("cenn_evaluate: network outputs FAILED validation:\n  - " + "\n  - ".join(result.failures))

    # Theory: lensed CMB through the label's beam and interpolation window.
    camb = read_spectra_csv(paths.camb_cls)
    lmax = int(geometry.sky_lmax)
    cl_label = {s: camb[f"cl_{s.lower()}_lensed"][: lmax + 1] * setup.label_transfer**2 for s in ("EE", "BB")}

    # The classical answers on the same uncropped patches, from the same Train patches the network saw.
    estimates, wiener_predicted = baseline_estimates(
        {c: inputs[c].astype("float64") for c in components}, {c: paths.patch_file("Train", c) for c in components},
        geometry.patch, setup.channel_response, cl_label, setup.bin_width)
    estimates["network"] = {c: outputs[c][..., 0] for c in components}

    # Crop the patch edges, where the convolutions see padding, before comparing maps and spectra.
    maps = {comp: cenn_maps(geometry.crop(inputs[comp]), geometry.crop(labels[comp]),
                            {m: geometry.crop(estimates[m][comp]) for m in METHODS}, setup.instrument.target)
            for comp in components}
    estimator = FlatSpectra(geometry.cropped, setup.bin_edges, setup.spin, setup.apodization_deg,
                            spin0_name=measured[0])
    cl = patch_spectra(estimator, maps, components, measured)
    dl = {name: {s: cl_to_dl(estimator.ell, cl[name][s]) for s in measured} for name in CENN_MAPS}
    cl_theory = {s: cl_label[s][: int(geometry.spectra_lmax) + 1] for s in cl_label}
    theory = estimator.binned_theory(cl_theory if setup.spin == 2 else {measured[0]: cl_theory[measured[0]]})
    theory_dl = {s: cl_to_dl(estimator.ell, theory[s]) for s in measured}

    n_val = labels[components[0]].shape[0]
    metrics = {**cenn_metrics(maps, estimator.ell, cl, setup.residual_ell_ranges, n_independent),
               "map_mse_wiener_predicted_uK2": wiener_predicted, "n_validation": n_val}
    for split in ("Train", "Test"):  # how much independent sky the network learned from and stopped on
        with h5py.File(paths.patch_file(split, components[0]), "r") as h5:
            metrics[f"n_independent_{split.lower()}"] = float(h5.attrs["n_independent_cmb"])
    # DVC and the MLflow runs table show a handful of summary metrics; every score is in scores.json.
    summary = summary_metrics(metrics)
    write_json(paths.metrics, summary)
    write_json(paths.output_report / "scores.json", metrics)
    rows = spectra_rows(estimator.ell, cl, theory_dl, n_independent)
    write_json(paths.spectra, {"spectra": rows})

    comp0, title = components[0], f"CENN {setup.variant}"
    n_ex = min(setup.n_example_patches, n_val)
    plot_cenn_patches(inputs[comp0][:n_ex], labels[comp0][:n_ex, ..., 0], outputs[comp0][:n_ex, ..., 0],
                      setup.instrument.freqs_ghz, geometry.patch.side_deg, paths.evaluate_plots / "example_patches.png",
                      f"{title}: Validation patches ({comp0})")
    for s in measured:
        plot_cenn_spectra(estimator.ell, {name: dl[name][s] for name in CENN_MAPS}, theory_dl[s],
                          paths.evaluate_plots / f"spectra_{s}.png", f"{title}: {s} on {n_val} Validation patches",
                          METHOD_LABELS)
    log_evaluation(setup.tracking, paths.model, "validation", summary,
                   [*sorted(paths.evaluate_plots.glob("*.png")), paths.metrics], tables={"spectra.json": rows},
                   stage="cenn_evaluate", datasets=[paths.patch_file("Validation", c) for c in components],
                   details=metrics)
    print(f"cenn_evaluate: {setup.variant} on {n_val} Validation patches ({n_independent:.0f} independent), "
          "map MSE (uK^2): " + ", ".join(f"{m} {metrics[f'map_mse_{m}_uK2']:.3f}" for m in METHODS)
          + f"; network / Wiener {metrics['mse_over_wiener']:.3f} +- {metrics['mse_over_wiener_err']:.3f}")
    if metrics["leak_suspected"]:
        print("cenn_evaluate: WARNING the network beats the Wiener filter beyond the scatter; on a Gaussian sky "
              "that means a leak (labels in the inputs, Train patches overlapping Validation)", file=sys.stderr)
