"""Atomic, byte-reproducible output files and chunked HDF5 datasets.

Every output is written under a temporary name in the destination folder and moved
into place with :func:`os.replace` only after it is complete, so an interrupted stage
never leaves a file a later stage would take as finished. HDF5 datasets carry a
``complete = True`` attribute that is only set on the finished file.

The same arrays and attributes give the same bytes: HDF5 objects carry no creation
times and attributes keep their creation order, JSON keys are sorted. Times and
absolute paths belong in logs, never in outputs, so that DVC sees an unchanged
output as unchanged.
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


def current_umask() -> int:
    """The process's umask (read by setting it and restoring it at once)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it to ``path`` on success only.

    The temporary name keeps the final suffix (``.model.x1y2.partial.keras``) for writers that
    infer the format from it. The file gets the permissions the user's umask gives a new file
    (``mkstemp`` creates it private, 0600, which would hide datasets and models from the rest of a
    shared project).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".partial{path.suffix}", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o666 & ~current_umask())
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


JSON_SIGNIFICANT_DIGITS = 10
"""Floats in JSON outputs keep 10 significant digits: FFTW's kernels depend on memory alignment, so NaMaster's
spectra of the same maps differ between runs in the last bit (~4e-16 relative), which must not reach the bytes."""


def _json_ready(obj: Any) -> Any:
    """``obj`` with numpy values converted and floats rounded to :data:`JSON_SIGNIFICANT_DIGITS`."""
    if isinstance(obj, np.ndarray):
        obj = obj.tolist()
    elif isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float):
        return float(f"{obj:.{JSON_SIGNIFICANT_DIGITS}g}") if np.isfinite(obj) else obj
    if isinstance(obj, Mapping):
        return {str(k): _json_ready(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_ready(v) for v in obj]
    return obj


def write_json(path: str | os.PathLike, payload: Mapping[str, Any]) -> None:
    """Write JSON atomically: keys sorted, numpy values converted, floats to 10 significant digits."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(_json_ready(payload), indent=2, sort_keys=True) + "\n")


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


def h5_create(path: str | os.PathLike):
    """A new HDF5 file (truncating) whose bytes depend on its content only.

    HDF5 stamps every object header with its creation time unless told otherwise, and h5py
    offers no file-level switch, so the file is created from property lists: no object times,
    links and attributes in creation order, the oldest file format that holds the content.
    Datasets must be created with ``track_times=False`` (:func:`h5_dataset`).
    """
    import h5py

    fcpl = h5py.h5p.create(h5py.h5p.FILE_CREATE)
    order = h5py.h5p.CRT_ORDER_TRACKED | h5py.h5p.CRT_ORDER_INDEXED
    fcpl.set_link_creation_order(order)
    fcpl.set_attr_creation_order(order)
    fcpl.set_obj_track_times(False)
    fapl = h5py.h5p.create(h5py.h5p.FILE_ACCESS)
    fapl.set_libver_bounds(h5py.h5f.LIBVER_EARLIEST, h5py.h5f.LIBVER_LATEST)
    fid = h5py.h5f.create(os.fsencode(path), h5py.h5f.ACC_TRUNC, fcpl=fcpl, fapl=fapl)
    return h5py.File(fid)


def h5_dataset(h5, name: str, **kwargs):
    """``h5.create_dataset`` without the creation time in the object header."""
    return h5.create_dataset(name, track_times=False, **kwargs)


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
    with atomic_path(path) as tmp, h5_create(tmp) as h5:
        for key, value in attrs.items():
            h5.attrs[key] = h5_attr_value(value)
        h5.attrs["complete"] = False
        for name, (shape, dtype) in arrays.items():
            chunks = (max(1, min(chunk_samples, shape[0])),) + tuple(shape[1:])
            h5_dataset(h5, name, shape=shape, dtype=dtype, chunks=chunks)
        yield h5
        h5.attrs["complete"] = True


ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)  # the earliest time a zip entry can carry


def _renumber_shared_objects(config: Any) -> Any:
    """Keras names objects shared between layers by their Python ``id()`` (a memory address, new in every
    process); number them 1, 2, ... in order of appearance instead, which keeps the sharing."""
    numbers: dict[Any, int] = {}

    def walk(node):
        if isinstance(node, dict):
            return {
                k: (numbers.setdefault(v, len(numbers) + 1) if k == "shared_object_id" else walk(v))
                for k, v in node.items()
            }
        if isinstance(node, list):
            return [walk(v) for v in node]
        return node

    return walk(config)


def write_keras_model(model, path: str | os.PathLike) -> None:
    """Save a Keras model as a ``.keras`` archive, atomically and reproducibly.

    Keras stamps the archive with the save time (``date_saved`` in ``metadata.json`` and the weights
    entry's zip time) and names shared objects by memory address; times are removed and the shared
    objects numbered, so the same weights give the same bytes.
    """
    import zipfile

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=f".{path.stem}.") as scratch, atomic_path(path) as tmp:
        raw = Path(scratch) / path.name
        model.save(raw)
        with zipfile.ZipFile(raw) as src, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as dst:
            for name in sorted(src.namelist()):
                data = src.read(name)
                if name == "metadata.json":
                    meta = json.loads(data)
                    meta.pop("date_saved", None)
                    data = json.dumps(meta, sort_keys=True).encode()
                elif name == "config.json":
                    data = json.dumps(_renumber_shared_objects(json.loads(data))).encode()
                info = zipfile.ZipInfo(name, date_time=ZIP_EPOCH)
                info.compress_type = zipfile.ZIP_DEFLATED
                info.external_attr = 0o644 << 16
                dst.writestr(info, data)


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
