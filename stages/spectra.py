"""Stage `spectra`: CAMB theory spectra (TT unlensed/lensed, EE, BB, TE, kappa-kappa) for the cosmology in params."""

from __future__ import annotations

from pathlib import Path

from stages._common import SPECTRA_CSV, stage_params

PLOT = Path("plots/spectra/camb_spectra.png")


def main() -> None:
    from cmbml.plots import plot_theory_spectra
    from cmbml.spectra import camb_spectra, write_spectra_csv

    params = stage_params("spectra")
    # One table to a multipole above every simulation's needs (checked), shared by all parameter sets.
    lmax = params["spectra"]["lmax"]
    spectra = camb_spectra(params["cosmology"], lmax)
    write_spectra_csv(SPECTRA_CSV, spectra)
    plot_theory_spectra(spectra, PLOT)
    print(f"spectra: CAMB to lmax={lmax}; C^kk(L=100) = {spectra['cl_kk'][100]:.3e} -> {SPECTRA_CSV}")
