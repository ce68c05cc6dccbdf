"""Stage `sky_maps`: full-sky CMB T, Q, U realisations (HEALPix) from the CAMB spectra, and their E and B maps."""

from __future__ import annotations

from pathlib import Path

from stages._common import SPECTRA_CSV, progress, stage_params

OUT_DIR = Path("datasets/cenn/sky")
PLOT_DIR = Path("plots/cenn/sky")


def tqu_path(r: int) -> Path:
    return OUT_DIR / f"cmb_tqu_{r}.fits"


def eb_path(r: int) -> Path:
    return OUT_DIR / f"cmb_eb_{r}.fits"


def main() -> None:
    import healpy as hp
    import numpy as np

    from cmbml.fits import write_healpix
    from cmbml.plots import plot_full_sky_check
    from cmbml.sky import gaussian_alm, tqu_from_alm
    from cmbml.spectra import read_spectra_csv

    params = stage_params("cenn")
    nside = params["scale"]["cenn"]["nside"]
    lmax = 3 * nside - 1
    cls = read_spectra_csv(SPECTRA_CSV)
    spectra = [cls[k] for k in ("cl_tt_lensed", "cl_ee_lensed", "cl_bb_lensed", "cl_te_lensed")]
    n_real = params["sky_maps"]["n_cmb_realisations"]
    with progress(f"CMB skies at nside {nside}", n_real) as advance:
        for r in range(n_real):
            # Lensed spectra as Gaussian fields; r > 0 adds primordial B modes through CAMB.
            alm = gaussian_alm(*spectra, lmax, np.random.default_rng([params["seed"], 3, r]))
            tqu = tqu_from_alm(alm, nside)
            write_healpix(tqu_path(r), tqu, ["T", "Q", "U"])
            write_healpix(eb_path(r), [hp.alm2map(alm[1], nside), hp.alm2map(alm[2], nside)], ["E", "B"])
            if r == 0:
                measured = hp.anafast(tqu, lmax=lmax)
                plot_full_sky_check(tqu, measured, cls, nside, PLOT_DIR / "cmb_realisation_0.png")
            advance()
    print(f"sky_maps: {n_real} CMB realisations at nside {nside} (lmax {lmax}) -> {OUT_DIR}")
