"""Atomic output files and chunked HDF5 datasets.

Every output is written under a temporary name in the destination folder and moved
into place with :func:`os.replace` only after it is complete, so an interrupted stage
never leaves a file a later stage would take as finished. HDF5 datasets carry a
``complete = True`` attribute that is only set on the finished file.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it to ``path`` on success only.

    The temporary name keeps the final suffix (``.model.x1y2.partial.keras``) for writers that
    infer the format from it.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".partial{path.suffix}", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_json(path: str | os.PathLike, payload: Mapping[str, Any]) -> None:
    """Write JSON atomically, with numpy scalars converted."""

    def default(obj):
        if isinstance(obj, np.generic):
            return obj.item()
        if isinstance(obj, np.ndarray):
            return obj.tolist()
        raise TypeError(f"not JSON serialisable: {type(obj)}")

    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(payload, indent=2, sort_keys=True, default=default) + "\n")


def h5_attr_value(value: Any) -> Any:
    """Convert a parameter value to something HDF5 can store as an attribute."""
    if value is None:
        return "none"
    if isinstance(value, (bool, int, float, str, np.generic)):
        return value
    if isinstance(value, (list, tuple)):
        return json.dumps(list(value))
    if isinstance(value, Mapping):
        return json.dumps(dict(value), sort_keys=True)
    return str(value)


@contextlib.contextmanager
def h5_dataset_writer(
    path: str | os.PathLike,
    arrays: Mapping[str, tuple[tuple[int, ...], str]],
    attrs: Mapping[str, Any],
    chunk_samples: int,
) -> Iterator[Any]:
    """Open a new HDF5 file for streamed writing and publish it atomically.

    Parameters
    ----------
    path : path
        Final file name.
    arrays : mapping
        ``name -> (shape, dtype)`` of the datasets to create (first axis = samples).
    attrs : mapping
        File attributes (units, generating parameters).
    chunk_samples : int
        Samples per HDF5 chunk along the first axis.

    Yields
    ------
    h5py.File
        The open temporary file; fill its datasets slice by slice.
    """
    import h5py

    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w", track_order=True) as h5:
            for key, value in attrs.items():
                h5.attrs[key] = h5_attr_value(value)
            h5.attrs["complete"] = False
            for name, (shape, dtype) in arrays.items():
                chunks = (max(1, min(chunk_samples, shape[0])),) + tuple(shape[1:])
                h5.create_dataset(name, shape=shape, dtype=dtype, chunks=chunks)
            yield h5
            h5.attrs["complete"] = True


def iter_chunks(n: int, size: int) -> Iterator[slice]:
    """Slices ``[0:size], [size:2 size], ...`` covering ``range(n)``."""
    for start in range(0, n, size):
        yield slice(start, min(n, start + size))


def sample_rows(path, names: list[str], row, chunk: int = 128) -> list[dict]:
    """``row(index, {name: sample})`` for every sample of the HDF5 datasets ``names`` (floats as float64),
    read ``chunk`` samples at a time. An unreadable or malformed file gives no rows: the gate's
    file-level checks report it."""
    import h5py

    rows = []
    try:
        with h5py.File(path, "r") as h5:
            for sl in iter_chunks(h5[names[0]].shape[0], chunk):
                block = {name: _as_float64(h5[name][sl]) for name in names}
                rows += [row(sl.start + j, {name: block[name][j] for name in names}) for j in range(sl.stop - sl.start)]
    except (OSError, KeyError, ValueError, IndexError):
        return []
    return rows


def _as_float64(a: np.ndarray) -> np.ndarray:
    """Float arrays as float64 for statistics; others (digests) as they are."""
    return np.asarray(a, dtype=np.float64) if np.issubdtype(a.dtype, np.floating) else a


def array_digest(arr: np.ndarray) -> str:
    """Short content hash of an array (dtype, shape and bytes), for duplicate detection."""
    import hashlib

    h = hashlib.blake2b(digest_size=12)
    h.update(str(arr.dtype).encode())
    h.update(str(arr.shape).encode())
    h.update(np.ascontiguousarray(arr).tobytes())
    return h.hexdigest()
