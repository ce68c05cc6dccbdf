"""Stage `cmb_maps`: full-sky CMB T, Q, U realisations (HEALPix) from the CAMB spectra."""

from __future__ import annotations


def main() -> None:
    import numpy as np

    from cmbml.cenn.fullsky import gaussian_alm, tqu_from_alm
    from cmbml.cenn.plots import plot_full_sky_check
    from cmbml.cenn.setup import load
    from cmbml.common.fits import write_healpix
    from cmbml.common.progress import progress
    from cmbml.common.sht import tqu_spectra
    from cmbml.common.spectra import read_spectra_csv

    setup = load()
    nside, lmax = setup.nside, setup.geometry.sky_lmax
    cls = read_spectra_csv(setup.paths.camb_cls)
    spectra = [cls[k] for k in ("cl_tt_lensed", "cl_ee_lensed", "cl_bb_lensed", "cl_te_lensed")]
    n_real = setup.n_cmb_realisations
    with progress(f"CMB skies at nside {nside}", n_real) as advance:
        for r in range(n_real):
            # Lensed spectra as Gaussian fields; r > 0 adds primordial B modes through CAMB.
            alm = gaussian_alm(*spectra, lmax, np.random.default_rng([setup.seed, 3, r]))
            tqu = tqu_from_alm(alm, nside)
            write_healpix(setup.paths.cmb_tqu(r), tqu, ["T", "Q", "U"])
            if r == 0:
                measured = tqu_spectra(tqu, lmax)
                plot_full_sky_check(tqu, measured, cls, nside, setup.paths.cmb_plots / "cmb_realisation_0.png")
            advance()
    print(f"cmb_maps: {n_real} CMB realisations at nside {nside} (lmax {lmax}) -> {setup.paths.cmb}")
