"""Stage `lensing_simulate`: Gaussian T and kappa maps, lensed T (plus noise), streamed to train/val/test HDF5."""

from __future__ import annotations


def main() -> None:
    from cmbml.common.executors import open_executor
    from cmbml.common.progress import progress
    from cmbml.common.spectra import read_spectra_csv
    from cmbml.lensing.setup import SPLITS, load
    from cmbml.lensing.simulate import LensingSimulator, write_split

    setup = load()
    spectra = read_spectra_csv(setup.paths.camb_cls)
    # Unlensed T from the unlensed TT spectrum; kappa from C^kk, band-limited and exaggerated.
    simulator = LensingSimulator(setup.sim, spectra["cl_tt_unlensed"], spectra["cl_kk"], seed=setup.seed)
    attrs = {"lensing_version": setup.version, "scale": setup.scale, "params_digest": setup.dataset_digest}
    # Chunks run in local processes or on a Dask cluster; each sample's seed makes the files the same either way.
    with (
        open_executor(setup.executor) as executor,
        progress(f"lensing {setup.version}: simulating on {executor.name}", sum(setup.n_samples.values())) as advance,
    ):
        for split in SPLITS:
            write_split(
                setup.paths.split(split),
                simulator,
                split,
                setup.n_samples[split],
                setup.chunk_samples,
                attrs,
                progress=advance,
                executor=executor,
            )
    print(
        f"lensing_simulate: {dict(setup.n_samples)} maps of {setup.grid.npix}^2 px x {setup.grid.pixel_arcmin} "
        f"arcmin ({setup.grid.side_deg:.2f} deg); kappa rms {simulator.expected_kappa_variance**0.5:.3e}"
    )
