"""Slow, obviously-correct references that the library's fast algorithms are tested against."""

from __future__ import annotations

import numpy as np


def remap_direct_sum(grid, t_map: np.ndarray, d_x: np.ndarray, d_y: np.ndarray) -> np.ndarray:
    """``T(x + d)`` by summing the map's Fourier series at every displaced position.

    ``sum_k t_k exp(i k . (x + d))`` with numpy's FFT frequencies (the Nyquist mode at ``-n/2``):
    ``O(npix^4)`` operations, as one matrix product per axis, exact to rounding.
    """
    n = grid.npix
    coords = np.arange(n) * grid.dx
    x_pos = (coords[None, :] + d_x).ravel()  # [iy, ix]: x runs along axis 1
    y_pos = (coords[:, None] + d_y).ravel()
    k = 2.0 * np.pi * np.fft.fftfreq(n, d=grid.dx)
    t_k = np.fft.fft2(t_map) / n**2  # t_k[ky, kx]
    e_x = np.exp(1j * np.outer(x_pos, k))  # (npix^2, n_kx)
    e_y = np.exp(1j * np.outer(y_pos, k))  # (npix^2, n_ky)
    return np.einsum("pj,jk,pk->p", e_y, t_k, e_x, optimize=True).real.reshape(n, n)
