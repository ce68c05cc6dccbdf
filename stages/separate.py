"""`cmbml separate`: a trained component-separation network applied to full-sky frequency maps (Planck's public
maps, or any in their conventions), written as a HEALPix CMB map with its mask and overlap-weight map."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path


def separate_maps(
    model_ref: str,
    map_files: Sequence[str | Path],
    output: str | Path,
    b_min_deg: float = 30.0,
    spacing_in_sides: float = 0.5,
    batch: int = 128,
    overwrite: bool = False,
) -> dict:
    """Read one map per channel of the model (lowest frequency first), tile the sky above ``|b| > b_min_deg`` with
    the model's patches, apply it and write the CMB estimate (uK_CMB, RING, Galactic) with ``MASK`` and ``WEIGHT``
    columns to ``output``. Raises ``SkyMapError`` (one line, naming the file) for maps that do not fit the model.
    Returns a summary: patches, sky fraction, nside."""
    import numpy as np

    from cmbml.cenn.separate import SkyMapError, Tiling, e_b_maps, read_frequency_map, separate
    from cmbml.common.fits import write_healpix
    from cmbml.common.flatsky import FlatGrid
    from cmbml.common.progress import progress
    from stages.model_registry import load_model

    output = Path(output)
    if output.suffix.lower() not in (".fits", ".fit", ".fts"):
        raise SkyMapError(f"{output}: the estimate is a HEALPix map; name a .fits file")
    if any(output.resolve() == Path(f).resolve() for f in map_files):
        raise SkyMapError(f"{output}: is one of the input maps; name another output")
    if output.exists() and not overwrite:
        raise SkyMapError(f"{output}: exists; pass --overwrite to replace it")
    model, card = load_model(model_ref)
    if card.get("experiment") != "cenn" or "input" not in card:
        raise SkyMapError(f"{model_ref}: not a component-separation network (its model card names no CENN input)")
    spec, components = card["input"], list(card["components"])
    n_channels = len(spec["fwhm_arcmin"])
    if len(map_files) != n_channels:
        raise SkyMapError(
            f"{len(map_files)} map(s) given; {model_ref} takes {n_channels}, one per channel "
            f"({', '.join(spec['channels'][:n_channels])}), lowest frequency first"
        )
    first, _ = read_frequency_map(map_files[0])
    import healpy as hp

    nside = hp.get_nside(first[0])
    if spec.get("nside") not in (None, nside):  # the patches' interpolation window and noise follow the sky's nside
        raise SkyMapError(
            f"{map_files[0]}: nside {nside}; {model_ref} was trained on patches cut from nside {spec['nside']} skies: "
            f"resample the maps (healpy.ud_grade) or use a network trained at nside {nside}"
        )
    read = [read_frequency_map(f, nside) for f in map_files]
    channel_qu = np.stack([qu for qu, _ in read])
    observed = np.all([obs for _, obs in read], axis=0)
    if components == ["Q", "U"]:
        inputs = np.moveaxis(channel_qu, 1, 0)
    else:
        inputs = np.moveaxis(np.stack([e_b_maps(qu, nside, components) for qu in channel_qu]), 1, 0)
    del channel_qu
    tiling = Tiling.covering(
        FlatGrid(int(spec["npix"]), float(spec["pixel_arcmin"])), nside, b_min_deg, spacing_in_sides
    )
    with progress(f"{model_ref} over the sky at |b| > {b_min_deg:g} deg", tiling.n_patches) as advance:
        estimate = separate(
            inputs, lambda x: model.predict(x, batch_size=64, verbose=0), tiling, components, batch, progress=advance
        )
    mask = estimate.mask & observed
    columns = [f"CMB_{c}" for c in components]
    write_healpix(
        output,
        [*(m * mask for m in estimate.maps), mask.astype(np.float32), estimate.weight],
        [*columns, "MASK", "WEIGHT"],
        unit=["uK_CMB"] * len(columns) + ["", ""],
    )
    return {
        "n_patches": tiling.n_patches,
        "sky_fraction": float(mask.mean()),
        "nside": int(nside),
        "components": components,
    }
