"""HEALPix FITS input/output (atomic writes)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np


def write_healpix(
    path: str | Path, maps: Sequence[np.ndarray], names: Sequence[str], unit: str | Sequence[str] = "uK_CMB"
) -> None:
    """Write maps (RING, Galactic) as float32 columns ``names`` in ``unit`` (one for all, or one per column); the file
    appears only when complete."""
    import healpy as hp

    from cmbml.common.io import atomic_path

    with atomic_path(path) as tmp:
        hp.write_map(
            str(tmp),
            [np.asarray(m, dtype=np.float32) for m in maps],
            column_names=list(names),
            column_units=unit,
            coord="G",
            overwrite=True,
            dtype=np.float32,
        )


def read_healpix(path: str | Path, fields: Sequence[int], nside: int | None = None) -> np.ndarray:
    """Read ``fields`` of a HEALPix map (float64), optionally resampled to ``nside``."""
    import healpy as hp

    maps = np.atleast_2d(hp.read_map(str(path), field=tuple(fields), dtype=np.float64))
    if nside is not None and hp.get_nside(maps[0]) != nside:
        maps = np.atleast_2d(hp.ud_grade(maps, nside))
    return maps
