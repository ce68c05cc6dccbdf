"""Delete-a-group jackknife errors over labelled samples (CMB realisations, sky blocks).

When samples share what makes them vary (patches cut from the same CMB sky, or from neighbouring sky), the
scatter over samples divided by sqrt(n) understates the error of a mean. Leaving out one group of samples at
a time and measuring how much a statistic moves counts the groups, not the samples, as independent.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def group_jackknife(
    statistic: Callable[[np.ndarray], np.ndarray | float], groups: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """``statistic(keep)`` on all samples and its delete-a-group jackknife standard error.

    Parameters
    ----------
    statistic : callable
        Maps a boolean selection of samples, shape (N,), to a scalar or an array (the same shape every call).
    groups : numpy.ndarray, shape (N,)
        Group label of every sample (any hashable values); at least two distinct labels.

    Returns
    -------
    value, error : numpy.ndarray
        ``statistic`` of all samples and ``sqrt((G - 1) / G * sum_g (stat_-g - mean)^2)`` over the G groups.
    """
    groups = np.asarray(groups)
    labels = np.unique(groups)
    if labels.size < 2:
        raise ValueError(f"{labels.size} group(s): a jackknife needs at least two")
    value = np.asarray(statistic(np.ones(groups.shape, dtype=bool)), dtype=float)
    reps = np.stack([np.asarray(statistic(groups != g), dtype=float) for g in labels])
    n = labels.size
    return value, np.sqrt((n - 1) / n * ((reps - reps.mean(axis=0)) ** 2).sum(axis=0))


def sky_blocks(lon_deg: np.ndarray, lat_deg: np.ndarray, n_blocks: int = 10) -> np.ndarray:
    """Contiguous sky blocks of patch centres, about equal in count: each hemisphere (north, south of the
    equator) is cut into ``n_blocks // 2`` longitude slices at the quantiles of its centres' longitudes.

    Returns an integer label per centre, shape (N,). Longitudes are unwrapped around the largest gap, so a
    band that crosses 0 deg stays contiguous.
    """
    lon = np.mod(np.asarray(lon_deg, dtype=float), 360.0)
    lat = np.asarray(lat_deg, dtype=float)
    per_side = max(1, int(n_blocks) // 2)
    labels = np.zeros(lon.shape, dtype=int)
    for side, sel in enumerate((lat >= 0, lat < 0)):
        if not sel.any():
            continue
        x = np.sort(lon[sel])
        gaps = np.diff(np.concatenate([x, [x[0] + 360.0]]))
        start = x[(np.argmax(gaps) + 1) % x.size]  # the slices begin after the widest empty arc
        unwrapped = np.mod(lon[sel] - start, 360.0)
        edges = np.quantile(unwrapped, np.linspace(0, 1, per_side + 1)[1:-1])
        labels[sel] = side * per_side + np.searchsorted(edges, unwrapped, side="right")
    return labels
