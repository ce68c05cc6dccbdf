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
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
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

    @property
    def shape(self) -> tuple[int, ...]:
        return self.maps.shape


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


def _layout(
    shape: tuple[int, ...], n_channels: int, source: str, channels_first: bool
) -> tuple[bool, Callable[[np.ndarray], np.ndarray]]:
    """Whether an array of ``shape`` is one map, and the function that turns it (or a slice of its samples) into
    ``[sample, y, x, channel]``."""
    ndim = len(shape)
    to_last = (lambda a: np.moveaxis(a, 1, 3)) if channels_first else (lambda a: a)
    if n_channels == 1:
        if ndim == 2:
            return True, lambda a: a[None, ..., None]
        if ndim == 3:
            return False, lambda a: a[..., None]
        if ndim == 4 and shape[1 if channels_first else 3] == 1:
            return False, to_last
    else:
        if ndim == 3 and shape[0 if channels_first else -1] == n_channels:
            return True, lambda a: (np.moveaxis(a, 0, -1) if channels_first else a)[None]
        if ndim == 4 and shape[1 if channels_first else 3] == n_channels:
            return False, to_last
    layout = (
        "[channel, y, x] or [sample, channel, y, x]" if channels_first else "[y, x, channel] or [sample, y, x, channel]"
    )
    if n_channels == 1:
        layout = "[y, x] or [sample, y, x]"
    raise MapError(f"{source}: array of shape {tuple(shape)} does not hold {n_channels}-channel maps; allowed {layout}")


@dataclass
class MapSource:
    """Maps left on disk and read a slice of samples at a time (:meth:`read`), as ``[sample, y, x, channel]``
    float32: a stack larger than memory is predicted in pieces. Made by :func:`open_maps`; valid while it is open."""

    source: str
    shape: tuple[int, int, int, int]  # [sample, y, x, channel] as the network sees them
    pixel_arcmin: float | None
    single: bool
    units: str | None
    coordinates: dict | None
    format: str
    _samples: Callable[[int, int], np.ndarray]  # raw samples [start, stop) of the file's array, as stored
    _to_nyxc: Callable[[np.ndarray], np.ndarray]

    def __len__(self) -> int:
        return self.shape[0]

    def read(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Maps ``[start, stop)`` as ``[sample, y, x, channel]`` float32; refuses non-numbers and non-finite pixels,
        naming the first bad map."""
        stop = len(self) if stop is None else min(stop, len(self))
        raw = np.asarray(self._samples(start, stop))
        if not np.issubdtype(raw.dtype, np.floating) and not np.issubdtype(raw.dtype, np.integer):
            raise MapError(f"{self.source}: maps of dtype {raw.dtype}; allowed real numbers")
        maps = self._to_nyxc(raw).astype(np.float32)
        finite = np.isfinite(maps).reshape(maps.shape[0], -1).all(axis=1)
        if not finite.all():
            where = "" if self.single else f" (map {start + int(np.argmin(finite))} of {len(self)})"
            raise MapError(
                f"{self.source}: maps hold NaN or infinite pixels{where}; allowed finite values (fill masked pixels first)"
            )
        return maps


@contextmanager
def open_maps(path: str | os.PathLike, n_channels: int, dataset: str | None = None) -> Iterator[MapSource]:
    """Open one map or a stack of ``n_channels``-channel maps in FITS, NumPy or HDF5 without reading its pixels.

    Parameters
    ----------
    path : path
        The file; its suffix decides the format.
    n_channels : int
        Channels per map the model expects (decides how a 3-d array is read).
    dataset : str, optional
        HDF5 dataset to read; default the only dataset, or the first of :data:`KNOWN_INPUT_DATASETS`.

    Yields
    ------
    MapSource
        Shape, pixel size, units and sky coordinates, and :meth:`MapSource.read` for the pixels: NumPy files are
        memory-mapped, FITS images read through their section (the samples asked for, scaled), HDF5 datasets
        sliced.
    """
    path = Path(path)
    if not path.is_file():
        raise MapError(f"{path}: no such file")
    fmt = _format(path)
    pixel_arcmin = units = coordinates = None
    source, channels_first = str(path), fmt == "fits"
    with ExitStack() as stack:
        if fmt == "fits":
            from astropy.io import fits

            # read through the section, not a memory map: a map memory-mapped cannot be scaled (BZERO/BSCALE)
            hdul = stack.enter_context(fits.open(path, memmap=False))
            hdu = next((h for h in hdul if h.is_image and h.header.get("NAXIS", 0) > 0), None)
            if hdu is None:
                raise MapError(f"{path}: no image HDU")
            header, shape = hdu.header, tuple(hdu.shape)
            pixel_arcmin = fits_pixel_arcmin(header, str(path))
            units = header.get("BUNIT")
            coordinates = {k: header[k] for k in header if k.startswith(WCS_KEYWORDS) or k in WCS_GLOBAL} or None
            section = hdu.section
            if (
                len(shape) == 4 and "CHANNELS" in header
            ):  # a stack as write_prediction writes it: [channel, sample, y, x]
                shape = (shape[1], shape[0], *shape[2:])
                samples = lambda a, b: np.moveaxis(section[:, a:b], 0, 1)  # noqa: E731
            else:
                samples = lambda a, b: section[a:b]  # noqa: E731
        elif fmt == "numpy":
            try:
                arr = np.load(path, mmap_mode="r", allow_pickle=False)
            except ValueError as err:  # pickled objects, never loaded
                raise MapError(f"{path}: {err}") from None
            shape, samples = arr.shape, lambda a, b: arr[a:b]
        else:
            import h5py

            h5 = stack.enter_context(h5py.File(path, "r"))
            names = [k for k in h5 if isinstance(h5[k], h5py.Dataset)]
            if dataset is None:
                known = [k for k in KNOWN_INPUT_DATASETS if k in names]
                if len(names) != 1 and not known:
                    raise MapError(f"{path}: holds datasets {names}; name the one to read (--dataset)")
                dataset = names[0] if len(names) == 1 else known[0]
            if dataset not in names:
                raise MapError(f"{path}: no dataset {dataset!r}; allowed {names}")
            ds = h5[dataset]
            shape, samples, source = ds.shape, lambda a, b: ds[a:b], f"{path}:{dataset}"
            attrs = {**dict(h5.attrs), **dict(ds.attrs)}
            if "pixel_arcmin" in attrs:
                pixel_arcmin = float(attrs["pixel_arcmin"])
            # "units", or the pipeline's per-quantity attribute (units_T for T_lensed)
            key = next((k for k in ("units", f"units_{dataset}", f"units_{dataset.split('_')[0]}") if k in attrs), None)
            units = _text(attrs[key]) if key else None
            if len(shape) >= 3 and all(k in h5 and h5[k].shape == (shape[0],) for k in HDF5_COORDINATES):
                coordinates = {k: h5[k][:] for k in HDF5_COORDINATES}
        single, to_nyxc = _layout(shape, n_channels, source, channels_first)
        if single:  # one map: its only "sample" is the whole array
            whole = samples
            samples = lambda a, b: whole(None, None)  # noqa: E731
        # the network's shape, from a zero-byte view of one sample
        one = to_nyxc(np.broadcast_to(np.float32(0), shape if single else (1, *shape[1:])))
        n = 1 if single else shape[0]
        yield MapSource(
            source,
            (n, *one.shape[1:]),
            pixel_arcmin,
            single,
            None if units is None else _text(units),
            coordinates,
            fmt,
            samples,
            to_nyxc,
        )


def read_maps(path: str | os.PathLike, n_channels: int, dataset: str | None = None) -> MapStack:
    """Read one map or a stack of ``n_channels``-channel maps from FITS, NumPy or HDF5 into memory (see
    :func:`open_maps` for the layouts; :func:`predict_file` streams instead)."""
    with open_maps(path, n_channels, dataset) as source:
        return MapStack(
            source.read(), source.pixel_arcmin, source.single, source.units, source.coordinates, source.format
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


def require_units(stack: MapStack | MapSource, source: str) -> None:
    """FITS and HDF5 maps must state their units (``BUNIT``; a ``units`` attribute): a map in K read as uK passes
    every other check and gives a meaningless answer. NumPy files carry none; their units are the user's word."""
    if stack.units is None and stack.format in ("fits", "hdf5"):
        where = "a BUNIT header card" if stack.format == "fits" else "a units attribute (file or dataset)"
        raise MapError(f"{source}: the maps state no units; write them in {where}, e.g. uK_CMB")


_NO_PIXEL_SIZE = {"numpy": "NumPy", "fits": "no CDELT1/2 or CD matrix", "hdf5": "no pixel_arcmin attribute"}


def check_against_card(
    stack: MapStack | MapSource, card: Mapping[str, Any], source: str = "input", pixel_arcmin: float | None = None
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
    npix = stack.shape[1:3]
    if npix != (spec["npix"], spec["npix"]):
        raise MapError(f"{source}: maps of {npix[0]} x {npix[1]} pixels; the model expects {expected}")
    if stack.shape[3] != len(spec["channels"]):
        raise MapError(f"{source}: {stack.shape[3]} channel(s); the model expects {expected}")
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


@contextmanager
def prediction_writer(
    path: str | os.PathLike,
    shape: tuple[int, ...],
    card: Mapping[str, Any],
    model_ref: str,
    single: bool,
    coordinates: Mapping[str, Any] | None = None,
) -> Iterator[Callable[[int, np.ndarray], None]]:
    """Open a prediction file of ``shape`` (``[sample, y, x, channel]``) for writing a slice of samples at a time;
    yields ``write(start, block)``. The file appears, atomically, only once the block ends without error.

    FITS: the image ``[y, x]`` or ``[sample, y, x]`` with ``BUNIT``, ``CDELT1/2`` (degrees) and the model
    in the header. HDF5: dataset ``prediction`` ``[sample, y, x]`` with the same facts as attributes. A network
    with several outputs (Q and U) keeps the channel axis: ``[sample, y, x, channel]`` in HDF5, ``[channel,
    sample, y, x]`` in FITS (its first axis last in NAXISn), the channels named by the model card (``CHANNELS``).
    ``coordinates`` (:attr:`MapSource.coordinates`) say where the input lay on the sky: its FITS WCS cards, or the
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
    multi = shape[-1] > 1
    stored = tuple(shape[1:] if single else shape)  # [sample,] y, x, channel
    stored = stored if multi else stored[:-1]
    attrs = output_attributes(card, model_ref)
    if multi:
        attrs["channels"] = ", ".join(card["output"].get("channels", []))
        attrs["layout"] = "[y, x, channel]" if single else "[sample, y, x, channel]"

    def as_stored(block: np.ndarray) -> np.ndarray:
        block = np.asarray(block if multi else block[..., 0], dtype=np.float32)
        return block[0] if single else block

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
            header["COMMENT"] = f"prediction of {attrs['quantity']}"
            # the channel is the slowest FITS axis; the data, big-endian after the header, is filled through a
            # memory map, so a stack larger than memory is written in pieces
            on_disk = (stored[-1], *stored[:-1]) if multi else stored
            hdu = fits.PrimaryHDU(data=np.zeros((1,) * len(on_disk), ">f4"), header=header)
            for axis, size in enumerate(reversed(on_disk), start=1):
                hdu.header[f"NAXIS{axis}"] = size
            hdu.header.tofile(tmp, overwrite=True)
            offset, nbytes = tmp.stat().st_size, 4 * int(np.prod(on_disk))
            with open(tmp, "r+b") as f:
                f.truncate(offset + -(-nbytes // 2880) * 2880)  # FITS pads its data with zeros to 2880 bytes
            data = np.memmap(tmp, dtype=">f4", mode="r+", offset=offset, shape=on_disk)

            def write(start: int, block: np.ndarray) -> None:
                block = as_stored(block)
                if single:
                    data[...] = np.moveaxis(block, -1, 0) if multi else block
                elif multi:
                    data[:, start : start + len(block)] = np.moveaxis(block, -1, 0)
                else:
                    data[start : start + len(block)] = block

            yield write
            data.flush()
            del data
        else:
            with h5_create(tmp) as h5:
                for key, value in attrs.items():
                    h5.attrs[key] = h5_attr_value(value)
                ds = h5_dataset(h5, "prediction", shape=stored, dtype="f4")
                for key, value in (coordinates or {}).items():
                    if isinstance(value, np.ndarray):  # per-map centres of the input's patches
                        h5_dataset(h5, key, data=value)

                def write(start: int, block: np.ndarray) -> None:
                    block = as_stored(block)
                    if single:
                        ds[...] = block
                    else:
                        ds[start : start + len(block)] = block

                yield write


def write_prediction(
    path: str | os.PathLike,
    prediction: np.ndarray,
    card: Mapping[str, Any],
    model_ref: str,
    single: bool,
    coordinates: Mapping[str, Any] | None = None,
) -> None:
    """Write ``prediction`` (``[sample, y, x, channel]``) as FITS or HDF5 in one piece (see
    :func:`prediction_writer` for the layouts and what the file states)."""
    with prediction_writer(path, prediction.shape, card, model_ref, single, coordinates) as write:
        write(0, prediction)


def predict_file(
    model,
    source: MapSource,
    output: str | os.PathLike,
    card: Mapping[str, Any],
    model_ref: str,
    batch_size: int = 64,
    chunk: int = 1024,
    transform: Callable[[np.ndarray], np.ndarray] | None = None,
    progress: Callable[[int], None] | None = None,
) -> None:
    """Predict ``source`` into ``output``, ``chunk`` maps at a time (read, predict, write), so memory holds one
    chunk whatever the stack's size.

    Parameters
    ----------
    model : keras.Model
        The network (it holds its standardisation).
    source : MapSource
        Open input maps (:func:`open_maps`), already checked against the card.
    output : path
        FITS or HDF5 file (:func:`prediction_writer`); written atomically.
    transform : callable, optional
        ``[n, y, x, channel] -> [n, y, x, channel']``: inputs the network takes derived from the maps.
    progress : callable, optional
        Called with the number of maps done after each chunk.
    """
    n, writer, write = len(source), None, None
    with ExitStack() as stack:
        for start in range(0, n, chunk):
            part = source.read(start, start + chunk)
            part = part if transform is None else transform(part)
            out = np.asarray(model.predict(part, batch_size=batch_size, verbose=0)).reshape(part.shape[:3] + (-1,))
            if writer is None:  # the output's shape is known once the network has answered
                writer = prediction_writer(
                    output, (n, *out.shape[1:]), card, model_ref, source.single, source.coordinates
                )
                write = stack.enter_context(writer)
            write(start, out)
            if progress is not None:
                progress(out.shape[0])
