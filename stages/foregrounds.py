"""Stages `foregrounds@training` and `foregrounds@unseen`: every registered foreground component
(`cmbml.cenn.foregrounds.COMPONENTS`: dust, synchrotron, radio and infrared sources) at every channel (uK_CMB), for
the training sky (params `foregrounds`) or the unseen evaluation sky (`unseen_foregrounds`)."""

from __future__ import annotations


def main(foreground_sky: str = "training") -> None:
    import numpy as np

    from cmbml.cenn.foregrounds import (
        channel_parts,
        load_source_counts,
        load_templates,
        polarization_spectra,
        write_foreground_spectra,
    )
    from cmbml.cenn.foregrounds import foreground_sky as draw_foreground_sky
    from cmbml.cenn.plots import plot_foreground_channels
    from cmbml.cenn.setup import load
    from cmbml.common.fits import write_healpix
    from cmbml.common.io import write_json
    from cmbml.common.progress import progress

    setup = load(foreground_sky=foreground_sky)
    fg, nside, paths = setup.foregrounds, setup.nside, setup.paths
    freqs = setup.instrument.freqs_ghz
    # One sky for every channel: diffuse components at their reference frequencies (Gaussian or
    # non-Gaussian, foregrounds.model), their spectral parameters across the sky, and source catalogues
    # drawn from published counts (tables in data/); each component on its own random stream.
    foreground = draw_foreground_sky(
        fg, nside, setup.seed, load_source_counts(fg, paths.data_dir), load_templates(fg, nside, paths.data_dir)
    )
    levels, spectra, q_maps = {}, {}, {}
    with progress(f"foreground channels at nside {nside}", len(freqs)) as advance:
        for freq in freqs:
            # Each component scaled to the channel by its SED, in uK_CMB; summed one component at a time
            # so that one channel is in memory.
            total, levels[f"{freq:g}GHz"] = 0.0, {}
            for name, part in channel_parts(fg, foreground, nside, freq):
                levels[f"{freq:g}GHz"][name] = float(np.sqrt(np.mean(part**2)))
                total = total + part
                del part
            write_healpix(paths.foreground_channel(freq), total, ["Q", "U"])
            # The level the patches see: spectra over |b| > b_min, which the validation gate expects.
            spectra[freq] = polarization_spectra(total, setup.geometry.sky_lmax, setup.b_min_deg)
            q_maps[freq] = total[0].astype(np.float32)
            del total
            advance()
    write_json(
        paths.foregrounds / "levels.json",
        {
            "units": "uK_CMB rms of Q and U per pixel, unsmoothed, whole sky",
            **levels,
            "model": fg["model"],
            "n_sources": {k: int(v["flux_jy"].size) for k, v in foreground.catalogues.items()},
        },
    )
    write_foreground_spectra(paths.foreground_cls, spectra)
    plot_foreground_channels(q_maps, nside, paths.foreground_plots / "foregrounds_Q.png")
    print(
        f"foregrounds ({setup.foreground_sky} sky, {fg['model']}): {len(freqs)} channels at nside {nside}; "
        + ", ".join(f"{k} dust rms {v['dust']:.2f} uK" for k, v in levels.items())
    )
