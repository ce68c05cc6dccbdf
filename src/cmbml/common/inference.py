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
    pixel_arcmin = units = None
    if fmt == "fits":
        from astropy.io import fits

        with fits.open(path) as hdul:
            hdu = next((h for h in hdul if h.data is not None and h.is_image), None)
            if hdu is None:
                raise MapError(f"{path}: no image HDU")
            arr, header = np.asarray(hdu.data), hdu.header
            if "CDELT1" in header and "CDELT2" in header:
                dx, dy = abs(float(header["CDELT1"])) * 60, abs(float(header["CDELT2"])) * 60
                if not np.isclose(dx, dy, rtol=1e-6):
                    raise MapError(f"{path}: pixels of {dx:g} x {dy:g} arcmin; allowed square pixels")
                pixel_arcmin = dx
            units = header.get("BUNIT")
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
            units = attrs.get("units")
        maps, single = _channels_last(arr, n_channels, f"{path}:{dataset}", channels_first=False)
    if not np.issubdtype(maps.dtype, np.floating) and not np.issubdtype(maps.dtype, np.integer):
        raise MapError(f"{path}: maps of dtype {maps.dtype}; allowed real numbers")
    if not np.all(np.isfinite(maps)):
        raise MapError(f"{path}: maps hold NaN or infinite pixels; allowed finite values (fill masked pixels first)")
    return MapStack(maps.astype(np.float32), pixel_arcmin, single, None if units is None else str(units))


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
            f"{source}: the file states no pixel size (NumPy); pass --pixel-arcmin "
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
    path: str | os.PathLike, prediction: np.ndarray, card: Mapping[str, Any], model_ref: str, single: bool
) -> None:
    """Write ``prediction`` (``[sample, y, x, channel]``) as FITS or HDF5, atomically, with units and geometry.

    FITS: the image ``[y, x]`` or ``[sample, y, x]`` with ``BUNIT``, ``CDELT1/2`` (degrees) and the model
    in the header. HDF5: dataset ``prediction`` ``[sample, y, x]`` with the same facts as attributes. A network
    with several outputs (Q and U) keeps the channel axis: ``[sample, y, x, channel]`` in HDF5, ``[channel,
    sample, y, x]`` in FITS (its first axis last in NAXISn), the channels named by the model card (``CHANNELS``).
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


def predict_maps(model, stack: MapStack, batch_size: int = 64) -> np.ndarray:
    """The network's output ``[sample, y, x, 1]`` for ``stack`` (the model holds its standardisation)."""
    out = model.predict(stack.maps, batch_size=batch_size, verbose=0)
    return np.asarray(out).reshape(stack.maps.shape[:3] + (-1,))
