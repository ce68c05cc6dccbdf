"""Stage `cenn_separate`: the trained network applied to a whole sky, as a user applies it to Planck's frequency maps
(`cmbml separate`), scored on the full sky beside a harmonic ILC of the same maps, and compared bin by bin with the
patch-level evaluation."""

from __future__ import annotations

from pathlib import Path

FULLSKY_SUMMARY = (
    "network_residual_rms_uK",
    "ilc_wiener_residual_rms_uK",
    "residual_var_over_patch_interiors",
    "max_pull_vs_patches",
)
"""The full-sky metrics the training run's table shows (as ``fullsky_<name>``)."""

SEPARATE_METHODS = {"network": "network", "ilc": "harmonic ILC", "ilc_wiener": "harmonic ILC, Wiener filtered"}
"""The full-sky methods and their labels: the network tiled over the sky, and the classical answer."""


def main() -> None:
    import json

    import keras
    import numpy as np

    from cmbml.cenn.fullsky import gaussian_alm, tqu_from_alm
    from cmbml.cenn.plots import plot_full_sky_estimate, plot_full_sky_spectra
    from cmbml.cenn.separate import (
        Tiling,
        compare_with_patches,
        e_b_maps,
        frequency_maps_of_sky,
        harmonic_ilc,
        patch_diagnostics,
        read_frequency_map,
        score_full_sky,
        separate,
        write_frequency_map,
    )
    from cmbml.cenn.setup import load
    from cmbml.common.fits import read_healpix, write_healpix
    from cmbml.common.gate import require_passed
    from cmbml.common.io import write_json
    from cmbml.common.progress import progress
    from cmbml.common.spectra import read_spectra_csv
    from stages.tracking import log_evaluation

    setup = load()
    require_passed(setup.paths.validation)
    paths, sep, instrument, nside = setup.paths, setup.separate, setup.instrument, setup.nside
    channels, target, components = instrument.channels, instrument.target, list(setup.components)

    # The test sky: a CMB realisation no patch came from and the training sky's foregrounds, through each channel's
    # beam, with white noise per HEALPix pixel at the channel's depth. Written as Planck writes its frequency maps
    # (K_CMB, NESTED, Q_STOKES/U_STOKES) and read back as `cmbml separate` reads a user's maps.
    cls = read_spectra_csv(paths.camb_cls)
    spectra_in = [cls[k] for k in ("cl_tt_lensed", "cl_ee_lensed", "cl_bb_lensed", "cl_te_lensed")]
    lmax = setup.geometry.sky_lmax
    cmb_qu = tqu_from_alm(
        gaussian_alm(*spectra_in, lmax, np.random.default_rng([setup.seed, 31, sep.realisation_seed])), nside
    )[1:]
    foregrounds = (read_healpix(paths.foreground_channel(ch.freq_ghz), (0, 1)) for ch in channels)
    # Noise white at the patch resolution once cut (as the evaluation patches carry it), or white per HEALPix pixel.
    noise_transfer = setup.interpolation_window if sep.noise == "patch_matched" else None
    channel_qu, label_qu = frequency_maps_of_sky(
        cmb_qu,
        foregrounds,
        channels,
        target,
        nside,
        np.random.default_rng([setup.seed, 32, sep.realisation_seed]),
        noise_transfer,
    )
    files = [paths.fullsky_maps / f"sky_{ch.freq_ghz:g}GHz.fits" for ch in channels]
    for path, qu in zip(files, channel_qu):
        write_frequency_map(path, qu, planck_conventions=True)
    write_healpix(paths.fullsky_maps / "cmb_label_qu.fits", label_qu, ["Q", "U"])
    del channel_qu, cmb_qu
    channel_qu = np.stack([read_frequency_map(p, nside)[0] for p in files])  # (n_channels, 2, npix)

    # The network's inputs per component: Q and U as they are, or E (B) formed on the sphere as the patches were.
    def per_component(qu_by_channel):
        if components == ["Q", "U"]:
            return np.moveaxis(qu_by_channel, 1, 0)
        return np.moveaxis(np.stack([e_b_maps(qu, nside, components) for qu in qu_by_channel]), 1, 0)

    inputs = per_component(channel_qu)  # (n_components, n_channels, npix)
    label = per_component(label_qu[None])[:, 0]  # (n_components, npix)
    del channel_qu

    # The network over the sky outside the Galactic cut; the truth through the same tiling (the same interpolations),
    # so that estimate and truth differ only by what the network did.
    model = keras.models.load_model(paths.model)
    tiling = Tiling.covering(setup.geometry.patch, nside, sep.b_min_deg, sep.spacing_in_sides)
    with progress(f"CENN {setup.variant} over the sky at |b| > {sep.b_min_deg:g} deg", 2 * tiling.n_patches) as advance:
        network = separate(
            inputs,
            lambda x: model.predict(x, batch_size=64, verbose=0),
            tiling,
            components,
            sep.batch,
            progress=advance,
            reference=label,
        )
        truth = separate(label[:, None], lambda x: x, tiling, components, sep.batch, progress=advance)
    mask = network.mask & truth.mask

    # The classical answer on the same maps: a harmonic ILC on the sky above the cut, to the target's beam.
    import pymaster as nmt

    from cmbml.cenn.fullsky import galactic_latitude_deg

    # Apodized from the cut down by its width, so that the sky above the cut keeps its full weight.
    wider = np.abs(galactic_latitude_deg(nside)) > sep.b_min_deg - sep.mask_apodization_deg
    ilc_mask = nmt.mask_apodization(wider.astype(float), sep.mask_apodization_deg, apotype="C1")
    # It is also Wiener filtered with the CMB's theory spectrum through the target beam over the ILC map's power.
    beams = np.stack(setup.beams)
    harmonic_fields = ["EE", "BB"] if components == ["Q", "U"] else [c + c for c in components]
    signal = [cls[f"cl_{s.lower()}_lensed"][: lmax + 1] * beams[target] ** 2 for s in harmonic_fields]
    ilc, ilc_wiener = harmonic_ilc(inputs, beams, beams[target], ilc_mask, components, sep.ilc_bin_width, signal)
    # Every method is scored against the truth through the same tiling: the ILC maps go through it too (unchanged by
    # an identity "network"), so estimates and truth share one transfer function (beam and interpolations).
    with progress("harmonic ILC through the same tiling", 2 * tiling.n_patches) as advance:
        ilc, ilc_wiener = (
            separate(m[:, None], lambda x: x, tiling, components, sep.batch, progress=advance).maps
            for m in (ilc, ilc_wiener)
        )
    metrics, rows = score_full_sky(
        {"network": network.maps, "ilc": ilc, "ilc_wiener": ilc_wiener},
        truth.maps,
        mask,
        setup.bin_edges,
        setup.spectra,
        sep.mask_apodization_deg,
    )
    # The full-sky estimate measured as the evaluation measured its patches: cut at the evaluation patches' centres,
    # cropped, the same flat-sky NaMaster estimator; then compared bin by bin with the evaluation's figures.
    import h5py

    from cmbml.cenn.evaluation import jackknife_groups
    from cmbml.cenn.namaster_flat import FlatSpectra
    from cmbml.common.roles import EVALUATION

    with h5py.File(paths.patch_file(EVALUATION, components[0]), "r") as h5:
        centres = np.column_stack([h5["centre_lon_deg"][:], h5["centre_lat_deg"][:]])
        groups = jackknife_groups(h5["cmb_realisation"][:], *centres.T)["sky"]
    flat = FlatSpectra(
        setup.geometry.cropped, setup.bin_edges, setup.spin, setup.apodization_deg, spin0_name=setup.spectra[0]
    )
    on_patches = patch_diagnostics(
        network.maps, truth.maps, centres, nside, setup.geometry, flat, components, setup.spectra, groups
    )
    patch_rows = json.loads(Path(paths.spectra).read_text())["spectra"]
    metrics.update(compare_with_patches(on_patches, patch_rows, setup.spectra, ell_max=2 * nside))
    # Seams would add error where patches meet: the full-sky residual against the patches' interiors.
    metrics["residual_var_over_patch_interiors"] = (
        metrics["network_residual_rms_uK"] ** 2 / network.interior_residual_var
    )
    metrics["n_patches"] = tiling.n_patches
    metrics["b_min_deg"] = sep.b_min_deg
    metrics["max_pull_vs_patches"] = max(v for k, v in metrics.items() if k.endswith("_max_pull"))

    write_healpix(paths.fullsky / "cmb_estimate.fits", network.maps, [f"CMB_{c}" for c in components])
    write_healpix(paths.fullsky / "cmb_ilc.fits", ilc * mask, [f"CMB_{c}" for c in components])
    write_healpix(paths.fullsky / "cmb_ilc_wiener.fits", ilc_wiener * mask, [f"CMB_{c}" for c in components])
    write_healpix(paths.fullsky / "cmb_truth.fits", truth.maps * mask, [f"CMB_{c}" for c in components])
    write_healpix(
        paths.fullsky / "mask_and_weight.fits", [mask.astype(np.float32), network.weight], ["MASK", "WEIGHT"], unit=""
    )
    write_json(paths.fullsky_metrics, metrics)
    write_json(paths.fullsky_plots / "spectra.json", {"spectra": rows})
    write_json(paths.fullsky_plots / "on_evaluation_patches.json", {"spectra": on_patches})
    title = (
        f"CENN {setup.variant} on a full sky ({setup.foregrounds['model']} foregrounds, |b| > {sep.b_min_deg:g} deg)"
    )
    plot_full_sky_estimate(
        network.maps[0],
        truth.maps[0],
        network.weight,
        mask,
        components[0],
        paths.fullsky_plots / "fullsky_maps.png",
        title,
    )
    for s in setup.spectra:
        plot_full_sky_spectra(
            rows,
            patch_rows,
            on_patches,
            SEPARATE_METHODS,
            s,
            paths.fullsky_plots / f"fullsky_{s}.png",
            title,
            ell_reliable=2 * nside,
        )
    log_evaluation(
        setup.tracking,
        paths.model,
        "fullsky",
        {k: metrics[k] for k in FULLSKY_SUMMARY},  # a handful in the runs table; every score in fullsky_scores.json
        [*sorted(paths.fullsky_plots.glob("*.png")), paths.fullsky_metrics],
        tables={"fullsky_spectra.json": rows},
        details=metrics,
        stage="cenn_separate",
        datasets=files,
    )
    s0 = setup.spectra[0]
    print(
        f"cenn_separate: {tiling.n_patches} patches over {mask.mean():.1%} of the sky; residual rms network "
        f"{metrics['network_residual_rms_uK']:.3f} uK, harmonic ILC {metrics['ilc_residual_rms_uK']:.3f} uK "
        f"(Wiener filtered {metrics['ilc_wiener_residual_rms_uK']:.3f} uK); "
        f"{s0} response and correlation vs the patches: largest pull {metrics[f'{s0}_response_max_pull']:.2f}, "
        f"{metrics[f'{s0}_correlation_max_pull']:.2f}; residual / patch interiors "
        f"{metrics['residual_var_over_patch_interiors']:.3f} -> {paths.fullsky}"
    )
