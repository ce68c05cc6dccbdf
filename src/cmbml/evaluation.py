"""Evaluation on held-out maps: batched prediction, the CENN maps compared, their NaMaster spectra
and the residual metrics."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from cmbml.io import iter_chunks

CENN_MAPS = ("label", "output", "residual", "ILC", "ILC residual")
"""The maps compared on every CENN patch: the label, the network output, output minus label, and
the pixel ILC of the inputs with its residual."""


def predict_h5(model, path: str | Path, x_name: str, batch: int, add_channel_axis: bool = False) -> np.ndarray:
    """Network outputs for every sample of the HDF5 dataset ``x_name``, read and predicted ``batch`` at a time.

    With ``add_channel_axis`` the inputs (N, n, n) gain a trailing channel axis and the outputs lose it.
    """
    import h5py

    with h5py.File(path, "r") as h5:
        data = h5[x_name]
        out = None
        for sl in iter_chunks(data.shape[0], batch):
            x = data[sl]
            y = model.predict(x[..., None] if add_channel_axis else x, verbose=0)
            y = y[..., 0] if add_channel_axis else y
            if out is None:
                out = np.empty((data.shape[0],) + y.shape[1:], dtype=y.dtype)
            out[sl] = y
    return out


def cenn_maps(inputs: np.ndarray, labels: np.ndarray, outputs: np.ndarray, target: int) -> dict[str, np.ndarray]:
    """The maps compared on (already cropped) patches: ``inputs`` (N, n, n, channels), ``labels`` and
    ``outputs`` (N, n, n, 1). Adds the uncleaned target channel as ``"input"``."""
    from cmbml.ilc import pixel_ilc

    maps = {"label": labels[..., 0], "output": outputs[..., 0], "ILC": pixel_ilc(inputs), "input": inputs[..., target]}
    maps["residual"] = maps["output"] - maps["label"]
    maps["ILC residual"] = maps["ILC"] - maps["label"]
    return maps


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


def cenn_metrics(maps: Mapping[str, Mapping[str, np.ndarray]], ell: np.ndarray,
                 dl: Mapping[str, Mapping[str, np.ndarray]], ell_ranges: Sequence[Sequence[float]]) -> dict[str, float]:
    """Map MSEs (network, ILC, uncleaned input, zero prediction; uK^2) averaged over components, and per
    spectrum and multipole range the mean |D_ell| of the residual maps and the output-minus-label D_ell
    (mean over patches, and the scatter of the per-patch means)."""
    comps = list(maps)
    metrics = {
        "map_mse_uK2": float(np.mean([np.mean(maps[k]["residual"] ** 2) for k in comps])),
        "map_mse_ilc_uK2": float(np.mean([np.mean(maps[k]["ILC residual"] ** 2) for k in comps])),
        "map_mse_uncleaned_uK2": float(np.mean([np.mean((maps[k]["input"] - maps[k]["label"]) ** 2) for k in comps])),
        "map_mse_zero_prediction_uK2": float(np.mean([np.mean(maps[k]["label"] ** 2) for k in comps])),
    }
    for s in dl["output"]:
        for lo, hi in ell_ranges:
            sel = (ell >= lo) & (ell < hi)
            if not sel.any():
                continue
            tag = f"{s.lower()}_ell{lo}_{hi}"
            diff = dl["output"][s][:, sel] - dl["label"][s][:, sel]
            metrics[f"{tag}_residual_dl_abs_mean_uK2"] = float(np.mean(np.abs(dl["residual"][s][:, sel].mean(0))))
            metrics[f"{tag}_ilc_residual_dl_abs_mean_uK2"] = float(np.mean(np.abs(dl["ILC residual"][s][:, sel].mean(0))))
            metrics[f"{tag}_output_minus_label_dl_mean_uK2"] = float(diff.mean())
            metrics[f"{tag}_output_minus_label_dl_std_uK2"] = float(diff.mean(axis=1).std())
    return metrics
