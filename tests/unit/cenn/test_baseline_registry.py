"""The baseline registry: a registered baseline is fitted, scored by the evaluation's one code path, named in the
summary metrics and shown in the report's columns, all from its one class; the default entries keep the metric
names and report columns of the published evaluation."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import h5py
import numpy as np
import pytest

from cmbml.cenn.baselines import BASELINES, Baseline, BaselineSetup
from cmbml.cenn.evaluation import (
    UNSEEN_PREFIX,
    ClassicalBaselines,
    cenn_maps,
    cenn_metrics,
    method_labels,
    methods,
    patch_spectra,
    spectra_map_names,
    spectra_rows,
    summary_metric_names,
    summary_metrics,
    unseen_summary_metric_names,
)
from cmbml.cenn.fullsky import gauss_beam
from cmbml.common.flatsky import FlatGrid
from stages.report import cenn_response_table, cenn_table, foreground_model_table

GRID = FlatGrid(16, 12.0)
LMAX = 2000
ELL = np.arange(LMAX + 1)
RESPONSE = np.stack([gauss_beam(f, LMAX) / gauss_beam(7.2, LMAX) for f in (9.7, 7.2, 4.9)])
CL_LABEL = {"EE": 1.0 / (ELL + 50.0) ** 1.5, "BB": 0.1 / (ELL + 50.0) ** 1.5}
RANGES = [[60, 300], [300, 900]]

# metrics/cenn.json of the published evaluation and the per-patch oracle: the summary names must not change.
PUBLISHED_SUMMARY = {
    "leak_suspected",
    "map_mse_harmonic_ilc_uK2",
    "map_mse_linear_uK2",
    "map_mse_network_uK2",
    "map_mse_pixel_ilc_uK2",
    "map_mse_wiener_uK2",
    "map_mse_zero_prediction_uK2",
    "mse_over_wiener",
    "mse_over_wiener_err",
    "n_independent_evaluation",
    "unseen_map_mse_harmonic_ilc_uK2",
    "unseen_map_mse_network_uK2",
    "map_mse_wiener_per_patch_uK2",
    "unseen_map_mse_wiener_per_patch_uK2",
    "unseen_map_mse_wiener_own_sky_uK2",
    "unseen_map_mse_wiener_uK2",
    "unseen_mse_over_wiener",
    "unseen_mse_over_wiener_err",
}


@dataclass(frozen=True)
class ChannelMean(Baseline):
    """The plain mean of the channels; ``n_train`` proves that ``fit`` saw the Train patches."""

    name: ClassVar[str] = "channel_mean"
    label: ClassVar[str] = "channel mean"
    n_train: int

    @classmethod
    def fit(cls, setup, chunks):
        return cls(sum(next(iter(inputs.values())).shape[0] for inputs, _ in chunks()))

    def apply(self, inputs):
        return {c: m.mean(axis=-1) for c, m in inputs.items()}


class MeanSquare:
    """A stand-in for the NaMaster estimator: two 'bins', the mean square of the Q (or E) map and of U."""

    ell = np.array([100.0, 500.0])

    def field(self, maps):
        return maps

    def cross(self, a, b):
        return {"EE": np.array([np.mean(a[0] * b[0]), np.mean(a[-1] * b[-1])])}


def patches(n, seed, components=("Q", "U")):
    """Inputs (n, 16, 16, 3) = label + a channel-scaled foreground + noise per component; labels (n, 16, 16, 1)."""
    rng = np.random.default_rng(seed)
    inputs, labels = {}, {}
    for c in components:
        labels[c] = rng.standard_normal((n, 16, 16, 1))
        inputs[c] = (
            labels[c]
            + np.array([0.6, 1.0, 2.2]) * rng.standard_normal((n, 16, 16, 1))
            + 0.3 * rng.standard_normal((n, 16, 16, 3))
        )
    return inputs, labels


@pytest.fixture
def dummy():
    BASELINES.register(ChannelMean)
    try:
        yield ChannelMean
    finally:
        BASELINES.unregister(ChannelMean.name)


@pytest.fixture
def train_files(tmp_path):
    inputs, labels = patches(24, 1)
    files = {}
    for c in inputs:
        files[c] = tmp_path / f"train_{c}.h5"
        with h5py.File(files[c], "w") as h5:
            h5["M"], h5["M0"] = inputs[c].astype(np.float32), labels[c].astype(np.float32)
    return files


def evaluate(train_files, n_val=10):
    """The evaluate stage's path on small patches: fit on Train, estimate, compare maps, spectra and metrics."""
    setup = BaselineSetup(GRID, RESPONSE, CL_LABEL, 60.0, ("Q", "U"))
    baselines = ClassicalBaselines.fit(train_files, setup)
    inputs, labels = patches(n_val, 2)
    estimates = {"network": {c: labels[c][..., 0] + 0.1 for c in inputs}, **baselines.estimates(inputs, labels)}
    maps = {c: cenn_maps(inputs[c], labels[c], {m: estimates[m][c] for m in estimates}, target=1) for c in inputs}
    cl = patch_spectra(MeanSquare(), maps, ["Q", "U"], ["EE"])
    metrics = {**cenn_metrics(maps, MeanSquare.ell, cl, RANGES, n_independent=n_val), "n_evaluation": n_val}
    rows = spectra_rows(MeanSquare.ell, cl, {"EE": np.ones(2)}, n_val)
    return baselines, inputs, labels, estimates, metrics, rows


def test_a_registered_baseline_is_fitted_scored_summarised_and_reported(dummy, train_files):
    baselines, inputs, labels, estimates, metrics, rows = evaluate(train_files)
    assert baselines.fitted["channel_mean"].n_train == 24
    np.testing.assert_array_equal(estimates["channel_mean"]["Q"], inputs["Q"].mean(axis=-1))
    # scored by the same code as every method: map MSE with its error, transfer and residual per range, spectra rows
    expected = np.mean([np.mean((inputs[c].mean(axis=-1) - labels[c][..., 0]) ** 2) for c in inputs])
    assert metrics["map_mse_channel_mean_uK2"] == pytest.approx(expected, rel=1e-12)
    for key in (
        "map_mse_channel_mean_err_uK2",
        "ee_ell60_300_channel_mean_response",
        "ee_ell60_300_channel_mean_uncorrelated_dl_uK2",
        "ee_ell300_900_channel_mean_residual_dl_uK2",
    ):
        assert np.isfinite(metrics[key]), key
    assert {
        "channel_mean_EE_dl",
        "channel_mean_EE_response",
        "channel_mean_EE_correlation",
        "channel_mean_EE_residual_dl_err",
    } <= set(rows[0])
    assert "channel_mean" in methods() and "channel_mean residual" in spectra_map_names()
    assert method_labels()["channel_mean"] == "channel mean"
    # in the summary metrics (DVC metrics file and MLflow) on the training sky, by default not on the unseen one
    assert "map_mse_channel_mean_uK2" in summary_metric_names()
    assert "map_mse_channel_mean_uK2" not in unseen_summary_metric_names()
    both = {**metrics, **{UNSEEN_PREFIX + k: v for k, v in metrics.items()}}
    assert summary_metrics(both)["map_mse_channel_mean_uK2"] == metrics["map_mse_channel_mean_uK2"]
    # and in the report's columns, under its label
    record = {"name": "QU", "params": {"cenn.variant": "QU"}, "unseen_model": "nongaussian", "metrics": both}
    table = cenn_table([record]).splitlines()
    assert "| channel mean |" in table[0] and table[1].count("---") == table[0].count("|") - 1
    value = f"{metrics['map_mse_channel_mean_uK2']:.4g} +- {metrics['map_mse_channel_mean_err_uK2']:.2g}"
    assert value in table[2]
    assert "| channel mean response |" in cenn_response_table([record], RANGES).splitlines()[0]
    assert "| channel mean MSE |" in foreground_model_table([record], RANGES).splitlines()[0]


def test_an_unregistered_baseline_leaves_no_trace(dummy):
    BASELINES.unregister("channel_mean")
    try:
        assert "channel_mean" not in methods() and "map_mse_channel_mean_uK2" not in summary_metric_names()
        assert "channel mean" not in cenn_table([])
    finally:
        BASELINES.register(ChannelMean)  # the fixture unregisters it


def test_a_baseline_name_is_registered_once(dummy):
    with pytest.raises(ValueError, match="registered twice"):
        BASELINES.register(ChannelMean)


def test_the_default_baselines_keep_the_published_metric_names_and_columns():
    """The summary metrics are those of metrics/cenn.json; the report's columns those of the README tables."""
    names = set(summary_metric_names()) | {UNSEEN_PREFIX + k for k in unseen_summary_metric_names()}
    assert names == PUBLISHED_SUMMARY
    assert methods() == ("network", "wiener", "linear", "harmonic_ilc", "pixel_ilc")
    head = cenn_table([]).splitlines()[0]
    assert head.endswith(
        "| CENN | Wiener | Wiener per patch (oracle) | linear (Train fit) | harmonic ILC | pixel ILC "
        "| Wiener predicted | CENN / Wiener |"
    )
    head = foreground_model_table([], [[60, 300]]).splitlines()[0]
    assert head == (
        "| variant | network | instrument | trained on | tested on | CENN MSE | Wiener MSE | "
        "Wiener, own-sky covariance MSE | Wiener per patch (oracle) MSE | harmonic ILC MSE | pixel ILC MSE | "
        "CENN / Wiener | room: 1 - oracle / Wiener | residual D_ell 60-300: CENN / Wiener / harmonic ILC |"
    )


def test_the_oracle_is_fitted_on_the_patches_it_cleans_and_scored_by_its_map_mse(train_files):
    """The own-sky Wiener filter needs the cleaned patches' labels: without them it is not estimated; with them it
    is the Wiener filter built from those very patches, scored by its map MSE (and pixel metrics) alone."""
    from cmbml.cenn.baselines import WienerFilter

    baselines, inputs, labels, estimates, metrics, rows = evaluate(train_files)
    assert "wiener_own_sky" not in baselines.estimates(inputs) and "wiener_own_sky" not in baselines.fitted
    nuisance = WienerFilter.nuisance_from_train([(inputs, labels)], GRID, RESPONSE, GRID.ell_fundamental)
    own = WienerFilter.build(GRID, {"E": CL_LABEL["EE"], "B": CL_LABEL["BB"]}, RESPONSE, nuisance).apply(inputs)
    np.testing.assert_array_equal(estimates["wiener_own_sky"]["U"], own["U"])
    expected = np.mean([np.mean((own[c] - labels[c][..., 0]) ** 2) for c in inputs])
    assert metrics["map_mse_wiener_own_sky_uK2"] == expected
    # no per-patch errors or spectra: its map MSE and its pixel metrics (as every method's) alone
    assert not [
        k for k in metrics if "wiener_own_sky" in k and k != "map_mse_wiener_own_sky_uK2" and not k.startswith("pixel_")
    ]
    assert metrics["pixel_rmse_wiener_own_sky_uK"] > 0
    assert "wiener_own_sky residual" not in spectra_map_names() and "wiener_own_sky_EE_dl" not in rows[0]
    assert baselines.fit_metrics() == {"map_mse_wiener_predicted_uK2": baselines.fitted["wiener"].wiener.predicted_mse}
