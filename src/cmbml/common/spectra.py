"""Theory power spectra from CAMB.

All spectra are raw ``C_ell`` (not ``D_ell``), indexed by ``ell = 0 .. lmax``, temperature
and polarization in uK^2 (CMB thermodynamic), convergence dimensionless:
``C_L^kk = [L(L+1)]^2 C_L^phiphi / 4``.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

SPECTRA_COLUMNS = (
    "cl_tt_unlensed",
    "cl_tt_lensed",
    "cl_ee_lensed",
    "cl_bb_lensed",
    "cl_te_lensed",
    "cl_kk",
)


CAMB_THREADS = 2
"""OpenMP threads CAMB runs on, whatever the machine's core count (its spectra depend on it in the last digits)."""


def camb_spectra(cosmology: Mapping[str, float], lmax: int) -> dict[str, np.ndarray]:
    """Run CAMB once and return unlensed/lensed CMB spectra and the convergence spectrum.

    Parameters
    ----------
    cosmology : mapping
        ``H0, ombh2, omch2, tau, As, ns, mnu, r``. Tensors are switched on when ``r > 0``
        (their B modes are then in ``cl_bb_lensed``).
    lmax : int
        Highest multipole returned.

    Returns
    -------
    dict
        ``ell`` and every name in :data:`SPECTRA_COLUMNS`, arrays of length ``lmax + 1``.
    """
    import camb

    r = float(cosmology.get("r", 0.0))
    pars = camb.set_params(
        H0=cosmology["H0"],
        ombh2=cosmology["ombh2"],
        omch2=cosmology["omch2"],
        tau=cosmology["tau"],
        As=cosmology["As"],
        ns=cosmology["ns"],
        mnu=cosmology["mnu"],
        r=r,
        WantTensors=r > 0,
        lmax=lmax + 300,  # lensed spectra need headroom above lmax
        lens_potential_accuracy=1,
    )
    from threadpoolctl import threadpool_limits

    # CAMB's OpenMP sums depend on the number of threads (1, 2 and 4 give three tables that differ in the 11th
    # digit at high ell); a fixed count gives one table on every machine.
    with threadpool_limits(limits=CAMB_THREADS, user_api="openmp"):
        results = camb.get_results(pars)
        powers = results.get_cmb_power_spectra(pars, CMB_unit="muK", raw_cl=True, lmax=lmax)
        cl_pp = results.get_lens_potential_cls(lmax=lmax, raw_cl=True)[:, 0]
    unlensed = powers["unlensed_total"]
    lensed = powers["total"]
    ell = np.arange(lmax + 1)
    return {
        "ell": ell,
        "cl_tt_unlensed": unlensed[:, 0],
        "cl_tt_lensed": lensed[:, 0],
        "cl_ee_lensed": lensed[:, 1],
        "cl_bb_lensed": lensed[:, 2],
        "cl_te_lensed": lensed[:, 3],
        "cl_kk": (ell * (ell + 1.0)) ** 2 * cl_pp / 4.0,
    }


def write_spectra_csv(path, spectra: Mapping[str, np.ndarray]) -> None:
    """Write spectra as a CSV table with an ``ell`` column (atomically)."""
    from cmbml.common.io import atomic_path

    names = ["ell", *SPECTRA_COLUMNS]
    table = np.column_stack([spectra[n] for n in names])
    with atomic_path(path) as tmp:
        np.savetxt(tmp, table, delimiter=",", header=",".join(names), comments="", fmt="%.10e")


def read_spectra_csv(path) -> dict[str, np.ndarray]:
    """Read a table written by :func:`write_spectra_csv`."""
    table = np.genfromtxt(path, delimiter=",", names=True)
    out = {name: np.asarray(table[name], dtype=float) for name in table.dtype.names}
    out["ell"] = out["ell"].astype(int)
    return out


def cl_to_dl(ell: np.ndarray, cl: np.ndarray) -> np.ndarray:
    """``D_ell = ell (ell + 1) C_ell / 2 pi``."""
    return ell * (ell + 1.0) * cl / (2.0 * np.pi)
