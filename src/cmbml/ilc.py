"""Internal linear combination (ILC): the classical baseline for component separation on a patch."""

from __future__ import annotations

import numpy as np


def ilc_weights(channels: np.ndarray) -> np.ndarray:
    """Minimum-variance weights with unit response to the CMB: ``w = C^-1 1 / (1^T C^-1 1)``.

    ``channels`` is (..., n_channels) in CMB units; the covariance is taken over all other axes.
    """
    flat = channels.reshape(-1, channels.shape[-1])
    cov = np.cov(flat, rowvar=False)
    inv_one = np.linalg.solve(cov, np.ones(cov.shape[0]))
    return inv_one / inv_one.sum()


def pixel_ilc(patches: np.ndarray) -> np.ndarray:
    """Pixel-domain ILC of each patch (N, n, n, n_channels) -> (N, n, n), weights per patch."""
    return np.stack([p @ ilc_weights(p) for p in patches])
