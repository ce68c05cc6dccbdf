"""Stage `foregrounds`: polarized dust, synchrotron, radio and infrared sources at every channel (uK_CMB)."""

from __future__ import annotations

from pathlib import Path

from stages._common import progress, stage_params

OUT_DIR = Path("datasets/cenn/foregrounds")
PLOT_DIR = Path("plots/cenn/foregrounds")
DATA_DIR = Path("data")


SPECTRA_CSV = OUT_DIR / "foreground_cls.csv"


def polarization_spectra(qu, lmax: int):
    """Full-sky EE and BB of a (Q, U) map (raw C_ell, uK^2)."""
    import healpy as hp
    import numpy as np

    cls = hp.anafast([np.zeros_like(qu[0]), qu[0], qu[1]], lmax=lmax)
    return {"EE": cls[1], "BB": cls[2]}


def write_foreground_spectra(path: Path, spectra) -> None:
    """CSV with ``ell`` and ``cl_{EE,BB}_{freq}GHz`` columns."""
    import numpy as np

    from cmbml.io import atomic_path

    names, columns = ["ell"], [np.arange(len(next(iter(spectra.values()))["EE"]))]
    for freq, cl in sorted(spectra.items()):
        for key in ("EE", "BB"):
            names.append(f"cl_{key}_{freq:g}GHz")
            columns.append(cl[key])
    with atomic_path(path) as tmp:
        np.savetxt(tmp, np.column_stack(columns), delimiter=",", header=",".join(names), comments="", fmt="%.8e")


def read_foreground_spectra(path: Path = SPECTRA_CSV) -> dict:
    import numpy as np

    table = np.genfromtxt(path, delimiter=",", names=True)
    return {name: np.asarray(table[name]) for name in table.dtype.names}


def channel_path(freq_ghz: float) -> Path:
    return OUT_DIR / f"foregrounds_{freq_ghz:g}GHz.fits"


def galactic_qu_rj(component: dict, nside: int, rng):
    """(Q, U) at the reference frequency in uK_RJ: a template from data/ if named, else a Gaussian sky."""
    from cmbml.fits import read_healpix
    from cmbml.foregrounds import gaussian_foreground_from_params

    if component["template"]:
        path = DATA_DIR / component["template"]
        fields = (1, 2) if _n_fields(path) >= 3 else (0, 1)
        return read_healpix(path, fields, nside)
    return gaussian_foreground_from_params(component).qu_map_rj(nside, 3 * nside - 1, rng)


def _n_fields(path: Path) -> int:
    from astropy.io import fits

    with fits.open(path) as hdul:
        return len(hdul[1].columns)


def main() -> None:
    import numpy as np

    from cmbml.cenn_sim import read_instrument
    from cmbml.fits import write_healpix
    from cmbml.foregrounds import scale_dust, scale_synchrotron, sources_from_params
    from cmbml.io import write_json
    from cmbml.plots import plot_foreground_channels

    params = stage_params("cenn")
    fg, seed = params["foregrounds"], params["seed"]
    nside = params["scale"]["cenn"]["nside"]
    channels = read_instrument(params["instrument"]["table"])
    dust_ref = galactic_qu_rj(fg["dust"], nside, np.random.default_rng([seed, 5, 0]))
    sync_ref = galactic_qu_rj(fg["synchrotron"], nside, np.random.default_rng([seed, 5, 1]))
    populations = {name: sources_from_params(fg[name]) for name in ("radio", "infrared")}
    catalogues = {name: pop.catalogue(np.random.default_rng([seed, 5, 2 + i]))
                  for i, (name, pop) in enumerate(populations.items())}
    levels, maps_for_plot, spectra = {}, {}, {}
    with progress(f"foregrounds at nside {nside}", len(channels)) as advance:
        for ch in channels:
            parts = {
                "dust": scale_dust(dust_ref, ch.freq_ghz, fg["dust"]),
                "synchrotron": scale_synchrotron(sync_ref, ch.freq_ghz, fg["synchrotron"]),
                **{name: pop.qu_map(catalogues[name], nside, ch.freq_ghz) for name, pop in populations.items()},
            }
            total = sum(parts.values())
            write_healpix(channel_path(ch.freq_ghz), total, ["Q", "U"])
            levels[f"{ch.freq_ghz:g}GHz"] = {k: float(np.sqrt(np.mean(v**2))) for k, v in parts.items()}
            spectra[ch.freq_ghz] = polarization_spectra(total, 3 * nside - 1)
            maps_for_plot[ch.freq_ghz] = total
            advance()
    write_json(OUT_DIR / "levels.json", {"units": "uK_CMB rms of Q and U per pixel, unsmoothed", **levels,
                                         "n_sources": {k: int(v["flux_jy"].size) for k, v in catalogues.items()}})
    write_foreground_spectra(SPECTRA_CSV, spectra)
    plot_foreground_channels(maps_for_plot, nside, PLOT_DIR / "foregrounds_Q.png")
    print(f"foregrounds: {len(channels)} channels at nside {nside}; "
          + ", ".join(f"{k} dust rms {v['dust']:.2f} uK" for k, v in levels.items()))
