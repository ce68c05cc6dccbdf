"""Map-level metrics of a reconstruction against the truth."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cmbml.common.flatsky import FlatGrid, bin_power, power_2d


@dataclass
class CorrelationSpectra:
    """Binned auto and cross spectra averaged over a set of maps, and rho(L)."""

    ell: np.ndarray
    cl_pred: np.ndarray
    cl_true: np.ndarray
    cl_cross: np.ndarray
    n_modes: np.ndarray

    @property
    def rho(self) -> np.ndarray:
        """Cross-correlation coefficient ``C^{pt} / sqrt(C^{pp} C^{tt})`` per bin."""
        return self.cl_cross / np.sqrt(self.cl_pred * self.cl_true)

    @property
    def response(self) -> np.ndarray:
        """``C^{pt} / C^{tt}``: how much of the true field the prediction carries, per bin (1 = unbiased)."""
        return self.cl_cross / self.cl_true

    @property
    def effective_noise(self) -> np.ndarray:
        """``C^{tt} (1 / rho^2 - 1)``: the noise power of an unbiased estimator with this correlation, to
        compare with a reconstruction noise such as the quadratic estimator's N0."""
        return self.cl_true * (1.0 / self.rho**2 - 1.0)


def correlation_spectra(grid: FlatGrid, pred: np.ndarray, true: np.ndarray, edges: np.ndarray) -> CorrelationSpectra:
    """Average binned spectra of stacks ``pred`` and ``true`` (N, npix, npix) over the N maps."""
    ell, cl_pred, n_modes = bin_power(grid, power_2d(grid, pred).mean(axis=0), edges)
    _, cl_true, _ = bin_power(grid, power_2d(grid, true).mean(axis=0), edges)
    _, cl_cross, _ = bin_power(grid, power_2d(grid, pred, true).mean(axis=0), edges)
    return CorrelationSpectra(ell, cl_pred, cl_true, cl_cross, n_modes)


def mse(pred: np.ndarray, true: np.ndarray) -> float:
    return float(np.mean((np.asarray(pred, dtype=np.float64) - true) ** 2))
