"""What binds a dataset together: per-sample pair digests, the parameter digest of a set, and map sketches
for finding near-duplicates.

- :func:`pair_digest` hashes a sample's index, input and label together at write time. A label shifted,
  transposed, zeroed or overwritten after writing no longer matches its input's digest.
- :func:`params_digest` hashes the parameters that made a dataset; every split file carries it, so splits
  made by different parameters (a stage killed after a seed change) cannot pass as one set.
- :func:`sketches` reduces each map to a short unit vector (a fixed random projection of the map with its
  mean removed and its norm divided out); two maps that are copies up to noise or scale have sketches
  with cosine similarity near 1, independent maps near 0 (scatter ``1 / sqrt(SKETCH_SIZE)``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np

SKETCH_SIZE = 64
NEAR_DUPLICATE_SIMILARITY = 0.999
"""Cosine similarity of sketches above which two maps count as copies (independent maps: ~0 +- 0.125)."""


def pair_digest(index: int, inputs: np.ndarray, label: np.ndarray) -> bytes:
    """Hex digest (32 characters, ASCII bytes) of one sample: its index and its float32 input and label."""
    h = hashlib.blake2b(digest_size=16)
    h.update(np.int64(index).tobytes())
    for arr in (inputs, label):
        a = np.ascontiguousarray(arr, dtype=np.float32)
        h.update(str(a.shape).encode())
        h.update(a.tobytes())
    return h.hexdigest().encode()


def pair_digests(start: int, inputs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """:func:`pair_digest` of samples ``start, start + 1, ...`` of stacks ``inputs`` and ``labels``, as ``S32``."""
    return np.array([pair_digest(start + i, x, y) for i, (x, y) in enumerate(zip(inputs, labels))], dtype="S32")


def params_digest(params: Mapping[str, Any]) -> str:
    """Digest of a parameter mapping, independent of key order (JSON with sorted keys)."""
    text = json.dumps(params, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.blake2b(text.encode(), digest_size=12).hexdigest()


def _projection(n_features: int) -> np.ndarray:
    # Fixed by the map size, so sketches of files written at different times compare.
    return np.random.default_rng([20261121, n_features]).standard_normal((n_features, SKETCH_SIZE))


def sketches(maps: np.ndarray) -> np.ndarray:
    """Unit sketches (N, SKETCH_SIZE) of a stack of maps (N, ...), each map's mean removed and norm divided out.

    A constant map (zero variance) gets a zero sketch, similar to nothing.
    """
    flat = np.asarray(maps, dtype=np.float64).reshape(len(maps), -1)
    flat = flat - flat.mean(axis=1, keepdims=True)
    proj = flat @ _projection(flat.shape[1])
    norm = np.linalg.norm(proj, axis=1, keepdims=True)
    return np.where(norm > 0, proj / np.where(norm > 0, norm, 1.0), 0.0)


def nearest_neighbours(sketch: np.ndarray, block: int = 2048) -> tuple[np.ndarray, np.ndarray]:
    """For each row of ``sketch`` (N, k), the most similar other row: ``(similarity, index)``, in blocks."""
    n = len(sketch)
    best = np.full(n, -np.inf)
    where = np.full(n, -1)
    for start in range(0, n, block):
        sim = sketch[start : start + block] @ sketch.T
        rows = np.arange(sim.shape[0])
        sim[rows, start + rows] = -np.inf  # not itself
        if n > 1:
            where[start : start + block] = sim.argmax(axis=1)
            best[start : start + block] = sim[rows, where[start : start + block]]
    return best, where


def iter_h5_chunks(path, name: str, chunk: int = 256) -> Iterator[np.ndarray]:
    """Dataset ``name`` of an HDF5 file, ``chunk`` samples at a time."""
    import h5py

    from cmbml.common.io import iter_chunks

    with h5py.File(path, "r") as h5:
        data = h5[name]
        for sl in iter_chunks(data.shape[0], chunk):
            yield data[sl]


def near_duplicate_rows(files: Mapping[str, Any], names: Sequence[str]) -> list[dict]:
    """One row per sample of every file: for each dataset in ``names``, the similarity of its nearest
    neighbour among all samples of all files and where that neighbour is (``file:index``).

    An unreadable file contributes no rows (the file checks report it).
    """
    keys, index, per_name = [], [], {name: [] for name in names}
    for key, path in files.items():
        try:
            parts = {name: np.concatenate([sketches(c) for c in iter_h5_chunks(path, name)]) for name in names}
        except (OSError, KeyError, ValueError):
            continue
        n = min(len(v) for v in parts.values())
        keys += [key] * n
        index += list(range(n))
        for name in names:
            per_name[name].append(parts[name][:n])
    if not keys:
        return []
    rows = [{"file": k, "index": i} for k, i in zip(keys, index)]
    for name in names:
        similarity, where = nearest_neighbours(np.concatenate(per_name[name]))
        for row, s, w in zip(rows, similarity, where):
            row[f"{name}_nearest_similarity"] = float(s) if np.isfinite(s) else 0.0
            row[f"{name}_nearest"] = f"{keys[w]}:{index[w]}" if w >= 0 else ""
    return rows
