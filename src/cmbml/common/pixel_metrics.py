"""Pixel metrics of an estimate against the truth, as image-comparison benchmarks report them (MAE, RMSE,
NRMSE, PSNR, R^2), one value per sample averaged over the samples, with the error of that mean.

Definitions, per sample (one map or patch, every pixel and component of it; ``e`` the estimate minus the
truth ``t``):

- MAE = mean |e| and RMSE = sqrt(mean e^2), in the maps' units;
- NRMSE = sqrt(sum e^2 / sum t^2) (scikit-image's "euclidean" normalisation), dimensionless;
- PSNR = 10 log10((max t - min t)^2 / mean e^2), in dB (the data range of the true sample);
- R^2 = 1 - sum e^2 / sum (t - mean t)^2, the fraction of the sample's variance explained.

The error of each mean is the scatter over samples over sqrt(``n_independent``), the independent sky the
samples cover (overlapping patches count once), as for the map MSE.
"""

from __future__ import annotations

import numpy as np

PIXEL_METRICS = {"mae": "map units", "rmse": "map units", "nrmse": "", "psnr_db": "dB", "r2": ""}
"""The metrics of :func:`pixel_scores` and their units."""


def per_sample_pixel_metrics(estimate: np.ndarray, truth: np.ndarray) -> dict[str, np.ndarray]:
    """Each metric of :data:`PIXEL_METRICS` per sample.

    Parameters
    ----------
    estimate, truth : numpy.ndarray
        (n_samples, ...) the same shape: every axis after the first is one sample's pixels and components.

    Returns
    -------
    dict of str to numpy.ndarray
        (n_samples,) per metric.
    """
    estimate, truth = np.asarray(estimate, dtype=np.float64), np.asarray(truth, dtype=np.float64)
    if estimate.shape != truth.shape:
        raise ValueError(f"estimate of shape {estimate.shape}, truth of shape {truth.shape}: allowed equal shapes")
    n = truth.shape[0]
    e, t = (estimate - truth).reshape(n, -1), truth.reshape(n, -1)
    sq = np.sum(e**2, axis=1)
    mse = sq / e.shape[1]
    data_range = t.max(axis=1) - t.min(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):  # an exact estimate has infinite PSNR, a flat truth no R^2
        return {
            "mae": np.mean(np.abs(e), axis=1),
            "rmse": np.sqrt(mse),
            "nrmse": np.sqrt(sq / np.sum(t**2, axis=1)),
            "psnr_db": 10 * np.log10(data_range**2 / mse),
            "r2": 1 - sq / np.sum((t - t.mean(axis=1, keepdims=True)) ** 2, axis=1),
        }


def pixel_scores(estimate: np.ndarray, truth: np.ndarray, n_independent: float) -> dict[str, float]:
    """The mean over samples of each pixel metric (:func:`per_sample_pixel_metrics`) and its error
    (``<metric>_err``: scatter over samples / sqrt(``n_independent``))."""
    root_n = np.sqrt(max(float(n_independent), 1.0))
    scores: dict[str, float] = {}
    for name, values in per_sample_pixel_metrics(estimate, truth).items():
        scores[name] = float(np.mean(values))
        scores[f"{name}_err"] = float(np.std(values) / root_n)
    return scores


def pixel_metric_name(key: str, method: str, map_units: str = "") -> str:
    """The name a score of :func:`pixel_scores` (``key``: ``rmse``, ``rmse_err``, ...) is logged under:
    ``pixel_<metric>_<method>[_err][_<map_units>]``, the units suffix (``uK``) for the metrics in map units."""
    err = key.endswith("_err")
    base = key.removesuffix("_err")
    units = f"_{map_units}" if map_units and PIXEL_METRICS[base] == "map units" else ""
    return f"pixel_{base}_{method}{'_err' if err else ''}{units}"
