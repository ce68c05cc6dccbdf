"""Stage `cenn_evaluate`: CENN on the held-out evaluation patches (Validation files), gated, beside the classical answers on the
same patches (every registered baseline, `cmbml.cenn.baselines.BASELINES`: Wiener filter, per-mode linear filter
fitted on Train, harmonic and pixel ILC, and the oracles), all scored by the same code: map MSE with jackknife
errors, NaMaster auto- and cross-spectra (response, correlation, uncorrelated and residual power per multipole); then the same on the evaluation patches of the unseen
foreground sky (another model, the same CMB and noise), prefixed `unseen_`; metrics and plots to DVC and
MLflow."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cmbml.common.roles import EARLY_STOPPING, EVALUATION, TRAINING
from stages.tracking import log_evaluation


def main() -> None:
    from cmbml.cenn.setup import load
    from cmbml.common.gate import require_passed

    setup, unseen = load(), load(foreground_sky="unseen")
    require_passed(setup.paths.validation)
    require_passed(unseen.paths.validation)

    import h5py
    import keras

    from cmbml.cenn.evaluation import REFERENCE, UNSEEN_PREFIX, method_labels, methods, summary_metrics
    from cmbml.common.io import write_json

    paths, components = setup.paths, setup.components
    model = keras.models.load_model(paths.model)
    yardsticks = Yardsticks.fit(setup)

    # The training sky's evaluation patches, then the unseen sky's (the network never saw that model).
    metrics, rows = score_sky(setup, predict_patches(setup, model), yardsticks, prefix="")
    unseen_metrics, unseen_rows = score_sky(unseen, predict_patches(unseen, model), yardsticks, prefix=UNSEEN_PREFIX)
    fit_metrics = yardsticks.baselines.fit_metrics()
    metrics.update(fit_metrics)
    metrics.update({UNSEEN_PREFIX + k: v for k, v in unseen_metrics.items()})
    for role in (TRAINING, EARLY_STOPPING):  # how much independent sky the network learned from and stopped on
        with h5py.File(paths.patch_file(role, components[0]), "r") as h5:
            metrics[f"n_independent_{role}"] = float(h5.attrs["n_independent_cmb"])

    # DVC and the MLflow runs table show a handful of summary metrics; every score is in scores.json.
    summary = summary_metrics(metrics)
    write_json(paths.metrics, summary)
    write_json(paths.output_report / "scores.json", metrics)
    write_json(paths.spectra, {"spectra": rows})
    write_json(paths.evaluate_plots / f"{UNSEEN_PREFIX}spectra.json", {"spectra": unseen_rows})
    log_evaluation(
        setup.tracking,
        paths.model,
        EVALUATION,
        summary,
        [*sorted(paths.evaluate_plots.glob("*.png")), paths.metrics],
        tables={"spectra.json": rows, f"{UNSEEN_PREFIX}spectra.json": unseen_rows},
        stage="cenn_evaluate",
        details=metrics,
        datasets=[s.paths.patch_file(EVALUATION, c) for s in (setup, unseen) for c in components],
        scored_on={
            "": paths.patch_file(EVALUATION, components[0]),
            UNSEEN_PREFIX: unseen.paths.patch_file(EVALUATION, components[0]),
        },
    )
    m = metrics  # both skies' scores, the unseen sky's under UNSEEN_PREFIX
    for sky, prefix in ((setup, ""), (unseen, UNSEEN_PREFIX)):
        print(
            f"cenn_evaluate: {setup.variant} trained on {setup.foregrounds['model']} foregrounds, on "
            f"{int(m[prefix + 'n_evaluation'])} evaluation patches of the {sky.foreground_sky} {sky.foregrounds['model']} "
            f"sky ({m[prefix + 'n_independent_evaluation']:.0f} independent), map MSE (uK^2): "
            + ", ".join(f"{k} {m[f'{prefix}map_mse_{k}_uK2']:.3f}" for k in methods(oracles=True))
            + f"; network / {method_labels(oracles=True)[REFERENCE]} {m[f'{prefix}mse_over_{REFERENCE}']:.3f} "
            + f"+- {m[f'{prefix}mse_over_{REFERENCE}_err']:.3f}"
        )
    if metrics["leak_suspected"] and setup.foregrounds["model"] == "gaussian":
        print(
            "cenn_evaluate: WARNING the network beats the Wiener filter beyond the scatter; on a Gaussian sky "
            "that means a leak (labels in the inputs, Train patches overlapping Validation)",
            file=sys.stderr,
        )


@dataclass(frozen=True)
class Yardsticks:
    """What every CENN estimate is scored with: the classical answers fitted on the Train patches the network saw
    (once for both skies), the NaMaster estimator, the theory (the lensed CMB through the label's beam and
    interpolation window) and the Wiener filter's own predicted MSE for periodic Gaussian patches, below which
    an estimate is suspected of a leak."""

    baselines: Any
    estimator: Any
    cl_theory: dict
    floor_uK2: float | None

    @classmethod
    def fit(cls, setup) -> Yardsticks:
        from cmbml.cenn.evaluation import REFERENCE, ClassicalBaselines
        from cmbml.cenn.namaster_flat import FlatSpectra

        paths, geometry = setup.paths, setup.geometry
        baseline_setup = setup.baseline_setup()
        baselines = ClassicalBaselines.fit({c: paths.patch_file(TRAINING, c) for c in setup.components}, baseline_setup)
        estimator = FlatSpectra(
            geometry.cropped, setup.bin_edges, setup.spin, setup.apodization_deg, spin0_name=setup.spectra[0]
        )
        cl_label = baseline_setup.cl_label
        return cls(
            baselines,
            estimator,
            {s: cl_label[s][: int(geometry.spectra_lmax) + 1] for s in cl_label},
            baselines.fit_metrics().get(f"map_mse_{REFERENCE}_predicted_uK2"),
        )


def predict_patches(sky, model) -> dict:
    """The network's estimate of every component of the sky's evaluation patches, ``{component: (N, n, n, 1)}``:
    it sees every component of a patch at once (Q and U together) and returns them all."""
    from cmbml.common.prediction import predict_h5

    components = sky.components
    stacked = predict_h5(model, [sky.paths.patch_file(EVALUATION, c) for c in components], "M", batch=64)
    return {comp: stacked[..., k : k + 1] for k, comp in enumerate(components)}


def score_sky(
    sky, outputs: dict, yardsticks: Yardsticks, prefix: str, label: str | None = None, plots: Path | None = None
) -> tuple[dict, list]:
    """Scores and per-bin spectra of an estimate ``outputs`` (``{component: (N, n, n, 1)}``, the sky's evaluation
    patches in their order: the network's or any other method's, in the network's place) and of every classical
    method on the same patches; the outputs gated; example patches and spectra plotted into ``plots`` (default the
    stage's plots folder; file names with ``prefix``), the estimate named ``label`` (default: the network's)."""
    import h5py

    from cmbml.cenn.evaluation import (
        NETWORK,
        cenn_maps,
        cenn_metrics,
        jackknife_groups,
        method_labels,
        patch_spectra,
        spectra_map_names,
        spectra_rows,
    )
    from cmbml.cenn.plots import plot_cenn_patches, plot_cenn_spectra
    from cmbml.cenn.validation import gate_outputs
    from cmbml.common.gate import data_docs_dir
    from cmbml.common.io import write_json
    from cmbml.common.spectra import cl_to_dl

    paths, geometry, components, measured = sky.paths, sky.geometry, sky.components, sky.spectra
    baselines, estimator, cl_theory = yardsticks.baselines, yardsticks.estimator, yardsticks.cl_theory
    floor_uK2 = yardsticks.floor_uK2 if not prefix else None  # the prediction holds for the sky it was fitted on
    plots = paths.evaluate_plots if plots is None else plots
    labels_shown = method_labels() if label is None else {**method_labels(), NETWORK: label}
    inputs, labels = {}, {}
    for comp in components:
        with h5py.File(paths.patch_file(EVALUATION, comp), "r") as h5:
            inputs[comp], labels[comp] = h5["M"][:].astype("float64"), h5["M0"][:]
            n_independent = float(h5.attrs["n_independent_cmb"])
            groups = jackknife_groups(h5["cmb_realisation"][:], h5["centre_lon_deg"][:], h5["centre_lat_deg"][:])
    # The outputs must have the labels' shape and be finite before NaMaster sees them.
    # Data Docs carry run times: kept outside the stage's outputs (as for cenn_validate).
    stage = f"cenn_evaluate{'_' + sky.foreground_sky if prefix else ''}"
    result = gate_outputs(
        outputs, labels, data_docs_dir(paths.data_docs, stage), run_name=f"{stage}-{sky.variant}-{sky.scale}"
    )
    write_json((sky.paths.output_report if label is None else plots) / f"{prefix}validation.json", result.as_dict())
    if not result.success:
        sys.exit(f"{stage}: {label or 'network'} outputs FAILED validation:\n  - " + "\n  - ".join(result.failures))

    # Every registered baseline, the oracles fitted on these very patches and their labels.
    estimates = {NETWORK: {c: outputs[c][..., 0] for c in components}, **baselines.estimates(inputs, labels)}
    # Crop the patch edges, where the convolutions see padding, before comparing maps and spectra.
    maps = {
        comp: cenn_maps(
            geometry.crop(inputs[comp]),
            geometry.crop(labels[comp]),
            {m: geometry.crop(estimates[m][comp]) for m in estimates},
            sky.instrument.target,
        )
        for comp in components
    }
    names = spectra_map_names()
    cl = patch_spectra(estimator, maps, components, measured, names)
    # Theory binned as the estimator bins (its workspace exists once a spectrum has been measured).
    theory = estimator.binned_theory(cl_theory if sky.spin == 2 else {measured[0]: cl_theory[measured[0]]})
    theory_dl = {s: cl_to_dl(estimator.ell, theory[s]) for s in measured}
    dl = {name: {s: cl_to_dl(estimator.ell, cl[name][s]) for s in measured} for name in cl}
    n_val = labels[components[0]].shape[0]
    metrics = {
        **cenn_metrics(maps, estimator.ell, cl, sky.residual_ell_ranges, n_independent, groups, floor_uK2),
        "n_evaluation": n_val,
    }

    title = f"{label or 'CENN'} {sky.variant}, {sky.foregrounds['model']} foregrounds ({sky.foreground_sky} sky)"
    comp0, n_ex = components[0], min(sky.n_example_patches, n_val)
    plot_cenn_patches(
        inputs[comp0][:n_ex],
        labels[comp0][:n_ex, ..., 0],
        outputs[comp0][:n_ex, ..., 0],
        sky.instrument.freqs_ghz,
        geometry.patch.side_deg,
        plots / f"{prefix}example_patches.png",
        f"{title}: evaluation patches ({comp0})",
    )
    for s in measured:
        plot_cenn_spectra(
            estimator.ell,
            {name: dl[name][s] for name in dl},
            theory_dl[s],
            plots / f"{prefix}spectra_{s}.png",
            f"{title}: {s} on {n_val} evaluation patches",
            labels_shown,
        )
    return metrics, spectra_rows(estimator.ell, cl, theory_dl, n_independent, groups)
