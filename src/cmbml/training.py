"""Streaming training data from HDF5, standardisation and the 8-fold dihedral augmentation."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cmbml.io import iter_chunks


def streamed_mean_std(paths, dataset: str, per_channel: bool = False, chunk: int = 256):
    """Mean and standard deviation of HDF5 dataset(s), reading ``chunk`` samples at a time.

    ``paths`` is one file or a list; with ``per_channel`` the statistics are per last axis.
    """
    import h5py

    total = total_sq = 0.0
    count = 0
    axes = None
    for path in [paths] if isinstance(paths, (str, Path)) else paths:
        with h5py.File(path, "r") as h5:
            data = h5[dataset]
            axes = tuple(range(data.ndim - 1)) if per_channel else None
            for sl in iter_chunks(data.shape[0], chunk):
                block = np.asarray(data[sl], dtype=np.float64)
                total = total + block.sum(axis=axes)
                total_sq = total_sq + (block**2).sum(axis=axes)
                count += block.size // (block.shape[-1] if per_channel else 1)
    mean = total / count
    std = np.sqrt(np.maximum(total_sq / count - mean**2, 1e-300))
    if per_channel:
        return mean.tolist(), std.tolist()
    return float(mean), float(std)


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
    paths,
    x_name: str,
    y_name: str,
    batch_size: int,
    x_stats=None,
    y_stats=None,
    augment: bool = False,
    shuffle: bool = False,
    seed: int = 0,
):
    """A ``keras.utils.PyDataset`` reading contiguous batches from one or several HDF5 files.

    Memory holds one batch at a time. ``x_stats``/``y_stats`` standardise ``(v - mean) / std``
    (scalars or per-channel lists); with ``shuffle`` the order of batches changes every epoch;
    with ``augment`` each pair is rotated/flipped at random. Arrays of shape (N, n, n) gain a
    trailing channel axis.
    """
    import h5py
    import keras

    files = [paths] if isinstance(paths, (str, Path)) else list(paths)

    def standardise(a, stats):
        if stats is None:
            return a
        return (a - np.asarray(stats[0], dtype=np.float32)) / np.asarray(stats[1], dtype=np.float32)

    class H5Sequence(keras.utils.PyDataset):
        def __init__(self):
            super().__init__(workers=1, use_multiprocessing=False)
            self._handles = {}
            self.batches = []  # (file index, slice)
            for i, path in enumerate(files):
                with h5py.File(path, "r") as h5:
                    n = h5[x_name].shape[0]
                self.batches += [(i, sl) for sl in iter_chunks(n, batch_size)]
            self.rng = np.random.default_rng(seed)
            self.order = np.arange(len(self.batches))
            if shuffle:
                self.rng.shuffle(self.order)

        def __len__(self):
            return len(self.batches)

        def _load(self, i, name, sl, stats):
            if i not in self._handles:
                self._handles[i] = h5py.File(files[i], "r")
            a = standardise(np.asarray(self._handles[i][name][sl], dtype=np.float32), stats)
            return a[..., None] if a.ndim == 3 else a

        def __getitem__(self, idx):
            i, sl = self.batches[int(self.order[idx])]
            x, y = self._load(i, x_name, sl, x_stats), self._load(i, y_name, sl, y_stats)
            if augment:
                x, y = augment_batch(x, y, self.rng)
            return x, y

        def on_epoch_end(self):
            if shuffle:
                self.rng.shuffle(self.order)

    return H5Sequence()
