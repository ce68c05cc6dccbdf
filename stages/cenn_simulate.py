"""Stages `cenn_simulate@training` and `cenn_simulate@unseen`: multi-frequency sky patches (inputs M) and CMB labels (M0) for
Train, Test and Validation from the training sky, or Validation alone from the unseen foreground sky (the same
CMB, noise and patch centres, so that only the foreground model differs)."""

from __future__ import annotations


def main(foreground_sky: str = "training") -> None:
    from cmbml.cenn.setup import load
    from cmbml.common.executors import open_executor

    setup = load(foreground_sky=foreground_sky)
    with open_executor(setup.executor) as executor:  # connected (Dask) before any sky is built
        simulate(setup, executor)


def simulate(setup, executor) -> None:
    from cmbml.cenn.patches import independent_patch_areas
    from cmbml.cenn.setup import SPLIT_FILES
    from cmbml.cenn.simulate import build_component_skies, cut_split, plan_split, write_split
    from cmbml.common.fits import read_healpix
    from cmbml.common.progress import progress

    instrument, patch, paths = setup.instrument, setup.geometry.patch, setup.paths
    channels, components = instrument.channels, list(setup.components)

    # Beam-convolved multi-frequency skies and the CMB label, decomposed into the variant's components.
    # Each full-sky map is read when its transform needs it and freed after (0.8 GB apiece at nside 2048).
    cmb = (read_healpix(paths.cmb_tqu(r), (1, 2)) for r in range(setup.n_cmb_realisations))
    foregrounds = (read_healpix(paths.foreground_channel(ch.freq_ghz), (0, 1)) for ch in channels)
    inputs, labels = build_component_skies(cmb, foregrounds, channels, instrument.target, setup.nside, components)

    target = instrument.target_channel
    attrs = {
        "params_digest": setup.dataset_digest,
        "variant": setup.variant,
        "nside": setup.nside,
        "npix": patch.npix,
        "pixel_arcmin": patch.pixel_arcmin,
        "patch_side_deg": patch.side_deg,
        "channels_GHz": instrument.freqs_ghz,
        "fwhm_arcmin": [ch.fwhm_arcmin for ch in channels],
        "noise_uK_arcmin": [ch.noise_uk_arcmin for ch in channels],
        "target_GHz": target.freq_ghz,
        "label": f"CMB only, beam of the {target.freq_ghz:g} GHz channel",
        "seed": setup.seed,
        "scale": setup.scale,
        "b_min_deg": setup.b_min_deg,
        "holdout_lon_deg": list(setup.holdout_lon_deg),
        "early_stopping_lon_deg": list(setup.early_stopping_lon_deg),
        "foregrounds": setup.foregrounds,
        "foreground_sky": setup.foreground_sky,
        "cosmology": setup.cosmology,
    }
    # Patches are cut in local processes or on a Dask cluster; every patch's noise has its own seed, so the files
    # are the same either way.
    with progress(
        f"CENN {setup.variant} patches ({setup.foreground_sky} sky) on {executor.name}",
        sum(setup.n_samples[r] for r in setup.roles),
    ) as advance:
        for role in setup.roles:
            split = SPLIT_FILES[role]  # the simulation and the files keep the original names (Train, Test, Validation)
            # Validation and Test patches come from their own longitude bands, Train from outside both;
            # each split records how many independent patch areas its overlapping patches hold.
            plan = plan_split(
                split,
                setup.n_samples[role],
                setup.seed,
                setup.n_cmb_realisations,
                setup.b_min_deg,
                setup.holdout_lon_deg,
                setup.early_stopping_lon_deg,
                patch,
            )
            independent = independent_patch_areas(*plan.centres_deg.T, plan.realisation, patch)
            chunks = cut_split(
                plan,
                inputs,
                labels,
                channels,
                setup.nside,
                patch,
                components,
                setup.seed,
                noise=setup.foregrounds["noise"],
                executor=executor,
            )
            write_split(
                {c: paths.patch_file(role, c) for c in components},
                plan,
                chunks,
                patch.npix,
                len(channels),
                {
                    **attrs,
                    "split": split,
                    "n_independent_cmb": independent["cmb"],
                    "n_independent_sky": independent["sky"],
                },
                progress=advance,
            )
    print(
        f"cenn_simulate ({setup.foreground_sky} sky, {setup.foregrounds['model']}): "
        f"{ {r: setup.n_samples[r] for r in setup.roles} } patches of {patch.npix}^2 x {patch.pixel_arcmin}' "
        f"({patch.side_deg:.1f} deg), components {components} -> {paths.patches}"
    )
