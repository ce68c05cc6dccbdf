"""Flat-sky Fourier geometry, Gaussian realisations and binned power spectra.

Conventions
-----------
A square patch has ``npix`` pixels of side ``pixel_arcmin`` arcmin, so its side is
``L = npix * dx`` radians and its solid angle ``Omega = L**2``. The flat-sky power
spectrum of a map ``m`` is estimated as ``C(ell) = dx**2 / npix**2 * |FFT(m)|**2``
(numpy's unnormalised forward FFT), so white noise of per-pixel variance ``sigma**2``
has ``C = sigma**2 * dx**2`` and a realisation drawn from ``C(ell)`` has variance
``sum_k C(|k|) / Omega`` over the grid modes.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from cmbml.common.units import ARCMIN


@dataclass(frozen=True)
class FlatGrid:
    """A square flat-sky patch of ``npix`` x ``npix`` pixels of ``pixel_arcmin`` arcmin."""

    npix: int
    pixel_arcmin: float

    @property
    def dx(self) -> float:
        """Pixel side in radians."""
        return self.pixel_arcmin * ARCMIN

    @property
    def side_rad(self) -> float:
        """Patch side in radians."""
        return self.npix * self.dx

    @property
    def side_deg(self) -> float:
        """Patch side in degrees."""
        return self.npix * self.pixel_arcmin / 60.0

    @property
    def half_diagonal_deg(self) -> float:
        """Centre-to-corner distance in degrees: patches whose centres are this far apart cannot overlap."""
        return self.side_deg / np.sqrt(2.0)

    @property
    def area_sr(self) -> float:
        """Patch solid angle Omega in steradians."""
        return self.side_rad**2

    @property
    def ell_fundamental(self) -> float:
        """Fundamental multipole 2 pi / L: the spacing of the Fourier grid."""
        return 360.0 / self.side_deg

    @property
    def ell_nyquist(self) -> float:
        """Nyquist multipole pi / dx along an axis."""
        return 180.0 * 60.0 / self.pixel_arcmin

    def tangent_offsets(self) -> tuple[np.ndarray, np.ndarray]:
        """Tangent-plane coordinates (x, y) in radians of every pixel centre, (npix, npix) each,
        indexed [iy, ix] with the origin at the patch centre."""
        c = (np.arange(self.npix) - (self.npix - 1) / 2.0) * self.pixel_arcmin * ARCMIN
        x, y = np.meshgrid(c, c, indexing="xy")
        return x, y

    @cached_property
    def ell_xy(self) -> tuple[np.ndarray, np.ndarray]:
        """Wavevector components (lx, ly), each (npix, npix), indexed [iy, ix]."""
        freqs = 2.0 * np.pi * np.fft.fftfreq(self.npix, d=self.dx)
        lx, ly = np.meshgrid(freqs, freqs, indexing="xy")
        return lx, ly

    @cached_property
    def ell(self) -> np.ndarray:
        """Modulus |ell| of every Fourier mode, (npix, npix)."""
        lx, ly = self.ell_xy
        return np.hypot(lx, ly)

    def cl_on_grid(self, cl: np.ndarray, lmax: float | None = None) -> np.ndarray:
        """Interpolate a 1-d spectrum ``cl[ell]`` (ell = 0, 1, ...) onto the Fourier grid.

        Modes with ``|ell| > lmax`` (or beyond the tabulated range) and the ``ell = 0``
        mode are set to zero.
        """
        cl = np.asarray(cl, dtype=float)
        ells = np.arange(cl.size)
        grid = np.interp(self.ell, ells, cl, right=0.0)
        grid[0, 0] = 0.0
        if lmax is not None:
            grid[self.ell > lmax] = 0.0
        return grid

    def expected_variance(self, cl: np.ndarray, lmax: float | None = None) -> float:
        """Variance per pixel of a Gaussian realisation of ``cl`` on this grid."""
        return float(self.cl_on_grid(cl, lmax).sum() / self.area_sr)


def gaussian_realisation(grid: FlatGrid, cl_grid: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Draw a periodic Gaussian random field with power ``cl_grid`` (already on the grid).

    White noise of unit variance is filtered by ``sqrt(C / dx^2)``; the filter is
    even in ell, so the result is real.

    Returns
    -------
    numpy.ndarray
        (npix, npix) float64 map, in the units of ``sqrt(cl)``.
    """
    white = rng.standard_normal((grid.npix, grid.npix))
    filt = np.sqrt(cl_grid) / grid.dx
    return np.fft.ifft2(np.fft.fft2(white) * filt).real


def power_2d(grid: FlatGrid, map_a: np.ndarray, map_b: np.ndarray | None = None) -> np.ndarray:
    """Flat-sky (cross-)power of maps on the Fourier grid, ``dx^2/N^2 Re(a_k b_k*)``.

    Works on a stack (..., npix, npix) and returns the same leading shape.
    """
    fa = np.fft.fft2(map_a)
    fb = fa if map_b is None else np.fft.fft2(map_b)
    return (fa * np.conj(fb)).real * grid.dx**2 / grid.npix**2


def linear_bins(grid: FlatGrid, width: float, lmax: float, lmin: float | None = None) -> np.ndarray:
    """Bin edges from ``lmin`` to ``lmax`` in steps of ``width`` multipoles.

    ``lmin`` defaults to half the fundamental mode, so the first bin starts just below the
    first non-zero wavenumber. A remainder of at least half a width becomes a last,
    narrower bin ending at ``lmax``; a smaller one is merged into the previous bin.
    Raises ``ValueError`` when ``width`` is below the fundamental mode (some bins would
    hold no Fourier mode) or when not one bin fits below ``lmax``.
    """
    if width < grid.ell_fundamental * (1 - 1e-9):
        raise ValueError(
            f"bin width {width:g} is below the patch's fundamental multipole "
            f"{grid.ell_fundamental:.1f} (2 pi / {grid.side_deg:.2f} deg): some bins would hold no mode"
        )
    start = 0.5 * grid.ell_fundamental if lmin is None else lmin
    edges = list(np.arange(start, lmax, width))
    if len(edges) < 1 or lmax - start < width:
        raise ValueError(f"no complete bin of width {width:g} between ell={start:.1f} and lmax={lmax:g}")
    if lmax - edges[-1] >= 0.5 * width or len(edges) == 1:
        edges.append(lmax)
    else:
        edges[-1] = lmax
    return np.asarray(edges, dtype=float)


def check_bins(edges: np.ndarray, grid: FlatGrid, lmax: float) -> None:
    """Raise ``ValueError`` unless every bin is at least one fundamental mode of ``grid`` wide and the
    bins lie within ``0 <= ell <= lmax``: a bin without a Fourier mode makes NaMaster's coupling
    matrix singular, and GSL then aborts the whole process."""
    edges = np.asarray(edges, dtype=float)
    if edges.size < 2:
        raise ValueError("need at least one bin")
    fundamental = grid.ell_fundamental
    widths = np.diff(edges)
    if np.any(widths < fundamental * (1 - 1e-9)):
        bad = np.flatnonzero(widths < fundamental * (1 - 1e-9)).tolist()
        raise ValueError(
            f"bins {bad} are narrower than the patch's fundamental multipole {fundamental:.1f} "
            f"(2 pi / {grid.side_deg:.2f} deg): NaMaster would abort on an empty bin"
        )
    if edges[0] < 0 or edges[-1] > lmax + 1e-9:
        raise ValueError(f"bins must lie within 0 <= ell <= {lmax:g}; got {edges[0]:g} .. {edges[-1]:g}")


def bin_power(grid: FlatGrid, power: np.ndarray, edges: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Average 2-d power in annuli ``edges[i] <= |ell| < edges[i+1]``.

    ``power`` may be a stack (..., npix, npix). Returns ``(ell_centres, binned, n_modes)``
    where ``ell_centres`` is the mean |ell| of the modes in each bin.
    """
    ell = grid.ell.ravel()
    which = np.digitize(ell, edges) - 1
    nbins = edges.size - 1
    valid = (which >= 0) & (which < nbins)
    n_modes = np.bincount(which[valid], minlength=nbins).astype(float)
    if np.any(n_modes == 0):
        empty = np.flatnonzero(n_modes == 0)
        raise ValueError(f"bins {empty.tolist()} of edges {edges.tolist()} hold no Fourier mode")
    ell_centres = np.bincount(which[valid], weights=ell[valid], minlength=nbins) / n_modes
    flat = power.reshape(power.shape[:-2] + (-1,))
    sums = np.stack([flat[..., which == i].sum(axis=-1) for i in range(nbins)], axis=-1)
    return ell_centres, sums / n_modes, n_modes
