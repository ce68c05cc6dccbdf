"""Applying a trained network to maps: read FITS, NumPy or HDF5 maps, check them against the model card,
predict, write the output with its units.

A model card (``models/<experiment>/model_card.json``, also the MLflow model's metadata) says what the
network expects and returns::

    {"input":  {"channels": ["T"], "units": "uK_CMB", "npix": 50, "pixel_arcmin": 5.0, ...},
     "output": {"channels": ["kappa"], "units": "dimensionless", "kappa_exaggeration_factor": 30.0, ...}, ...}

Array layouts. NumPy and HDF5: ``[y, x]`` (one single-channel map), ``[sample, y, x]`` (a single-channel
stack), ``[y, x, channel]`` or ``[sample, y, x, channel]``, as the pipeline's datasets. FITS images:
``[y, x]``, ``[sample, y, x]`` (single channel), ``[channel, y, x]`` or ``[sample, channel, y, x]`` in numpy
order (FITS NAXIS1 = x), the pixel side in ``CDELT1``/``CDELT2`` (degrees).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

FITS_SUFFIXES = (".fits", ".fit", ".fts")
NUMPY_SUFFIXES = (".npy",)
HDF5_SUFFIXES = (".h5", ".hdf5")
KNOWN_INPUT_DATASETS = ("T_lensed", "M", "maps")  # the pipeline's input datasets, tried in this order


class MapError(ValueError):
    """Maps that cannot be read, or that do not match the model card; the message says what was expected."""


@dataclass
class MapStack:
    """Maps as the network sees them, ``[sample, y, x, channel]`` float32, with what the file said."""

    maps: np.ndarray
    pixel_arcmin: float | None  # None where the format carries no pixel size (NumPy)
    single: bool  # the file held one map (the output is written as one map too)
    units: str | None = None
    coordinates: dict | None = (
        None  # where the maps lie on the sky, carried to the output (FITS WCS cards, HDF5 centres)
    )
    format: str = ""  # fits, numpy or hdf5


WCS_KEYWORDS = ("CTYPE", "CRVAL", "CRPIX", "CUNIT", "CDELT", "CD1_", "CD2_", "PC1_", "PC2_", "CROTA")
WCS_GLOBAL = ("RADESYS", "EQUINOX", "LONPOLE", "LATPOLE", "WCSAXES", "DATE-OBS", "MJD-OBS")
HDF5_COORDINATES = ("centre_lon_deg", "centre_lat_deg")
"""Datasets of the pipeline's patch files (one value per map) that say where each map lies, in Galactic degrees."""


def _text(value) -> str:
    """An attribute as text: HDF5 stores strings as bytes or str, NumPy as 0-d arrays."""
    if isinstance(value, np.ndarray) and value.ndim == 0:
        value = value.item()
    return value.decode() if isinstance(value, bytes | np.bytes_) else str(value)


def fits_pixel_arcmin(header, source: str) -> float | None:
    """Square pixel side (arcmin) from ``CDELT1/2`` or a ``CD`` matrix (its columns' lengths); None without either."""
    if "CDELT1" in header and "CDELT2" in header and not any(k in header for k in ("CD1_1", "CD2_2")):
        dx, dy = abs(float(header["CDELT1"])) * 60, abs(float(header["CDELT2"])) * 60
    elif "CD1_1" in header or "CD2_2" in header:
        cd = np.array([[float(header.get(f"CD{i}_{j}", 0.0)) for j in (1, 2)] for i in (1, 2)])
        dx, dy = np.hypot(*cd[:, 0]) * 60, np.hypot(*cd[:, 1]) * 60
    else:
        return None
    if not np.isclose(dx, dy, rtol=1e-6):
        raise MapError(f"{source}: pixels of {dx:g} x {dy:g} arcmin; allowed square pixels")
    return float(dx)


def _format(path: Path) -> str:
    name = path.name.lower()
    for fmt, suffixes in (("fits", FITS_SUFFIXES), ("numpy", NUMPY_SUFFIXES), ("hdf5", HDF5_SUFFIXES)):
        if name.endswith((*suffixes, *(s + ".gz" for s in suffixes))):
            return fmt
    raise MapError(
        f"{path}: unknown map format; allowed FITS ({', '.join(FITS_SUFFIXES)}), "
        f"NumPy (.npy) or HDF5 ({', '.join(HDF5_SUFFIXES)})"
    )


def _channels_last(arr: np.ndarray, n_channels: int, source: str, channels_first: bool) -> tuple[np.ndarray, bool]:
    """``arr`` as ``[sample, y, x, channel]`` and whether it was one map."""
    ndim = arr.ndim
    if n_channels == 1:
        if ndim == 2:
            return arr[None, ..., None], True
        if ndim == 3:
            return arr[..., None], False
        if ndim == 4 and arr.shape[1 if channels_first else 3] == 1:
            return (np.moveaxis(arr, 1, 3) if channels_first else arr), False
    else:
        axis = 0 if channels_first else -1
        if ndim == 3 and arr.shape[axis] == n_channels:
            return (np.moveaxis(arr, 0, -1) if channels_first else arr)[None], True
        if ndim == 4 and arr.shape[1 if channels_first else 3] == n_channels:
            return (np.moveaxis(arr, 1, 3) if channels_first else arr), False
    layout = (
        "[channel, y, x] or [sample, channel, y, x]" if channels_first else "[y, x, channel] or [sample, y, x, channel]"
    )
    if n_channels == 1:
        layout = "[y, x] or [sample, y, x]"
    raise MapError(f"{source}: array of shape {arr.shape} does not hold {n_channels}-channel maps; allowed {layout}")


def read_maps(path: str | os.PathLike, n_channels: int, dataset: str | None = None) -> MapStack:
    """Read one map or a stack of ``n_channels``-channel maps from FITS, NumPy or HDF5.

    Parameters
    ----------
    path : path
        The file; its suffix decides the format.
    n_channels : int
        Channels per map the model expects (decides how a 3-d array is read).
    dataset : str, optional
        HDF5 dataset to read; default the only dataset, or the first of :data:`KNOWN_INPUT_DATASETS`.
    """
    path = Path(path)
    if not path.is_file():
        raise MapError(f"{path}: no such file")
    fmt = _format(path)
    pixel_arcmin = units = coordinates = None
    if fmt == "fits":
        from astropy.io import fits

        with fits.open(path) as hdul:
            hdu = next((h for h in hdul if h.data is not None and h.is_image), None)
            if hdu is None:
                raise MapError(f"{path}: no image HDU")
            arr, header = np.asarray(hdu.data), hdu.header
            pixel_arcmin = fits_pixel_arcmin(header, str(path))
            units = header.get("BUNIT")
            coordinates = {k: header[k] for k in header if k.startswith(WCS_KEYWORDS) or k in WCS_GLOBAL} or None
            if arr.ndim == 4 and "CHANNELS" in header:  # a stack as write_prediction writes it: [channel, sample, y, x]
                arr = np.moveaxis(arr, 0, 1)
        maps, single = _channels_last(arr, n_channels, str(path), channels_first=True)
    elif fmt == "numpy":
        maps, single = _channels_last(np.load(path, allow_pickle=False), n_channels, str(path), channels_first=False)
    else:
        import h5py

        with h5py.File(path, "r") as h5:
            names = [k for k in h5 if isinstance(h5[k], h5py.Dataset)]
            if dataset is None:
                known = [k for k in KNOWN_INPUT_DATASETS if k in names]
                if len(names) != 1 and not known:
                    raise MapError(f"{path}: holds datasets {names}; name the one to read (--dataset)")
                dataset = names[0] if len(names) == 1 else known[0]
            if dataset not in names:
                raise MapError(f"{path}: no dataset {dataset!r}; allowed {names}")
            ds = h5[dataset]
            arr = ds[...]
            attrs = {**dict(h5.attrs), **dict(ds.attrs)}
            if "pixel_arcmin" in attrs:
                pixel_arcmin = float(attrs["pixel_arcmin"])
            # "units", or the pipeline's per-quantity attribute (units_T for T_lensed)
            key = next((k for k in ("units", f"units_{dataset}", f"units_{dataset.split('_')[0]}") if k in attrs), None)
            units = _text(attrs[key]) if key else None
            if all(k in h5 and h5[k].shape == (arr.shape[0],) for k in HDF5_COORDINATES) and arr.ndim >= 3:
                coordinates = {k: h5[k][:] for k in HDF5_COORDINATES}
        maps, single = _channels_last(arr, n_channels, f"{path}:{dataset}", channels_first=False)
    if not np.issubdtype(maps.dtype, np.floating) and not np.issubdtype(maps.dtype, np.integer):
        raise MapError(f"{path}: maps of dtype {maps.dtype}; allowed real numbers")
    if not np.all(np.isfinite(maps)):
        raise MapError(f"{path}: maps hold NaN or infinite pixels; allowed finite values (fill masked pixels first)")
    return MapStack(
        maps.astype(np.float32), pixel_arcmin, single, None if units is None else _text(units), coordinates, fmt
    )


def check_output(output: str | os.PathLike, inputs: str | os.PathLike, overwrite: bool = False) -> Path:
    """Refuse, before anything is predicted, an output that is the input, that exists (unless ``overwrite``), or
    whose format carries no units (NumPy) or is unknown."""
    output = Path(output)
    if output.resolve() == Path(inputs).resolve():
        raise MapError(f"{output}: is the input file; name another output (the input is never overwritten)")
    if output.exists() and not overwrite:
        raise MapError(f"{output}: exists; pass --overwrite to replace it")
    if _format(output) == "numpy":
        raise MapError(
            f"{output}: NumPy files carry no units; allowed outputs FITS ({', '.join(FITS_SUFFIXES)}) "
            f"or HDF5 ({', '.join(HDF5_SUFFIXES)})"
        )
    return output


def require_units(stack: MapStack, source: str) -> None:
    """FITS and HDF5 maps must state their units (``BUNIT``; a ``units`` attribute): a map in K read as uK passes
    every other check and gives a meaningless answer. NumPy files carry none; their units are the user's word."""
    if stack.units is None and stack.format in ("fits", "hdf5"):
        where = "a BUNIT header card" if stack.format == "fits" else "a units attribute (file or dataset)"
        raise MapError(f"{source}: the maps state no units; write them in {where}, e.g. uK_CMB")


_NO_PIXEL_SIZE = {"numpy": "NumPy", "fits": "no CDELT1/2 or CD matrix", "hdf5": "no pixel_arcmin attribute"}


def check_against_card(
    stack: MapStack, card: Mapping[str, Any], source: str = "input", pixel_arcmin: float | None = None
) -> None:
    """Raise :class:`MapError` unless the maps have the model's pixel count, pixel size and channels.

    ``pixel_arcmin`` stands in for a format that carries no pixel size (NumPy); where the file states one,
    both must agree.
    """
    spec = card["input"]
    expected = (
        f"{spec['npix']} x {spec['npix']} pixels of {spec['pixel_arcmin']:g} arcmin, channels "
        f"{', '.join(spec['channels'])} in {spec['units']}"
    )
    npix = stack.maps.shape[1:3]
    if npix != (spec["npix"], spec["npix"]):
        raise MapError(f"{source}: maps of {npix[0]} x {npix[1]} pixels; the model expects {expected}")
    if stack.maps.shape[3] != len(spec["channels"]):
        raise MapError(f"{source}: {stack.maps.shape[3]} channel(s); the model expects {expected}")
    sizes = [s for s in (stack.pixel_arcmin, pixel_arcmin) if s is not None]
    if not sizes:
        raise MapError(
            f"{source}: the file states no pixel size ({_NO_PIXEL_SIZE.get(stack.format, 'none')}); pass --pixel-arcmin "
            f"(the model expects {spec['pixel_arcmin']:g} arcmin)"
        )
    for size in sizes:
        if not np.isclose(size, spec["pixel_arcmin"], rtol=1e-4):
            raise MapError(f"{source}: pixels of {size:g} arcmin; the model expects {expected}")
    if stack.units is not None and stack.units.split()[0].lower().replace("µ", "u") not in (
        spec["units"].lower(),
        spec["units"].lower().split("_")[0],
    ):
        raise MapError(f"{source}: maps in {stack.units}; the model expects {expected}")


def output_attributes(card: Mapping[str, Any], model_ref: str) -> dict[str, Any]:
    """What the written prediction states about itself: quantity, units, geometry and the model."""
    out = card["output"]
    attrs = {
        "quantity": out["quantity"],
        "units": out["units"],
        "pixel_arcmin": float(out["pixel_arcmin"]),
        "model": model_ref,
        "parameter_set": card.get("parameter_set", ""),
        "layout": "[sample, y, x]",
    }
    for key in ("kappa_exaggeration_factor", "target_GHz", "fwhm_arcmin"):
        if key in out:
            attrs[key] = float(out[key])
    return attrs


FITS_KEYWORDS = {
    "kappa_exaggeration_factor": "KAPPAEXG",
    "target_GHz": "TARGGHZ",
    "fwhm_arcmin": "FWHMAMIN",
    "parameter_set": "PARAMSET",
}


def write_prediction(
    path: str | os.PathLike,
    prediction: np.ndarray,
    card: Mapping[str, Any],
    model_ref: str,
    single: bool,
    coordinates: Mapping[str, Any] | None = None,
) -> None:
    """Write ``prediction`` (``[sample, y, x, channel]``) as FITS or HDF5, atomically, with units and geometry.

    FITS: the image ``[y, x]`` or ``[sample, y, x]`` with ``BUNIT``, ``CDELT1/2`` (degrees) and the model
    in the header. HDF5: dataset ``prediction`` ``[sample, y, x]`` with the same facts as attributes. A network
    with several outputs (Q and U) keeps the channel axis: ``[sample, y, x, channel]`` in HDF5, ``[channel,
    sample, y, x]`` in FITS (its first axis last in NAXISn), the channels named by the model card (``CHANNELS``).
    ``coordinates`` (:attr:`MapStack.coordinates`) say where the input lay on the sky: its FITS WCS cards, or the
    HDF5 datasets of patch centres, written to the output the same way.
    """
    from cmbml.common.io import atomic_path, h5_attr_value, h5_create, h5_dataset

    path = Path(path)
    fmt = _format(path)
    if fmt == "numpy":
        raise MapError(
            f"{path}: NumPy files carry no units; allowed outputs FITS ({', '.join(FITS_SUFFIXES)}) "
            f"or HDF5 ({', '.join(HDF5_SUFFIXES)})"
        )
    multi = prediction.shape[-1] > 1
    data = np.asarray(prediction if multi else prediction[..., 0], dtype=np.float32)
    data = data[0] if single else data
    attrs = output_attributes(card, model_ref)
    if multi:
        attrs["channels"] = ", ".join(card["output"].get("channels", []))
        attrs["layout"] = "[y, x, channel]" if single else "[sample, y, x, channel]"
    with atomic_path(path) as tmp:
        if fmt == "fits":
            from astropy.io import fits

            header = fits.Header()
            deg = attrs["pixel_arcmin"] / 60.0
            header["BUNIT"] = (attrs["units"], attrs["quantity"][:47])
            header["CTYPE1"], header["CTYPE2"] = ("X", "flat-sky x, +x east"), ("Y", "flat-sky y, +y north")
            header["CUNIT1"], header["CUNIT2"] = "deg", "deg"
            header["CDELT1"], header["CDELT2"] = -deg, deg
            for key, keyword in FITS_KEYWORDS.items():
                if key in attrs:
                    header[keyword] = attrs[key]
            if coordinates and not isinstance(next(iter(coordinates.values())), np.ndarray):
                for key, value in coordinates.items():  # the input's WCS: the output lies where the input did
                    header[key] = value
            header["MODEL"] = model_ref[:68]
            if multi:
                header["CHANNELS"] = attrs["channels"][:68]
                data = np.moveaxis(data, -1, 0)  # the channel is the slowest FITS axis
            header["COMMENT"] = f"prediction of {attrs['quantity']}"
            fits.PrimaryHDU(data=data, header=header).writeto(tmp, overwrite=True)
        else:
            with h5_create(tmp) as h5:
                for key, value in attrs.items():
                    h5.attrs[key] = h5_attr_value(value)
                h5_dataset(h5, "prediction", data=data)
                for key, value in (coordinates or {}).items():
                    if isinstance(value, np.ndarray):  # per-map centres of the input's patches
                        h5_dataset(h5, key, data=value)


def predict_maps(model, stack: MapStack, batch_size: int = 64, progress=None, chunk: int = 1024) -> np.ndarray:
    """The network's output ``[sample, y, x, channel]`` for ``stack`` (the model holds its standardisation),
    ``chunk`` maps at a time, ``progress(n)`` called after each."""
    out = []
    for start in range(0, stack.maps.shape[0], chunk):
        part = stack.maps[start : start + chunk]
        out.append(np.asarray(model.predict(part, batch_size=batch_size, verbose=0)).reshape(part.shape[:3] + (-1,)))
        if progress is not None:
            progress(part.shape[0])
    return np.concatenate(out)
