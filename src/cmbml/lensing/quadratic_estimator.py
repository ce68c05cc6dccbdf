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

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from cmbml.common.flatsky import FlatGrid, bin_power, power_2d
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


def off_nyquist(grid: FlatGrid) -> np.ndarray:
    """True on the grid's modes that are not on the Nyquist row or column, (npix, npix).

    On an even grid the index ``-N/2`` stands for both ``+N/2`` and ``-N/2``: its wavevector, hence the sign of
    ``L.l`` and of a gradient, is ambiguous. The estimator leaves those T modes out and gives the Nyquist index a
    zero derivative factor (:func:`gradient_factors`), so that it is exactly covariant under quarter turns and
    flips of the map (tested) whether or not T reaches the Nyquist multipole."""
    n = np.round(np.fft.fftfreq(grid.npix) * grid.npix).astype(int)
    inside = 2 * np.abs(n) < grid.npix
    return inside[:, None] & inside[None, :]


def gradient_factors(grid: FlatGrid) -> tuple[np.ndarray, np.ndarray]:
    """``(l_x, l_y)`` of the grid's modes with 0 at the Nyquist index (see :func:`off_nyquist`), (npix, npix)."""
    n = np.round(np.fft.fftfreq(grid.npix) * grid.npix).astype(int)
    lx, ly = grid.ell_xy
    nyquist = 2 * np.abs(n) == grid.npix
    return np.where(nyquist[None, :], 0.0, lx), np.where(nyquist[:, None], 0.0, ly)


def _inverse_total(grid: FlatGrid, cl_response: np.ndarray, cl_total: np.ndarray) -> np.ndarray:
    """``1 / C^tot`` on the modes the estimator uses (response and total power both positive, off the Nyquist
    row and column), 0 elsewhere."""
    used = (cl_response > 0) & (cl_total > 0) & off_nyquist(grid)
    return np.where(used, 1.0 / np.where(used, cl_total, 1.0), 0.0)


def pair_sum(grid: FlatGrid, cl_a: np.ndarray, cl_b: np.ndarray, inv_tot: np.ndarray) -> np.ndarray:
    """``S_ab(L) = sum_{l1} f_a(l1, l2) f_b(l1, l2) / (2 C^tot_l1 C^tot_l2)`` on every grid mode ``L``, with
    ``f_c(l1, l2) = c_l1 (L.l1) + c_l2 (L.l2)`` and ``l2 = L - l1`` a true vector (no wrap-around).

    Expanded over the grid: ``sum_ij L_i L_j [(a b l_i l_j / C^tot) * (1 / C^tot) + (a l_i / C^tot) * (b l_j / C^tot)]``
    (``*`` a convolution). ``cl_a``, ``cl_b`` and ``inv_tot`` are (npix, npix) arrays on the grid's modes.
    """
    lx, ly = gradient_factors(grid)
    comps = (lx, ly)
    total = np.zeros_like(grid.ell)
    for i in range(2):
        u_i = cl_a * comps[i] * inv_tot
        for j in range(2):
            g_ij = cl_a * cl_b * comps[i] * comps[j] * inv_tot
            v_j = cl_b * comps[j] * inv_tot
            total += comps[i] * comps[j] * (_convolve(g_ij, inv_tot) + _convolve(u_i, v_j))
    return total


def _n0_from_sums(grid: FlatGrid, s_ww: np.ndarray, s_wf: np.ndarray) -> np.ndarray:
    """``N0^kk = L^4 / 4 Omega S_ww / S_wf^2``: the noise of the estimator with weights ``w`` normalised to unit
    response ``f``; infinite at ``L = 0`` and wherever the estimator has no response."""
    good = (s_wf != 0) & (grid.ell > 0)
    n0 = np.full(grid.ell.shape, np.inf)
    n0[good] = grid.ell[good] ** 4 / 4.0 * grid.area_sr * s_ww[good] / s_wf[good] ** 2
    return n0


def n0_kappa_grid(
    grid: FlatGrid, cl_weight: np.ndarray, cl_total: np.ndarray, cl_response: np.ndarray | None = None
) -> np.ndarray:
    """``N0^kk(L)`` on every grid mode of the estimator with weights ``F = f_w / (2 C^tot C^tot)`` normalised to
    unit response to lensing, whose response function is ``f_c`` with ``c = cl_response`` (default: the weight
    spectrum, the optimal case ``N0^phiphi = Omega / S_ww``). All spectra are (npix, npix) arrays on the grid's
    modes, uK^2 sr; a mode with zero weight (above the T band limit) is not used. Infinite at ``L = 0``.
    """
    inv_tot = _inverse_total(grid, cl_weight, cl_total)
    w = np.where(inv_tot > 0, cl_weight, 0.0)
    s_ww = pair_sum(grid, w, w, inv_tot)
    s_wf = s_ww if cl_response is None else pair_sum(grid, w, np.where(inv_tot > 0, cl_response, 0.0), inv_tot)
    return _n0_from_sums(grid, s_ww, s_wf)


def reconstruct_kappa_grid(
    grid: FlatGrid, t_maps: np.ndarray, cl_weight: np.ndarray, cl_total: np.ndarray, norm_phi: np.ndarray
) -> np.ndarray:
    """Normalised TT quadratic-estimator kappa maps (see :func:`reconstruct_kappa`): weights from ``cl_weight``
    and ``cl_total`` (npix, npix), normalised by ``norm_phi(L) = Omega / S_wf(L)`` (0 where unused)."""
    inv_tot = _inverse_total(grid, cl_weight, cl_total)
    cl = np.where(inv_tot > 0, cl_weight, 0.0)
    lx, ly = gradient_factors(grid)
    t_l = grid.dx**2 * np.fft.fft2(t_maps)  # continuum convention T(l) = int d2x e^{-il.x} T(x)
    # Real-space products on the 2N grid (pixels dx / 2): the product's modes L = l1 + l2 do not wrap.
    dx2 = grid.dx / 2.0
    a_x = np.fft.ifft2(zero_pad(t_l * inv_tot)) / dx2**2
    integral = 0.0
    for l_i in (lx, ly):
        b_x = np.fft.ifft2(zero_pad(l_i * cl * inv_tot * t_l)) / dx2**2
        integral = integral + l_i * dx2**2 * unpad(np.fft.fft2(b_x * a_x))
    kappa_l = 0.5 * grid.ell**2 * norm_phi * integral
    return (np.fft.ifft2(kappa_l) / grid.dx**2).real


def _norm_phi(grid: FlatGrid, n0_kk: np.ndarray) -> np.ndarray:
    """``N0^phiphi = 4 N0^kk / L^4`` where finite, else 0: the normalisation of the optimally weighted estimator."""
    ell2 = grid.ell**2
    with np.errstate(invalid="ignore"):
        return np.where(np.isfinite(n0_kk), 4.0 * n0_kk / np.where(ell2 > 0, ell2**2, 1.0), 0.0)


def _spectra_from_camb(grid: FlatGrid, cl_tt_lensed: np.ndarray, noise_uk_arcmin: float, t_lmax: float | None):
    cl = grid.cl_on_grid(cl_tt_lensed, t_lmax)
    return cl, np.where(cl > 0, cl + (noise_uk_arcmin * ARCMIN) ** 2, 0.0)


def n0_kappa(
    grid: FlatGrid,
    cl_tt_lensed: np.ndarray,
    noise_uk_arcmin: float = 0.0,
    t_lmax: float | None = None,
) -> np.ndarray:
    """Reconstruction noise ``N0^kk(L)`` of the TT quadratic estimator on every grid mode, with one spectrum
    ``cl_tt_lensed`` (indexed by ell, uK^2) both in the response and, plus white noise, in the filters.

    The maps have no beam; ``noise_uk_arcmin`` is white. Temperature modes above ``t_lmax``
    (or the grid) are excluded from the estimator. Returns an (npix, npix) array; the ``L = 0``
    mode is set to infinity. For maps lensed by a band-limited kappa use :class:`QuadraticEstimator`,
    whose spectra match the maps.
    """
    cl, total = _spectra_from_camb(grid, cl_tt_lensed, noise_uk_arcmin, t_lmax)
    return n0_kappa_grid(grid, cl, total)


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
    ``b_i = l_i C^f T / C^tot`` (the two terms of ``f`` are equal after relabelling), then
    ``kappa_hat = L^2 / 2 phi_hat``. ``t_maps`` is (..., npix, npix) in uK; returns the same shape.
    Here ``C^f = cl_tt_lensed`` and ``C^tot = C^f + noise`` (see :func:`n0_kappa`).
    """
    cl, total = _spectra_from_camb(grid, cl_tt_lensed, noise_uk_arcmin, t_lmax)
    if n0 is None:
        n0 = n0_kappa_grid(grid, cl, total)
    return reconstruct_kappa_grid(grid, t_maps, cl, total, _norm_phi(grid, n0))


def shells(grid: FlatGrid) -> tuple[np.ndarray, np.ndarray]:
    """The grid's modes grouped by modulus: ``(n2, index)`` with ``n2`` the sorted distinct values of
    ``nx^2 + ny^2`` (integer Fourier indices) and ``index`` (npix, npix) the shell of each mode. Every
    isotropic spectrum on the grid is one value per shell."""
    n = np.round(np.fft.fftfreq(grid.npix) * grid.npix).astype(int)
    n2 = n[None, :] ** 2 + n[:, None] ** 2
    unique, index = np.unique(n2, return_inverse=True)
    return unique, index.reshape(n2.shape)


def shell_average(grid: FlatGrid, power: np.ndarray) -> np.ndarray:
    """``power`` (npix, npix) averaged over each shell of :func:`shells`, one value per shell."""
    _, index = shells(grid)
    counts = np.bincount(index.ravel())
    return np.bincount(index.ravel(), weights=np.asarray(power, dtype=float).ravel()) / counts


def mean_power(grid: FlatGrid, chunks) -> np.ndarray:
    """Mean 2-d power (uK^2 sr, (npix, npix)) of maps given as an iterable of (n, npix, npix) stacks."""
    total, count = 0.0, 0
    for maps in chunks:
        maps = np.asarray(maps, dtype=np.float64)
        total = total + power_2d(grid, maps).sum(axis=0)
        count += maps.shape[0]
    if count == 0:
        raise ValueError("no maps to measure the power of")
    return total / count


@dataclass(frozen=True, eq=False)
class QuadraticEstimator:
    """The TT quadratic estimator of one patch geometry with the spectra of the maps it is run on.

    Three isotropic spectra, one value per shell of grid modes (:func:`shells`), uK^2 sr:

    - ``cl_weight``, in the weights ``F = f_w / (2 C^tot C^tot)``: the unlensed spectrum, band-limited at
      ``T_lmax`` (zero weight excludes a shell);
    - ``cl_total``, in the filters: the total power of the maps (lensed T and noise);
    - ``cl_response``, the response of the maps to lensing, ``f_c`` with which the estimate is normalised:
      the lensed gradient spectrum ``C^{T grad T}`` of the maps' own sky (Lewis, Challinor & Hanson 2011),
      which keeps the response at 1 beyond first order; equal to ``cl_weight`` at first order.

    Consistency with the simulated sky. Maps lensed by a band-limited (or exaggerated) kappa do not have
    CAMB's lensed power: on v5 (0.86' pixels, kappa at 503 < L < 5000) the simulated lensed power is 0.23
    of CAMB's at ell 6-8k. :func:`cmbml.lensing.evaluation.sky_estimator` measures ``cl_total`` and
    ``cl_response`` on simulations of the version's own sky; N0 and the limit ``rho_opt`` follow from the same
    spectra. :meth:`from_spectra` (CAMB's lensed spectrum everywhere, plus white noise) is the original
    project's estimator, kept for comparison.
    """

    grid: FlatGrid
    cl_weight: np.ndarray
    cl_total: np.ndarray
    cl_response: np.ndarray

    def __post_init__(self):
        n = shells(self.grid)[0].size
        for name in ("cl_weight", "cl_total", "cl_response"):
            value = np.asarray(getattr(self, name), dtype=float)
            if value.shape != (n,):
                raise ValueError(
                    f"{name}: {value.shape[0] if value.ndim == 1 else value.shape} values; the "
                    f"{self.grid.npix} x {self.grid.npix} grid has {n} shells of modes"
                )
            if not np.all(np.isfinite(value)):
                raise ValueError(f"{name}: every value must be finite")
            if name != "cl_response" and np.any(value < 0):
                raise ValueError(f"{name}: every value must be >= 0")
            object.__setattr__(self, name, value)

    @classmethod
    def from_spectra(
        cls, grid: FlatGrid, cl_tt_lensed: np.ndarray, noise_uk_arcmin: float = 0.0, t_lmax: float | None = None
    ) -> QuadraticEstimator:
        """One spectrum (indexed by ell, uK^2) in the weights and the response and, plus white noise, in the
        filters: with CAMB's full-sky lensed spectrum, the estimator of the original project."""
        cl, total = _spectra_from_camb(grid, cl_tt_lensed, noise_uk_arcmin, t_lmax)
        weight = shell_average(grid, cl)
        return cls(grid, weight, shell_average(grid, total), weight)

    def on_grid(self, per_shell: np.ndarray) -> np.ndarray:
        """A per-shell spectrum as an (npix, npix) array on the grid's modes."""
        return np.asarray(per_shell)[shells(self.grid)[1]]

    @cached_property
    def _sums(self) -> tuple[np.ndarray, np.ndarray]:
        weight, total = self.on_grid(self.cl_weight), self.on_grid(self.cl_total)
        inv_tot = _inverse_total(self.grid, weight, total)
        w = np.where(inv_tot > 0, weight, 0.0)
        s_ww = pair_sum(self.grid, w, w, inv_tot)
        if np.array_equal(self.cl_weight, self.cl_response):
            return s_ww, s_ww
        return s_ww, pair_sum(self.grid, w, np.where(inv_tot > 0, self.on_grid(self.cl_response), 0.0), inv_tot)

    @cached_property
    def n0(self) -> np.ndarray:
        """``N0^kk`` of the unit-response estimate on every grid mode, (npix, npix); infinite at ``L = 0``."""
        return _n0_from_sums(self.grid, *self._sums)

    def reconstruct(self, t_maps: np.ndarray) -> np.ndarray:
        """Normalised kappa estimates from lensed T maps (..., npix, npix) in uK."""
        s_wf = self._sums[1]
        good = (s_wf != 0) & (self.grid.ell > 0)
        norm_phi = np.where(good, self.grid.area_sr / np.where(good, s_wf, 1.0), 0.0)
        return reconstruct_kappa_grid(
            self.grid,
            np.asarray(t_maps, dtype=np.float64),
            self.on_grid(self.cl_weight),
            self.on_grid(self.cl_total),
            norm_phi,
        )

    def wiener_filter(self, kappa_hat: np.ndarray, cl_kk_grid: np.ndarray) -> np.ndarray:
        """``C / (C + N0)`` applied to estimates (..., npix, npix): the minimum-variance linear kappa map,
        given the kappa power ``cl_kk_grid`` on the grid (band limit and exaggeration included)."""
        finite = np.isfinite(self.n0)
        total = cl_kk_grid + np.where(finite, self.n0, 0.0)
        weight = np.where(finite & (total > 0), cl_kk_grid / np.where(total > 0, total, 1.0), 0.0)
        return np.fft.ifft2(np.fft.fft2(kappa_hat) * weight).real

    def wiener_rho(self, cl_kk_grid: np.ndarray, edges: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The estimator's limit in linear theory, ``sqrt(C / (C + N0))`` per bin: ``(ell_centres, rho)``."""
        return binned_wiener_rho(self.grid, cl_kk_grid, self.n0, edges)

    def to_dict(self) -> dict:
        """Plain numbers (JSON) that rebuild the estimator with :meth:`from_dict`."""
        return {
            "npix": self.grid.npix,
            "pixel_arcmin": self.grid.pixel_arcmin,
            "units": "uK^2 sr",
            "shell_n2": shells(self.grid)[0].tolist(),
            "cl_weight": self.cl_weight.tolist(),
            "cl_total": self.cl_total.tolist(),
            "cl_response": self.cl_response.tolist(),
        }

    @classmethod
    def from_dict(cls, d) -> QuadraticEstimator:
        grid = FlatGrid(int(d["npix"]), float(d["pixel_arcmin"]))
        if list(d["shell_n2"]) != shells(grid)[0].tolist():
            raise ValueError("the estimator's shells do not match its grid")
        return cls(grid, *(np.asarray(d[k], dtype=float) for k in ("cl_weight", "cl_total", "cl_response")))


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
