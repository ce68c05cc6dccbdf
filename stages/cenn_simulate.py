"""Stage `cenn_simulate`: multi-frequency sky patches (inputs M) and CMB labels (M0) for Train, Test and Validation."""

from __future__ import annotations

from pathlib import Path

from stages._common import progress, stage_params
from stages.foregrounds import channel_path
from stages.sky_maps import tqu_path

OUT_DIR = Path("datasets/cenn/patches")
SPLITS = ("Train", "Test", "Validation")


def dataset_path(split: str, component: str, root: Path = OUT_DIR) -> Path:
    return root / f"{split}_{component}.h5"


def target_index(channels, target_ghz: float) -> int:
    freqs = [ch.freq_ghz for ch in channels]
    if target_ghz not in freqs:
        raise SystemExit(f"instrument.target_GHz = {target_ghz:g} is not a channel of the instrument table {freqs}")
    return freqs.index(target_ghz)


def main() -> None:
    from cmbml.cenn_sim import build_component_skies, cut_split, plan_split, read_instrument, write_split
    from cmbml.fits import read_healpix
    from cmbml.patches import PatchGeometry

    params = stage_params("cenn")
    scale, sim, variant = params["scale"]["cenn"], params["cenn_simulate"], params["cenn"]
    nside, components = scale["nside"], variant["components"]
    channels = read_instrument(params["instrument"]["table"])
    target = target_index(channels, params["instrument"]["target_GHz"])
    geometry = PatchGeometry(scale["npix"], scale["pixel_arcmin"])

    # Beam-convolved multi-frequency skies and the CMB label, decomposed into the variant's components.
    n_real = params["sky_maps"]["n_cmb_realisations"]
    cmb = [read_healpix(tqu_path(r), (1, 2)) for r in range(n_real)]
    foregrounds = [read_healpix(channel_path(ch.freq_ghz), (0, 1)) for ch in channels]
    inputs, labels = build_component_skies(cmb, foregrounds, channels, target, nside, components)
    del cmb, foregrounds

    sizes = {split: scale[f"n_{split.lower()}"] for split in SPLITS}
    attrs = {
        "variant": variant["variant"], "units": "uK_CMB (thermodynamic)", "nside": nside,
        "npix": geometry.npix, "pixel_arcmin": geometry.pixel_arcmin, "patch_side_deg": geometry.side_deg,
        "channels_GHz": [ch.freq_ghz for ch in channels], "fwhm_arcmin": [ch.fwhm_arcmin for ch in channels],
        "noise_uK_arcmin": [ch.noise_uk_arcmin for ch in channels], "target_GHz": channels[target].freq_ghz,
        "label": f"CMB only, beam of the {channels[target].freq_ghz:g} GHz channel",
        "layout": "M[sample, y, x, channel], M0[sample, y, x, 0]; +x east (Galactic longitude), +y north",
        "seed": params["seed"], "scale": params["scale"]["name"], "b_min_deg": sim["b_min_deg"],
        "holdout_lon_deg": sim["holdout_lon_deg"], "foregrounds": params["foregrounds"],
        "cosmology": params["cosmology"],
    }
    with progress(f"CENN {variant['variant']} patches", sum(sizes.values())) as advance:
        for split in SPLITS:
            plan = plan_split(split, sizes[split], params["seed"], n_real, sim["b_min_deg"], sim["holdout_lon_deg"],
                              geometry)
            chunks = cut_split(plan, inputs, labels, channels, nside, geometry, components, params["seed"],
                               noise=params["foregrounds"]["noise"], workers=sim["workers"])
            write_split({c: dataset_path(split, c) for c in components}, plan, chunks, geometry.npix, len(channels),
                        {**attrs, "split": split}, progress=advance)
    print(f"cenn_simulate: {sizes} patches of {geometry.npix}^2 x {geometry.pixel_arcmin}' "
          f"({geometry.side_deg:.1f} deg), components {components} -> {OUT_DIR}")
