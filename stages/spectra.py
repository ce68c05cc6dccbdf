"""Stage `spectra`: CAMB theory spectra (TT unlensed/lensed, EE, BB, TE, kappa-kappa) for the cosmology in params."""

from __future__ import annotations


def main() -> None:
    from cmbml.common.config import load_spectra
    from cmbml.common.plotting import plot_theory_spectra
    from cmbml.common.spectra import camb_spectra, write_spectra_csv

    setup = load_spectra()
    # One table to a multipole above every simulation's needs (checked), shared by all parameter sets.
    spectra = camb_spectra(setup.cosmology, setup.lmax)
    write_spectra_csv(setup.paths.camb_cls, spectra)
    plot_theory_spectra(spectra, setup.paths.plots / "camb_spectra.png")
    print(f"spectra: CAMB to lmax={setup.lmax}; C^kk(L=100) = {spectra['cl_kk'][100]:.3e} -> {setup.paths.camb_cls}")
