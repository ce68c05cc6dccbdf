"""Small PySM templates in PySM's own data layout, for tests that run PySM's real model code offline.

The file names are those of PySM's ``presets.cfg`` for the PySM 2 presets (d0-d3, s0-s3), written here by hand
so that a test can compare them with what the project reads from PySM. Each file is one HEALPix column (RING,
Galactic, float32) with its unit in ``TUNIT1``, as PySM's own templates. Values are of the real sky's order:
polarized dust of D_ell^EE = 56 uK_RJ^2 at ell = 80 at 353 GHz and synchrotron of 9 uK_RJ^2 at 23 GHz, brighter
towards the plane as 1 / sin|b| (cmbml.cenn.foregrounds.galactic_profile); dust intensity at 545 GHz a few
hundred uK_RJ, synchrotron intensity at 408 MHz some 10 K; spectral-index and temperature maps smooth fields
scattering about PySM's means (beta_d 1.54 +- 0.1, T_d 20 +- 1.5 K, beta_s -3 +- 0.1).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

PRESET_FILES = {
    "d0": ["dust_t_new.fits", "dust_q_new.fits", "dust_u_new.fits"],
    "d1": ["dust_t_new.fits", "dust_q_new.fits", "dust_u_new.fits", "dust_beta.fits", "dust_temp.fits"],
    "d2": ["dust_t_new.fits", "dust_q_new.fits", "dust_u_new.fits", "beta_mean1p59_std0p2.fits", "dust_temp.fits"],
    "d3": ["dust_t_new.fits", "dust_q_new.fits", "dust_u_new.fits", "beta_mean1p59_std0p3.fits", "dust_temp.fits"],
    "s0": ["synch_t_new.fits", "synch_q_new.fits", "synch_u_new.fits"],
    "s1": ["synch_t_new.fits", "synch_q_new.fits", "synch_u_new.fits", "synch_beta.fits"],
    "s2": ["synch_t_new.fits", "synch_q_new.fits", "synch_u_new.fits", "beta_latvar.fits"],
    "s3": ["synch_t_new.fits", "synch_q_new.fits", "synch_u_new.fits", "synch_beta.fits"],
}
"""Each preset's templates under ``pysm_2/`` (PySM 3.4's presets.cfg, copied by hand)."""


def template_maps(nside: int, seed: int = 0) -> dict[str, tuple[np.ndarray, str]]:
    """File name (under ``pysm_2/``) -> (map (npix,), unit) for every file of :data:`PRESET_FILES`."""
    from cmbml.cenn.foregrounds import GaussianForeground, galactic_profile, spectral_parameter_map

    rng = np.random.default_rng(seed)
    lmax, profile = 3 * nside - 1, galactic_profile(nside)
    dust_qu = GaussianForeground(56.0, 28.0, -0.32, -0.16, 353.0).qu_map_rj(nside, lmax, rng) * profile
    synch_qu = GaussianForeground(9.0, 1.6, -0.7, -0.93, 23.0).qu_map_rj(nside, lmax, rng) * profile
    fwhm = 10.0  # deg: spectral parameters vary smoothly

    def field(mean, scatter):
        return spectral_parameter_map(mean, scatter, fwhm, nside, rng)

    return {
        "dust_t_new.fits": (300.0 * profile, "uK_RJ"),
        "dust_q_new.fits": (dust_qu[0], "uK_RJ"),
        "dust_u_new.fits": (dust_qu[1], "uK_RJ"),
        "dust_beta.fits": (field(1.54, 0.1), ""),
        "dust_temp.fits": (field(20.0, 1.5), "K"),
        "beta_mean1p59_std0p2.fits": (field(1.59, 0.2), ""),
        "beta_mean1p59_std0p3.fits": (field(1.59, 0.3), ""),
        "synch_t_new.fits": (3.0e7 * profile, "uK_RJ"),
        "synch_q_new.fits": (synch_qu[0], "uK_RJ"),
        "synch_u_new.fits": (synch_qu[1], "uK_RJ"),
        "synch_beta.fits": (field(-3.0, 0.1), ""),
        "beta_latvar.fits": (field(-3.0, 0.1), ""),
    }


def write_pysm_templates(folder: str | Path, nside: int, presets=tuple(PRESET_FILES), seed: int = 0) -> dict:
    """Write the templates of ``presets`` into ``folder/pysm_2/``; returns file name -> map as written (float32)."""
    import healpy as hp

    out = Path(folder) / "pysm_2"
    out.mkdir(parents=True, exist_ok=True)
    wanted = {name for p in presets for name in PRESET_FILES[p]}
    written = {}
    for name, (values, unit) in template_maps(nside, seed).items():
        if name in wanted:
            m = np.asarray(values, dtype=np.float32)
            hp.write_map(out / name, m, coord="G", column_units=unit, dtype=np.float32, overwrite=True)
            written[name] = m
    return written
