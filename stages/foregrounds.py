"""Stage `foregrounds`: polarized dust, synchrotron, radio and infrared sources at every channel (uK_CMB)."""

from __future__ import annotations

from pathlib import Path

from stages._common import stage_params

OUT_DIR = Path("datasets/cenn/foregrounds")
PLOT_DIR = Path("plots/cenn/foregrounds")
DATA_DIR = Path("data")


SPECTRA_CSV = OUT_DIR / "foreground_cls.csv"


def polarization_spectra(qu, lmax: int, b_min_deg: float = 0.0):
    """EE and BB of a (Q, U) map over ``|b| > b_min_deg`` (raw C_ell, uK^2), divided by the sky
    fraction: the level of the sky the patches see."""
    import healpy as hp
    import numpy as np

    from cmbml.sky import galactic_latitude_deg

    mask = (np.abs(galactic_latitude_deg(hp.get_nside(qu[0]))) > b_min_deg).astype(float)
    cls = hp.anafast([np.zeros_like(qu[0]), qu[0] * mask, qu[1] * mask], lmax=lmax)
    return {"EE": cls[1] / mask.mean(), "BB": cls[2] / mask.mean()}


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


def load_templates(fg: dict, nside: int) -> dict:
    """(Q, U) templates at each component's ref_GHz (uK_RJ) for the components that name a file in data/."""
    from astropy.io import fits

    from cmbml.fits import read_healpix

    templates = {}
    for name in ("dust", "synchrotron"):
        if fg[name]["template"]:
            path = DATA_DIR / fg[name]["template"]
            with fits.open(path) as hdul:
                fields = (1, 2) if len(hdul[1].columns) >= 3 else (0, 1)  # T, Q, U or Q, U
            templates[name] = read_healpix(path, fields, nside)
    return templates


def main() -> None:
    import numpy as np

    from cmbml.cenn_sim import read_instrument
    from cmbml.fits import write_healpix
    from cmbml.foregrounds import channel_maps
    from cmbml.io import write_json
    from cmbml.plots import plot_foreground_channels

    params = stage_params("cenn")
    fg, nside = params["foregrounds"], params["scale"]["cenn"]["nside"]
    channels = read_instrument(params["instrument"]["table"])
    freqs = [ch.freq_ghz for ch in channels]
    # Dust (modified black body) and synchrotron (power law) scaled from their reference frequencies,
    # plus radio and infrared point sources, all converted to uK_CMB at each channel.
    totals, parts, catalogues = channel_maps(fg, freqs, nside, params["seed"], load_templates(fg, nside))
    levels, spectra = {}, {}
    for freq in freqs:
        write_healpix(channel_path(freq), totals[freq], ["Q", "U"])
        levels[f"{freq:g}GHz"] = {k: float(np.sqrt(np.mean(v**2))) for k, v in parts[freq].items()}
        spectra[freq] = polarization_spectra(totals[freq], 3 * nside - 1, params["cenn_simulate"]["b_min_deg"])
    write_json(OUT_DIR / "levels.json", {"units": "uK_CMB rms of Q and U per pixel, unsmoothed, whole sky", **levels,
                                         "n_sources": {k: int(v["flux_jy"].size) for k, v in catalogues.items()}})
    write_foreground_spectra(SPECTRA_CSV, spectra)
    plot_foreground_channels(totals, nside, PLOT_DIR / "foregrounds_Q.png")
    print(f"foregrounds: {len(channels)} channels at nside {nside}; "
          + ", ".join(f"{k} dust rms {v['dust']:.2f} uK" for k, v in levels.items()))
