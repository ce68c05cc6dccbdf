"""CENN evaluation: the network and the classical answers on the same Validation patches, scored by one code
path (map MSE with errors from the independent patch count, NaMaster spectra, transfer and residual per
multipole, the network's MSE over the Wiener filter's)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cmbml.common.io import iter_chunks

METHODS = ("network", "wiener", "linear", "harmonic_ilc", "pixel_ilc")
"""Estimates of the label compared on every CENN patch, each scored by the same code: the network, the
multi-channel Wiener filter, the per-mode linear filter fitted on Train and the two ILCs."""

METHOD_LABELS = {"network": "CENN", "wiener": "Wiener filter", "linear": "linear filter (fit on Train)",
                 "harmonic_ilc": "harmonic ILC", "pixel_ilc": "pixel ILC"}

CENN_MAPS = ("label", *METHODS, *(f"{m} residual" for m in METHODS))
"""The maps whose spectra are measured: the label, every method's estimate and its residual (estimate - label)."""

LEAK_Z = 3.0
"""A network whose MSE lies this many standard errors below the Wiener filter's is flagged: on Gaussian skies
it cannot beat the optimum, so something (labels, overlapping samples) leaks."""


def cenn_maps(inputs: np.ndarray, labels: np.ndarray, estimates: Mapping[str, np.ndarray],
              target: int) -> dict[str, np.ndarray]:
    """The maps compared on (already cropped) patches: ``inputs`` (N, n, n, channels), ``labels`` (N, n, n, 1)
    and each method's estimate (N, n, n). Adds every residual, the uncleaned target channel as ``"input"`` and its residual."""
    maps = {"label": labels[..., 0], "input": inputs[..., target]}
    maps["uncleaned residual"] = maps["input"] - maps["label"]
    for method, estimate in estimates.items():
        maps[method] = estimate
        maps[f"{method} residual"] = estimate - maps["label"]
    return maps


def iter_train_chunks(files: Mapping[str, str | Path], chunk: int = 256):
    """``(inputs, labels)`` per chunk of a split, ``{component: (n, npix, npix, C)}`` in float64."""
    import h5py

    handles = {c: h5py.File(p, "r") for c, p in files.items()}
    try:
        n = next(iter(handles.values()))["M"].shape[0]
        for sl in iter_chunks(n, chunk):
            yield ({c: h["M"][sl].astype(np.float64) for c, h in handles.items()},
                   {c: h["M0"][sl].astype(np.float64) for c, h in handles.items()})
    finally:
        for h in handles.values():
            h.close()


def patch_spectra(estimator, maps: Mapping[str, Mapping[str, np.ndarray]], components: Sequence[str],
                  measured: Sequence[str], names: Sequence[str] = CENN_MAPS) -> dict[str, dict[str, np.ndarray]]:
    """NaMaster spectra of every patch: ``cl[name][spectrum] -> (N, n_bins)``.

    ``maps[component][name]`` is a stack (N, n, n); a spin-2 estimator takes the Q and U maps of a
    patch together, a spin-0 one the single scalar map.
    """
    n = maps[components[0]][names[0]].shape[0]
    per_patch: dict[str, list] = {name: [] for name in names}
    for i in range(n):
        for name in names:
            per_patch[name].append(estimator.spectra([maps[comp][name][i] for comp in components]))
    return {name: {s: np.array([p[s] for p in per_patch[name]]) for s in measured} for name in names}


def _mse_per_patch(maps: Mapping[str, Mapping[str, np.ndarray]], name: str) -> np.ndarray:
    return np.mean([np.mean(maps[k][name] ** 2, axis=(1, 2)) for k in maps], axis=0)


SUMMARY_METRICS = (*(f"map_mse_{m}_uK2" for m in METHODS), "map_mse_zero_prediction_uK2", "mse_over_wiener",
                   "mse_over_wiener_err", "leak_suspected", "n_independent_validation")
"""The handful of :func:`cenn_metrics` an experiment table shows (the rest: per-range spectra scores, errors)."""

UNSEEN_PREFIX = "unseen_"
"""Scores on the Validation patches of the unseen foreground sky carry this prefix."""

UNSEEN_SUMMARY_METRICS = ("map_mse_network_uK2", "map_mse_wiener_uK2", "map_mse_wiener_own_sky_uK2",
                          "map_mse_harmonic_ilc_uK2", "mse_over_wiener", "mse_over_wiener_err")
"""The unseen sky's scores an experiment table shows (prefixed)."""


def summary_metrics(metrics: Mapping[str, float]) -> dict[str, float]:
    """The :data:`SUMMARY_METRICS` present in ``metrics``, and the :data:`UNSEEN_SUMMARY_METRICS` (prefixed)."""
    return {**{k: metrics[k] for k in SUMMARY_METRICS if k in metrics},
            **{UNSEEN_PREFIX + k: metrics[UNSEEN_PREFIX + k] for k in UNSEEN_SUMMARY_METRICS
               if UNSEEN_PREFIX + k in metrics}}


def cenn_metrics(maps: Mapping[str, Mapping[str, np.ndarray]], ell: np.ndarray,
                 cl: Mapping[str, Mapping[str, np.ndarray]], ell_ranges: Sequence[Sequence[float]],
                 n_independent: float) -> dict[str, float]:
    """Scores of every method by one code path, averaged over components; error bars from ``n_independent``.

    - ``map_mse_<method>_uK2`` (the network's also as ``map_mse_uK2``) with ``_err`` = scatter over patches
      / sqrt(n_independent); uncleaned input and zero prediction for scale.
    - ``mse_over_wiener``: network MSE / Wiener MSE, with the error of the paired per-patch difference;
      ``leak_suspected`` is 1 when the network beats the Wiener filter by more than ``LEAK_Z`` errors.
    - per spectrum and multipole range, from the NaMaster spectra ``cl[name][spectrum]`` (N, n_bins): the
      residual power ``<method>_residual_dl_uK2`` (mean D_ell of estimate - label) and the transfer
      ``<method>_transfer`` (estimate power / label power).
    """
    methods = [m for m in METHODS if m in next(iter(maps.values()))]
    root_n = np.sqrt(max(n_independent, 1.0))
    metrics: dict[str, float] = {}
    per_patch = {m: _mse_per_patch(maps, f"{m} residual") for m in methods}
    for m in methods:
        metrics[f"map_mse_{m}_uK2"] = float(per_patch[m].mean())
        metrics[f"map_mse_{m}_err_uK2"] = float(per_patch[m].std() / root_n)
    metrics["map_mse_uK2"] = metrics["map_mse_network_uK2"]
    metrics["map_mse_uncleaned_uK2"] = float(_mse_per_patch(maps, "uncleaned residual").mean())
    metrics["map_mse_zero_prediction_uK2"] = float(_mse_per_patch(maps, "label").mean())
    if "wiener" in per_patch:
        diff = per_patch["network"] - per_patch["wiener"]
        err = diff.std() / root_n
        metrics["mse_over_wiener"] = float(per_patch["network"].mean() / per_patch["wiener"].mean())
        metrics["mse_over_wiener_err"] = float(err / per_patch["wiener"].mean())
        metrics["leak_suspected"] = float(diff.mean() < -LEAK_Z * err)
    metrics["n_independent_validation"] = float(n_independent)
    dl = {name: {s: c * ell * (ell + 1) / (2 * np.pi) for s, c in by_s.items()} for name, by_s in cl.items()}
    for s in dl["label"]:
        for lo, hi in ell_ranges:
            sel = (ell >= lo) & (ell < hi)
            if not sel.any():
                continue
            tag = f"{s.lower()}_ell{lo}_{hi}"
            label_power = dl["label"][s][:, sel].mean()
            for m in methods:
                metrics[f"{tag}_{m}_residual_dl_uK2"] = float(dl[f"{m} residual"][s][:, sel].mean())
                metrics[f"{tag}_{m}_transfer"] = float(dl[m][s][:, sel].mean() / label_power)
            diff = (dl["network"][s][:, sel] - dl["label"][s][:, sel]).mean(axis=1)
            metrics[f"{tag}_output_minus_label_dl_mean_uK2"] = float(diff.mean())
            metrics[f"{tag}_output_minus_label_dl_err_uK2"] = float(diff.std() / root_n)
    return metrics


def spectra_rows(ell: np.ndarray, cl: Mapping[str, Mapping[str, np.ndarray]], theory_dl: Mapping[str, np.ndarray],
                 n_independent: float) -> list[dict[str, float]]:
    """Per NaMaster bin: mean D_ell of every map, each method's transfer (estimate / label power) and residual
    D_ell with its error from the independent patch count (the DVC plot file of the evaluation)."""
    root_n = np.sqrt(max(n_independent, 1.0))
    factor = ell * (ell + 1) / (2 * np.pi)
    rows = []
    for i, e in enumerate(ell):
        row = {"ell": float(e)}
        for s, th in theory_dl.items():
            label = cl["label"][s][:, i].mean()
            row[f"theory_{s}_dl"] = float(th[i])
            row[f"label_{s}_dl"] = float(factor[i] * label)
            for m in METHODS:
                if m not in cl:
                    continue
                res = factor[i] * cl[f"{m} residual"][s][:, i]
                row[f"{m}_{s}_dl"] = float(factor[i] * cl[m][s][:, i].mean())
                row[f"{m}_{s}_transfer"] = float(cl[m][s][:, i].mean() / label) if label > 0 else float("nan")
                row[f"{m}_{s}_residual_dl"] = float(res.mean())
                row[f"{m}_{s}_residual_dl_err"] = float(res.std() / root_n)
        rows.append(row)
    return rows


@dataclass(frozen=True)
class ClassicalBaselines:
    """The classical estimators of the label, fitted once on the Train patches and applied to any patches.

    The Wiener filter takes the CMB from the label's C_ell and the foreground + noise covariance from the
    Train patches (annuli one fundamental wide), which also fit the per-mode linear filter; the harmonic and
    pixel ILCs need no fit (their weights come from the patches they clean).
    """

    wiener: Any
    linear: Any
    grid: Any
    response: np.ndarray
    cl_label: Mapping[str, np.ndarray]
    bin_width: float

    @classmethod
    def fit(cls, train_files: Mapping[str, str | Path], grid, response: np.ndarray,
            cl_label: Mapping[str, np.ndarray], bin_width: float) -> ClassicalBaselines:
        """``train_files``: ``{component: HDF5 path}``; ``response`` (C, lmax + 1): each channel's beam over the
        target's; ``cl_label``: the label's C_ell for "EE" and "BB"; ``bin_width``: annuli of the harmonic ILC."""
        from cmbml.cenn.baselines import PerModeLinearFilter, WienerFilter

        nuisance = WienerFilter.nuisance_from_train(iter_train_chunks(train_files), grid, response, grid.ell_fundamental)
        wiener = WienerFilter.build(grid, {s[0]: cl for s, cl in cl_label.items()}, response, nuisance)
        linear = PerModeLinearFilter.fit(iter_train_chunks(train_files), list(train_files))
        return cls(wiener, linear, grid, response, cl_label, bin_width)

    @property
    def wiener_predicted_mse(self) -> float:
        """The Wiener filter's map MSE (uK^2) predicted from its covariances (valid on the Train sky)."""
        return self.wiener.predicted_mse

    def estimates(self, inputs: Mapping[str, np.ndarray]) -> dict[str, dict[str, np.ndarray]]:
        """``{method: {component: (N, n, n)}}`` for ``inputs`` ``{component: (N, n, n, C)}`` (uncropped patches)."""
        from cmbml.cenn.baselines import harmonic_ilc, pixel_ilc

        return {
            "wiener": self.wiener.apply(inputs),
            "linear": self.linear.apply(inputs),
            "harmonic_ilc": harmonic_ilc(inputs, self.grid, self.response, self.bin_width),
            "pixel_ilc": {c: pixel_ilc(m) for c, m in inputs.items()},
        }

    def wiener_of_own_sky(self, inputs: Mapping[str, np.ndarray], labels: Mapping[str, np.ndarray]
                          ) -> dict[str, np.ndarray]:
        """The Wiener filter with the foreground + noise covariance of the very patches it cleans (measured with
        their labels ``{component: (N, n, n, 1)}``): the linear optimum for their sky, an oracle that shows how
        much a sky other than Train's costs the Train-fitted filters."""
        from cmbml.cenn.baselines import WienerFilter

        nuisance = WienerFilter.nuisance_from_train([(inputs, labels)], self.grid, self.response,
                                                    self.grid.ell_fundamental)
        wiener = WienerFilter.build(self.grid, {s[0]: cl for s, cl in self.cl_label.items()}, self.response, nuisance)
        return wiener.apply(inputs)
