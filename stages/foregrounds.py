"""Stage `foregrounds`: polarized dust, synchrotron, radio and infrared sources at every channel (uK_CMB)."""

from __future__ import annotations


def main() -> None:
    import numpy as np

    from cmbml.cenn_config import load
    from cmbml.fits import write_healpix
    from cmbml.foregrounds import channel_maps, load_templates, polarization_spectra, write_foreground_spectra
    from cmbml.io import write_json
    from cmbml.plots import plot_foreground_channels

    setup = load()
    fg, nside, paths = setup.foregrounds, setup.nside, setup.paths
    freqs = setup.instrument.freqs_ghz
    # Dust (modified black body) and synchrotron (power law) scaled from their reference frequencies,
    # plus radio and infrared point sources, all converted to uK_CMB at each channel.
    totals, parts, catalogues = channel_maps(fg, freqs, nside, setup.seed, load_templates(fg, nside, paths.data_dir))
    levels, spectra = {}, {}
    for freq in freqs:
        write_healpix(paths.foreground_channel(freq), totals[freq], ["Q", "U"])
        levels[f"{freq:g}GHz"] = {k: float(np.sqrt(np.mean(v**2))) for k, v in parts[freq].items()}
        # The level the patches see: spectra over |b| > b_min, which the validation gate expects.
        spectra[freq] = polarization_spectra(totals[freq], setup.geometry.sky_lmax, setup.b_min_deg)
    write_json(paths.foregrounds / "levels.json", {
        "units": "uK_CMB rms of Q and U per pixel, unsmoothed, whole sky", **levels,
        "n_sources": {k: int(v["flux_jy"].size) for k, v in catalogues.items()}})
    write_foreground_spectra(paths.foreground_cls, spectra)
    plot_foreground_channels(totals, nside, paths.foreground_plots / "foregrounds_Q.png")
    print(f"foregrounds: {len(freqs)} channels at nside {nside}; "
          + ", ".join(f"{k} dust rms {v['dust']:.2f} uK" for k, v in levels.items()))
