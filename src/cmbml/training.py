"""Streaming training data from HDF5, standardisation and the 8-fold dihedral augmentation."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cmbml.io import iter_chunks


def streamed_mean_std(path: str | Path, dataset: str, chunk: int = 512) -> tuple[float, float]:
    """Mean and standard deviation of a whole HDF5 dataset, reading ``chunk`` samples at a time."""
    import h5py

    total = total_sq = 0.0
    count = 0
    with h5py.File(path, "r") as h5:
        data = h5[dataset]
        for sl in iter_chunks(data.shape[0], chunk):
            block = np.asarray(data[sl], dtype=np.float64)
            total += block.sum()
            total_sq += (block**2).sum()
            count += block.size
    mean = total / count
    return float(mean), float(np.sqrt(max(total_sq / count - mean**2, 1e-300)))


def dihedral(arrays: list[np.ndarray], k: int, flip: bool) -> list[np.ndarray]:
    """Apply the same rotation by ``k * 90`` degrees (and optional flip) to maps (..., n, n, c)."""
    out = []
    for a in arrays:
        a = np.rot90(a, k, axes=(-3, -2))
        out.append(np.flip(a, axis=-2) if flip else a)
    return out


def augment_batch(x: np.ndarray, y: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Each (x, y) pair gets one of the 8 symmetries of the square, drawn independently."""
    x_out, y_out = np.empty_like(x), np.empty_like(y)
    ops = rng.integers(0, 8, size=x.shape[0])
    for i, op in enumerate(ops):
        x_out[i], y_out[i] = dihedral([x[i], y[i]], int(op) % 4, bool(op // 4))
    return x_out, y_out


def make_h5_sequence(
    path: str | Path,
    x_name: str,
    y_name: str,
    batch_size: int,
    x_stats: tuple[float, float] | None = None,
    y_stats: tuple[float, float] | None = None,
    augment: bool = False,
    shuffle: bool = False,
    seed: int = 0,
    limit: int | None = None,
):
    """A ``keras.utils.PyDataset`` reading contiguous batches from an HDF5 file.

    Memory holds one batch at a time. ``x_stats``/``y_stats`` standardise ``(v - mean) / std``;
    with ``shuffle`` the order of batches changes every epoch; with ``augment`` each pair is
    rotated/flipped at random. Arrays of shape (N, n, n) gain a trailing channel axis.
    """
    import h5py
    import keras

    class H5Sequence(keras.utils.PyDataset):
        def __init__(self):
            super().__init__(workers=1, use_multiprocessing=False)
            self._h5 = None
            with h5py.File(path, "r") as h5:
                n = h5[x_name].shape[0]
            self.n = n if limit is None else min(n, limit)
            self.rng = np.random.default_rng(seed)
            self.order = np.arange(len(self))

        def __len__(self):
            return int(np.ceil(self.n / batch_size))

        def _file(self):
            if self._h5 is None:
                self._h5 = h5py.File(path, "r")
            return self._h5

        def _load(self, name, sl, stats):
            a = np.asarray(self._file()[name][sl], dtype=np.float32)
            if stats is not None:
                a = (a - stats[0]) / stats[1]
            return a[..., None] if a.ndim == 3 else a

        def __getitem__(self, idx):
            start = int(self.order[idx]) * batch_size
            sl = slice(start, min(self.n, start + batch_size))
            x, y = self._load(x_name, sl, x_stats), self._load(y_name, sl, y_stats)
            if augment:
                x, y = augment_batch(x, y, self.rng)
            return x, y

        def on_epoch_end(self):
            if shuffle:
                self.rng.shuffle(self.order)

    return H5Sequence()
