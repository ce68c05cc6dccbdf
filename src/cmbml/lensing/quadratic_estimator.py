"""Flat-sky TT quadratic-estimator noise (Hu & Okamoto 2002) on a patch's Fourier grid.

With lensed spectra ``C~`` in the response and ``C^tot = C~ + N`` in the filters,

    f(l1, l2) = C~_l1 (L.l1) + C~_l2 (L.l2),   L = l1 + l2,
    F(l1, l2) = f / (2 C^tot_l1 C^tot_l2),
    1 / N0^phiphi(L) = 1/Omega sum_{l1} f F,       N0^kk = L^4 / 4 N0^phiphi.

Expanding ``f^2`` the sum splits into convolutions over the grid, computed with FFTs:
``sum_ij L_i L_j [(G_ij * H)(L) + (U_i * U_j)(L)]`` with ``G_ij = C~^2 l_i l_j / C^tot``,
``H = 1 / C^tot`` and ``U_i = C~ l_i / C^tot``.

No wrap-around: in the sums ``l2 = L - l1`` is the true vector, and a pair whose ``l2`` lies outside
the grid's Fourier range does not exist. A periodic FFT convolution on the N x N grid (or a real-space
product of N x N maps) would wrap such an ``l2`` back onto the grid with the wrong wavevector, which
halves N0 at L ~ 30 on 50 x 50 grids. Every convolution and real-space product here is therefore done
on a 2N x 2N grid with the same fundamental mode (the Fourier arrays zero-padded), where sums of two
grid vectors cannot alias, and only the original grid's L are kept. The Wiener-filtered estimator then correlates with
the true kappa as ``rho(L) = sqrt(C^kk / (C^kk + N0^kk))``: the linear-theory benchmark a
network is compared with.

:func:`reconstruct_kappa` applies the same estimator to maps. With the lensing convention of
:mod:`cmbml.lensing.physics` (``T_lensed(x) = T(x + grad phi)``) the response is
``<T(l1) T(l2)> = f(l1, l2) phi(L)`` with a plus sign, so the normalised estimate correlates
positively with the input kappa (tested); on maps lensed with the opposite sign it returns -kappa.
"""

from __future__ import annotations

import numpy as np

from cmbml.common.flatsky import FlatGrid, bin_power
from cmbml.common.units import ARCMIN


def _padded_index(npix: int) -> np.ndarray:
    """Position of each Fourier index of an ``npix`` grid (numpy order) in a ``2 npix`` grid of the same
    fundamental: the same integer frequency, taken modulo ``2 npix``."""
    return np.round(np.fft.fftfreq(npix) * npix).astype(int) % (2 * npix)


def zero_pad(a: np.ndarray) -> np.ndarray:
    """Embed Fourier arrays (..., N, N) in (..., 2N, 2N) arrays of the same fundamental mode, zero elsewhere."""
    n = a.shape[-1]
    idx = _padded_index(n)
    out = np.zeros(a.shape[:-2] + (2 * n, 2 * n), dtype=np.result_type(a, np.complex128))
    out[..., idx[:, None], idx[None, :]] = a
    return out


def unpad(a: np.ndarray) -> np.ndarray:
    """The modes of the original N x N grid from a (..., 2N, 2N) Fourier array."""
    idx = _padded_index(a.shape[-1] // 2)
    return a[..., idx[:, None], idx[None, :]]


def _convolve(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``(a * b)(L) = sum_l a(l) b(L - l)`` over true vectors: both factors on the grid, no wrap-around.

    Computed on the 2N grid, where ``L - l`` of two grid vectors cannot alias; returns the N x N grid's L.
    """
    a2, b2 = zero_pad(a), zero_pad(b)
    m2 = a2.shape[-1] ** 2
    return unpad(m2 * np.fft.fft2(np.fft.ifft2(a2) * np.fft.ifft2(b2))).real


def n0_kappa(
    grid: FlatGrid,
    cl_tt_lensed: np.ndarray,
    noise_uk_arcmin: float = 0.0,
    t_lmax: float | None = None,
) -> np.ndarray:
    """Reconstruction noise ``N0^kk(L)`` of the TT quadratic estimator on every grid mode.

    The maps have no beam; ``noise_uk_arcmin`` is white. Temperature modes above ``t_lmax``
    (or the grid) are excluded from the estimator. Returns an (npix, npix) array; the ``L = 0``
    mode is set to infinity.
    """
    cl = grid.cl_on_grid(cl_tt_lensed, t_lmax)
    ell = grid.ell
    noise = (noise_uk_arcmin * ARCMIN) ** 2
    used = cl > 0
    inv_tot = np.where(used, 1.0 / np.where(used, cl + noise, 1.0), 0.0)
    lx, ly = grid.ell_xy
    comps = (lx, ly)
    total = np.zeros_like(ell)
    for i in range(2):
        u_i = cl * comps[i] * inv_tot
        for j in range(2):
            g_ij = cl**2 * comps[i] * comps[j] * inv_tot
            u_j = cl * comps[j] * inv_tot
            total += comps[i] * comps[j] * (_convolve(g_ij, inv_tot) + _convolve(u_i, u_j))
    total[0, 0] = 1.0  # the L = 0 mode carries no lensing; replaced below
    with np.errstate(divide="ignore"):
        n0 = ell**4 / 4.0 * grid.area_sr / total
    n0[0, 0] = np.inf
    return n0


def reconstruct_kappa(
    grid: FlatGrid,
    t_maps: np.ndarray,
    cl_tt_lensed: np.ndarray,
    noise_uk_arcmin: float = 0.0,
    t_lmax: float | None = None,
    n0: np.ndarray | None = None,
) -> np.ndarray:
    """Normalised TT quadratic-estimator kappa maps from lensed temperature maps.

    ``phi_hat(L) = N0^phiphi(L) sum_i L_i FT[b_i(x) a(x)](L)`` with ``a = T / C^tot`` and
    ``b_i = l_i C~ T / C^tot`` (the two terms of ``f`` are equal after relabelling), then
    ``kappa_hat = L^2 / 2 phi_hat``. ``t_maps`` is (..., npix, npix) in uK; returns the same shape.
    """
    cl = grid.cl_on_grid(cl_tt_lensed, t_lmax)
    noise = (noise_uk_arcmin * ARCMIN) ** 2
    used = cl > 0
    inv_tot = np.where(used, 1.0 / np.where(used, cl + noise, 1.0), 0.0)
    if n0 is None:
        n0 = n0_kappa(grid, cl_tt_lensed, noise_uk_arcmin, t_lmax)
    lx, ly = grid.ell_xy
    t_l = grid.dx**2 * np.fft.fft2(t_maps)  # continuum convention T(l) = int d2x e^{-il.x} T(x)
    # Real-space products on the 2N grid (pixels dx / 2): the product's modes L = l1 + l2 do not wrap.
    dx2 = grid.dx / 2.0
    a_x = np.fft.ifft2(zero_pad(t_l * inv_tot)) / dx2**2
    integral = 0.0
    for l_i in (lx, ly):
        b_x = np.fft.ifft2(zero_pad(l_i * cl * inv_tot * t_l)) / dx2**2
        integral = integral + l_i * dx2**2 * unpad(np.fft.fft2(b_x * a_x))
    ell2 = grid.ell**2
    with np.errstate(invalid="ignore"):
        n0_phi = np.where(np.isfinite(n0), 4.0 * n0 / np.where(ell2 > 0, ell2**2, 1.0), 0.0)
    kappa_l = 0.5 * ell2 * n0_phi * integral
    return (np.fft.ifft2(kappa_l) / grid.dx**2).real


def binned_n0(grid: FlatGrid, n0_kk: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """N0^kk averaged over the grid modes of each multipole bin (the L = 0 mode excluded)."""
    return bin_power(grid, np.where(np.isfinite(n0_kk), n0_kk, 0.0), edges)[1]


def binned_wiener_rho(grid: FlatGrid, cl_kk_grid: np.ndarray, n0_kk: np.ndarray, edges: np.ndarray):
    """Wiener-filtered estimator correlation ``rho(L) = sqrt(C / (C + N0))`` per multipole bin,
    from the bin-averaged signal and noise: the quadratic estimator's limit in linear theory.
    Returns ``(ell_centres, rho)``."""
    ell, signal, _ = bin_power(grid, cl_kk_grid, edges)
    noise = binned_n0(grid, n0_kk, edges)
    return ell, np.sqrt(signal / (signal + noise))
