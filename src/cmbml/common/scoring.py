"""Reading any method's estimates of an evaluation split, checked against the split, for scoring them with
the same code that scores the networks and the classical baselines.

An estimate file holds one estimate per sample of the split, in the split's order, in FITS, NumPy or HDF5
(the layouts of :mod:`cmbml.common.inference`; HDF5 default dataset ``prediction``, as ``cmbml predict``
writes). Where the file states units, a pixel size or a kappa exaggeration factor, each must be the split's;
NumPy files state none and are read in the split's units.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cmbml.common.inference import MapError, read_maps

PLAUSIBLE_RMS_RATIO = 1e3
"""An estimate whose rms differs from the truth's by more than this factor (either way) is in other units or of
another quantity (K_CMB read as uK_CMB is 1e-6)."""


@dataclass(frozen=True)
class EvaluationSplit:
    """What a method's estimates must match: the evaluation split's samples, geometry, channels and units.

    Attributes
    ----------
    name : str
        The split as the user knows it (its file paths), for messages.
    n_samples, npix : int
        Samples (maps or patches) and pixels per side.
    pixel_arcmin : float
        Pixel side, arcmin.
    channels : tuple of str
        The estimated channels in order (``("kappa",)``, ``("E",)``, ``("Q", "U")``).
    units : str
        Units of the truth (``uK_CMB``, ``dimensionless``).
    truth_rms : float
        Root mean square of the truth, in ``units``: the scale a plausible estimate has.
    stated : dict
        Other facts a file may state and must then match (``{"kappa_exaggeration_factor": 10.0}``).
    """

    name: str
    n_samples: int
    npix: int
    pixel_arcmin: float
    channels: tuple[str, ...]
    units: str
    truth_rms: float
    stated: Mapping[str, float] = field(default_factory=dict)

    def describe(self) -> str:
        return (
            f"{self.n_samples} estimates of {', '.join(self.channels)} on {self.npix} x {self.npix} pixels of "
            f"{self.pixel_arcmin:g} arcmin in {self.units}, in the order of {self.name}"
        )


FITS_FACTS = {"kappa_exaggeration_factor": "KAPPAEXG"}


def _stated_facts(path: Path, dataset: str | None) -> dict[str, Any]:
    """Attributes (HDF5) or header keywords (FITS) the file states about its estimates."""
    name = path.name.lower()
    if name.endswith((".h5", ".hdf5")):
        import h5py

        with h5py.File(path, "r") as h5:
            attrs = dict(h5.attrs)
            if dataset is not None and dataset in h5:
                attrs.update(h5[dataset].attrs)
            return attrs
    if name.endswith((".fits", ".fit", ".fts", ".fits.gz")):
        from astropy.io import fits

        header = fits.getheader(path)
        return {key: header[keyword] for key, keyword in FITS_FACTS.items() if keyword in header}
    return {}


def _units_match(stated: str, expected: str) -> bool:
    def norm(u: str) -> str:
        return u.strip().lower().replace("µ", "u").replace("μ", "u")

    return norm(stated) in (norm(expected), norm(expected).split("_")[0])


def read_estimates(path: str | os.PathLike, split: EvaluationSplit, dataset: str | None = None) -> np.ndarray:
    """The estimates ``(n_samples, npix, npix, n_channels)`` float32 of ``path``, after checking that they match
    ``split``: sample count, pixels, pixel size and units where the file states them, channels, a plausible
    amplitude. Raises :class:`MapError` with one line naming the file and what differs."""
    path = Path(path)
    if dataset is None and path.name.lower().endswith((".h5", ".hdf5")) and path.is_file():
        import h5py

        with h5py.File(path, "r") as h5:
            names = [k for k in h5 if isinstance(h5[k], h5py.Dataset)]
        dataset = "prediction" if "prediction" in names else None
    stack = read_maps(path, len(split.channels), dataset)
    maps, expected = stack.maps, split.describe()
    if stack.single or maps.shape[0] != split.n_samples:
        raise MapError(f"{path}: {1 if stack.single else maps.shape[0]} estimate(s); expected {expected}")
    if maps.shape[1:3] != (split.npix, split.npix):
        raise MapError(f"{path}: maps of {maps.shape[1]} x {maps.shape[2]} pixels; expected {expected}")
    if maps.shape[3] != len(split.channels):
        raise MapError(f"{path}: {maps.shape[3]} channel(s); expected {expected}")
    if stack.pixel_arcmin is not None and not np.isclose(stack.pixel_arcmin, split.pixel_arcmin, rtol=1e-4):
        raise MapError(f"{path}: pixels of {stack.pixel_arcmin:g} arcmin; expected {expected}")
    if stack.units is not None and not _units_match(stack.units, split.units):
        raise MapError(f"{path}: estimates in {stack.units}; expected {expected}")
    facts = _stated_facts(path, dataset)
    names = facts.get("channels")
    if names is not None:
        names = names.decode() if isinstance(names, bytes) else str(names)
        # `cmbml predict` names its outputs after the quantity ("CMB Q"): the component is the last word
        if [c.strip().split(" ")[-1] for c in names.split(",")] != list(split.channels):
            raise MapError(f"{path}: channels {names}; expected {expected}")
    for key, value in split.stated.items():
        if key in facts and not np.isclose(float(facts[key]), float(value)):
            raise MapError(f"{path}: {key} = {float(facts[key]):g}; the split's is {float(value):g}")
    rms = float(np.sqrt(np.mean(maps.astype(np.float64) ** 2)))
    if split.truth_rms > 0 and not 1 / PLAUSIBLE_RMS_RATIO < rms / split.truth_rms < PLAUSIBLE_RMS_RATIO:
        raise MapError(
            f"{path}: estimates of rms {rms:.3g}, the truth's is {split.truth_rms:.3g} {split.units}: "
            f"other units or another quantity; expected {expected}"
        )
    return maps
