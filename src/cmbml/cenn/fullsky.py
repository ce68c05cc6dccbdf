"""Full-sky HEALPix maps: seeded Gaussian T/Q/U realisations, E/B decomposition, beams.

Maps are in Galactic coordinates, RING ordering, CMB thermodynamic uK. Random numbers come
from a :class:`numpy.random.Generator`, so realisations are reproducible bit for bit.
"""

from __future__ import annotations

import numpy as np

from cmbml.common.units import ARCMIN


def gaussian_alm(cl_tt, cl_ee, cl_bb, cl_te, lmax: int, rng: np.random.Generator) -> np.ndarray:
    """Correlated T, E, B harmonic coefficients (3, n_alm) with the given raw spectra.

    ``a_T = sqrt(TT) g1``, ``a_E = TE / sqrt(TT) g1 + sqrt(EE - TE^2 / TT) g2``, ``a_B = sqrt(BB) g3``;
    each ``g`` is unit complex Gaussian for m > 0 and unit real Gaussian for m = 0.
    """
    import healpy as hp

    ell, m = hp.Alm.getlm(lmax)
    tt, ee, bb, te = (np.asarray(c, dtype=float)[: lmax + 1][ell] for c in (cl_tt, cl_ee, cl_bb, cl_te))
    n = ell.size
    g = rng.standard_normal((3, n)) + 1j * rng.standard_normal((3, n))
    g[:, m == 0] = rng.standard_normal((3, int((m == 0).sum()))) * np.sqrt(2.0)
    g /= np.sqrt(2.0)
    sqrt_tt = np.sqrt(tt)
    with np.errstate(divide="ignore", invalid="ignore"):
        e_from_t = np.where(tt > 0, te / sqrt_tt, 0.0)
        e_rest = np.sqrt(np.clip(ee - np.where(tt > 0, te**2 / tt, 0.0), 0.0, None))
    return np.array([sqrt_tt * g[0], e_from_t * g[0] + e_rest * g[1], np.sqrt(bb) * g[2]])


def tqu_from_alm(alm: np.ndarray, nside: int) -> np.ndarray:
    """T, Q, U maps (3, npix) from T, E, B alms (healpy's ``alm2map(pol=True)``, computed by :mod:`cmbml.common.sht`)."""
    from cmbml.common.sht import synthesis

    return np.concatenate([synthesis(alm[0], nside)[None], synthesis(alm[1:], nside, spin=2)])


def alm_from_qu(q_map: np.ndarray, u_map: np.ndarray, lmax: int) -> tuple[np.ndarray, np.ndarray]:
    """E and B alms of a polarization map (the spin-2 spherical-harmonic transform, 3 Jacobi iterations)."""
    from cmbml.common.sht import analysis

    alm_e, alm_b = analysis(np.stack([q_map, u_map]), lmax, spin=2, iterations=3)
    return alm_e, alm_b


def gauss_beam(fwhm_arcmin: float, lmax: int) -> np.ndarray:
    """Gaussian beam transfer function ``b_ell = exp(-ell(ell+1) sigma^2 / 2)``."""
    sigma = fwhm_arcmin * ARCMIN / np.sqrt(8.0 * np.log(2.0))
    ell = np.arange(lmax + 1)
    return np.exp(-0.5 * ell * (ell + 1.0) * sigma**2)


def interpolation_window(nside: int, lmax: int) -> np.ndarray:
    """Transfer function of bilinear interpolation from HEALPix pixel centres onto a finer grid.

    Measured to match a Gaussian of FWHM equal to one HEALPix pixel side within a few percent
    up to the patch Nyquist (nside 128 and 512; see tests/unit/cenn/test_fullsky.py).
    """
    return gauss_beam(pixel_arcmin(nside), lmax)


def pixel_arcmin(nside: int) -> float:
    """Side of a square with the area of one HEALPix pixel, arcmin."""
    return float(np.sqrt(4.0 * np.pi / (12.0 * nside**2)) / ARCMIN)


def galactic_latitude_deg(nside: int) -> np.ndarray:
    """Galactic latitude b of every pixel centre (maps are in Galactic coordinates)."""
    import healpy as hp

    theta, _ = hp.pix2ang(nside, np.arange(12 * nside**2))
    return 90.0 - np.degrees(theta)
