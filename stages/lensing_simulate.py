"""Stage `lensing_simulate`: Gaussian T and kappa maps, lensed T (plus noise), streamed to train/val/test HDF5."""

from __future__ import annotations

from pathlib import Path

from stages._common import SPECTRA_CSV, progress, stage_params

OUT_DIR = Path("datasets/lensing")
SPLITS = ("train", "val", "test")


def main() -> None:
    from cmbml.lensing_sim import LensingSimConfig, LensingSimulator, write_split
    from cmbml.spectra import read_spectra_csv

    params = stage_params("lensing")
    spectra = read_spectra_csv(SPECTRA_CSV)
    config = LensingSimConfig.from_params(params)
    # Unlensed T from the unlensed TT spectrum; kappa from C^kk, band-limited and exaggerated.
    simulator = LensingSimulator(config, spectra["cl_tt_unlensed"], spectra["cl_kk"], seed=params["seed"])
    sizes = {split: params["scale"]["lensing"][f"n_{split}"] for split in SPLITS}
    chunk = params["lensing_simulate"]["chunk_samples"]
    attrs = {"lensing_version": params["lensing_version"], "scale": params["scale"]["name"]}
    with progress(f"lensing {params['lensing_version']}: simulating", sum(sizes.values())) as advance:
        for split in SPLITS:
            write_split(OUT_DIR / f"{split}.h5", simulator, split, sizes[split], chunk, attrs, progress=advance)
    print(f"lensing_simulate: {sizes} maps of {config.npix}^2 px x {config.pixel_arcmin} arcmin "
          f"({config.grid.side_deg:.2f} deg); kappa rms {simulator.expected_kappa_variance ** 0.5:.3e}")
