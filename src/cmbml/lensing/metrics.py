"""Map-level metrics of a reconstruction against the truth: binned cross and auto spectra per map, rho(L),
response, and their sampling errors (delete-a-group jackknife over independent maps)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from cmbml.common.flatsky import FlatGrid, bin_power, power_2d

JACKKNIFE_GROUPS = 50
"""Groups of maps left out in turn for the jackknife errors (maps are independent, so any grouping works)."""


@dataclass
class CorrelationSpectra:
    """Binned auto and cross spectra of a set of maps, one row per map, and rho(L) of their average.

    Attributes
    ----------
    ell, n_modes : numpy.ndarray
        (n_bins,) mean |L| and Fourier modes per bin of one map.
    per_map_pred, per_map_true, per_map_cross : numpy.ndarray
        (n_maps, n_bins) binned power of the prediction, the truth and their cross-spectrum, per map.
    """

    ell: np.ndarray
    per_map_pred: np.ndarray
    per_map_true: np.ndarray
    per_map_cross: np.ndarray
    n_modes: np.ndarray

    @property
    def n_maps(self) -> int:
        return int(self.per_map_true.shape[0])

    @property
    def cl_pred(self) -> np.ndarray:
        return self.per_map_pred.mean(axis=0)

    @property
    def cl_true(self) -> np.ndarray:
        return self.per_map_true.mean(axis=0)

    @property
    def cl_cross(self) -> np.ndarray:
        return self.per_map_cross.mean(axis=0)

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

    def without(self, drop: np.ndarray) -> CorrelationSpectra:
        """The same spectra without the maps where ``drop`` (n_maps,) is True."""
        keep = ~np.asarray(drop, dtype=bool)
        return CorrelationSpectra(
            self.ell, self.per_map_pred[keep], self.per_map_true[keep], self.per_map_cross[keep], self.n_modes
        )


def correlation_spectra(grid: FlatGrid, pred: np.ndarray, true: np.ndarray, edges: np.ndarray) -> CorrelationSpectra:
    """Binned spectra of stacks ``pred`` and ``true`` (N, npix, npix), one row per map."""
    ell, per_pred, n_modes = bin_power(grid, power_2d(grid, pred), edges)
    _, per_true, _ = bin_power(grid, power_2d(grid, true), edges)
    _, per_cross, _ = bin_power(grid, power_2d(grid, pred, true), edges)
    return CorrelationSpectra(ell, per_pred, per_true, per_cross, n_modes)


def jackknife(
    statistic: Callable[..., np.ndarray], spectra: Sequence[CorrelationSpectra], n_groups: int = JACKKNIFE_GROUPS
) -> tuple[np.ndarray, np.ndarray]:
    """``statistic(*spectra)`` and its delete-a-group jackknife standard error.

    The maps (the same maps in every element of ``spectra``, e.g. a network's and the estimator's spectra
    against one truth) are split into ``n_groups`` contiguous groups; each is left out in turn. Paired
    statistics (a difference of two rho) thus get the error of the pair, smaller than either alone.
    """
    n = spectra[0].n_maps
    if any(s.n_maps != n for s in spectra):
        raise ValueError("every set of spectra must hold the same maps")
    n_groups = min(int(n_groups), n)
    if n_groups < 2:
        raise ValueError(f"{n} map(s): a jackknife needs at least two")
    value = np.asarray(statistic(*spectra), dtype=float)
    labels = np.repeat(np.arange(n_groups), np.diff(np.linspace(0, n, n_groups + 1).astype(int)))
    reps = np.stack(
        [np.asarray(statistic(*(s.without(labels == g) for s in spectra)), dtype=float) for g in range(n_groups)]
    )
    err = np.sqrt((n_groups - 1) / n_groups * ((reps - reps.mean(axis=0)) ** 2).sum(axis=0))
    return value, err


def mse(pred: np.ndarray, true: np.ndarray) -> float:
    return float(np.mean((np.asarray(pred, dtype=np.float64) - true) ** 2))
