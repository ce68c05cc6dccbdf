"""Training batches: streamed from HDF5 or held in memory, standardised, with the 8-fold dihedral
augmentation; the input pipelines that feed them to Keras and the distribution strategies.

A batch source (:class:`BatchSource`) is anything that gives batch ``step`` of ``epoch`` on request:
:class:`H5Batches` for the datasets of the pipeline, :class:`ArrayBatches` for arrays in memory.
:func:`cmbml.common.fit.fit` trains on either.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

import numpy as np

from cmbml.common.io import iter_chunks


def streamed_mean_std(
    paths,
    dataset: str,
    per_channel: bool = False,
    chunk: int = 256,
    transform: Callable[[np.ndarray], np.ndarray] | None = None,
    max_samples: int | None = None,
):
    """Mean and standard deviation of HDF5 dataset(s), reading ``chunk`` samples at a time.

    ``paths`` is one file or a list; with ``per_channel`` the statistics are per last axis. With ``transform``
    the statistics are those of ``transform(block)`` (e.g. a network's derived input channels), over the first
    ``max_samples`` samples of each file when given.
    """
    import h5py

    total = total_sq = 0.0
    count = 0
    axes = None
    for path in [paths] if isinstance(paths, (str, Path)) else paths:
        with h5py.File(path, "r") as h5:
            data = h5[dataset]
            n = data.shape[0] if max_samples is None else min(int(max_samples), data.shape[0])
            for sl in iter_chunks(n, chunk):
                block = data[sl]
                block = np.asarray(block if transform is None else transform(block), dtype=np.float64)
                axes = tuple(range(block.ndim - 1)) if per_channel else None
                total = total + block.sum(axis=axes)
                total_sq = total_sq + (block**2).sum(axis=axes)
                count += block.size // (block.shape[-1] if per_channel else 1)
    mean = total / count
    std = np.sqrt(np.maximum(total_sq / count - mean**2, 1e-300))
    if per_channel:
        return mean.tolist(), std.tolist()
    return float(mean), float(std)


def stacked_mean_std(paths, dataset: str, chunk: int = 256) -> tuple[list[float], list[float]]:
    """Per-channel mean and standard deviation of files joined along the channel axis (``H5Batches`` with
    ``stack_channels``): each file's channels in turn, in file order."""
    means, stds = [], []
    for path in [paths] if isinstance(paths, (str, Path)) else paths:
        m, s = streamed_mean_std(path, dataset, per_channel=True, chunk=chunk)
        means += m
        stds += s
    return means, stds


Stats = tuple[float, float] | tuple[Sequence[float], Sequence[float]]
"""``(mean, std)``: scalars, or one value per channel."""


class BatchSource(Protocol):
    """Batches addressed by ``(epoch, step)``, standardised with ``x_stats`` and ``y_stats``."""

    x_stats: Stats | None
    y_stats: Stats | None
    x_shape: tuple[int, ...]  # of one sample, channel axis last
    y_shape: tuple[int, ...]

    def __len__(self) -> int:
        """Batches per epoch."""

    def batch(self, epoch: int, step: int) -> tuple[np.ndarray, np.ndarray]:
        """``(x, y)`` float32 arrays (batch, n, n, channels)."""


def standardise(a, stats: Stats | None) -> np.ndarray:
    """``(a - mean) / std`` in float32, with a trailing channel axis added to (N, n, n) arrays."""
    a = np.asarray(a, dtype=np.float32)
    if stats is not None:
        a = (a - np.asarray(stats[0], dtype=np.float32)) / np.asarray(stats[1], dtype=np.float32)
    return a[..., None] if a.ndim == 3 else a


def dihedral(arrays: list[np.ndarray], k: int, flip: bool) -> list[np.ndarray]:
    """Apply the same rotation by ``k * 90`` degrees (and optional flip) to maps (..., n, n, c)."""
    out = []
    for a in arrays:
        a = np.rot90(a, k, axes=(-3, -2))
        out.append(np.flip(a, axis=-2) if flip else a)
    return out


def stokes_signs(stokes, k: int, flip: bool) -> np.ndarray | None:
    """Per-channel signs that keep Stokes Q and U right after :func:`dihedral` (``k`` quarter turns, ``flip``).

    Q + iU turns by twice the frame's angle: a quarter turn multiplies Q and U by -1; a mirror (about either
    axis) reverses the polarization angle, U -> -U. Channels named other than ``"Q"``/``"U"`` (T, E, B, kappa) keep
    their sign. ``stokes`` None: no sign changes.
    """
    if stokes is None:
        return None
    turn = -1.0 if k % 2 else 1.0
    return np.array(
        [turn * (-1.0 if (flip and c == "U") else 1.0) if c in ("Q", "U") else 1.0 for c in stokes], dtype=np.float32
    )


def augment_batch(
    x: np.ndarray, y: np.ndarray, rng: np.random.Generator, stokes: tuple | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Each (x, y) pair gets one of the 8 symmetries of the square, drawn independently. ``stokes`` =
    (names of x's channels, names of y's): Q and U channels change sign as spin-2 fields (:func:`stokes_signs`)."""
    x_out, y_out = np.empty_like(x), np.empty_like(y)
    ops = rng.integers(0, 8, size=x.shape[0])
    for i, op in enumerate(ops):
        k, flip = int(op) % 4, bool(op // 4)
        x_out[i], y_out[i] = dihedral([x[i], y[i]], k, flip)
        if stokes is not None:
            x_out[i] *= stokes_signs(stokes[0], k, flip)
            y_out[i] *= stokes_signs(stokes[1], k, flip)
    return x_out, y_out


class H5Batches:
    """Training batches read from one or several HDF5 files, addressed by ``(epoch, step)``.

    Pure NumPy and h5py (no deep-learning framework), so any input pipeline can drive it: batch
    ``step`` of ``epoch`` is contiguous samples of one file, standardised ``(v - mean) / std``
    (scalars or per-channel lists), with a trailing channel axis added to (N, n, n) arrays. With
    ``shuffle`` the order of batches is a permutation drawn from ``(seed, epoch)``; with ``augment``
    each pair gets one of the 8 symmetries of the square drawn from ``(seed, epoch, step)``. With
    ``x_transform`` the inputs become ``x_transform(x)`` ((batch, n, n, x_channels), made after the
    symmetry, then standardised with ``x_stats``). With ``stack_channels`` the files hold the same samples
    (e.g. the Q and U patches of one sky) and a batch joins them along the channel axis, in file order, for
    both ``x`` and ``y``; statistics are then per joined channel. ``stokes`` names the channels of ``x`` and ``y``
    (``"Q"``, ``"U"``, or anything else for a scalar) so that the augmentation turns Q and U as spin-2 fields.
    A batch
    therefore does not depend on which thread reads it or in which order: reads can run in parallel
    and ahead of the model. Memory holds only the batches being read.
    """

    def __init__(
        self,
        paths,
        x_name: str,
        y_name: str,
        batch_size: int,
        x_stats=None,
        y_stats=None,
        augment: bool = False,
        shuffle: bool = False,
        seed: int = 0,
        x_transform: Callable[[np.ndarray], np.ndarray] | None = None,
        x_channels: int | None = None,
        stack_channels: bool = False,
        stokes: tuple | None = None,
    ):
        import threading

        import h5py

        self.files = [Path(paths)] if isinstance(paths, (str, Path)) else [Path(p) for p in paths]
        self.x_name, self.y_name = x_name, y_name
        self.x_stats, self.y_stats = x_stats, y_stats
        self.augment, self.shuffle, self.seed = augment, shuffle, int(seed)
        if (x_transform is None) != (x_channels is None):
            raise ValueError("x_transform and x_channels go together: the channels the transform makes")
        self.x_transform = x_transform
        self.stack_channels = bool(stack_channels)
        self.stokes = stokes  # (x channel names, y channel names): Q and U turn as spin-2 fields when augmented
        self.index: list[tuple[int, slice]] = []  # (file, samples) of each batch; file -1: all files, stacked
        shapes, counts = [], []
        for i, path in enumerate(self.files):
            with h5py.File(path, "r") as h5:
                counts.append(h5[x_name].shape[0])
                shapes.append((h5[x_name].shape[1:], h5[y_name].shape[1:]))
            if not self.stack_channels:
                self.index += [(i, sl) for sl in iter_chunks(counts[-1], batch_size)]
        add_channel = lambda shape: tuple(shape) + ((1,) if len(shape) == 2 else ())  # noqa: E731
        self.x_shape, self.y_shape = add_channel(shapes[0][0]), add_channel(shapes[0][1])
        if self.stack_channels:
            if len(set(counts)) != 1 or len(set(shapes)) != 1:
                raise ValueError(
                    f"{', '.join(map(str, self.files))}: stacked files must hold the same samples "
                    f"of the same shape (samples {counts})"
                )
            self.index = [(-1, sl) for sl in iter_chunks(counts[0], batch_size)]
            k = len(self.files)
            self.x_shape = self.x_shape[:-1] + (self.x_shape[-1] * k,)
            self.y_shape = self.y_shape[:-1] + (self.y_shape[-1] * k,)
        if x_transform is not None:
            self.x_shape = self.x_shape[:-1] + (int(x_channels),)
        self._local = threading.local()  # one set of open files per reading thread

    def __len__(self) -> int:
        return len(self.index)

    @property
    def n_samples(self) -> int:
        return sum(sl.stop - sl.start for _, sl in self.index)

    def _read(self, i: int, name: str, sl: slice, stats) -> np.ndarray:
        import h5py

        handles = self._local.__dict__.setdefault("handles", {})
        for j in range(len(self.files)) if i == -1 else (i,):
            if j not in handles:
                handles[j] = h5py.File(self.files[j], "r")
        if i == -1:  # every file's samples joined along the channel axis
            parts = [standardise(handles[j][name][sl], None) for j in range(len(self.files))]
            return standardise(np.concatenate(parts, axis=-1), stats)
        return standardise(handles[i][name][sl], stats)

    def batch(self, epoch: int, step: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``step``-th batch of ``epoch``: ``(x, y)`` float32 arrays (batch, n, n, channels)."""
        position = int(step)
        if self.shuffle:
            position = int(np.random.default_rng([self.seed, int(epoch)]).permutation(len(self))[position])
        i, sl = self.index[position]
        if self.x_transform is None and self.stokes is None:  # scalar maps: a turn commutes with standardising
            x, y = self._read(i, self.x_name, sl, self.x_stats), self._read(i, self.y_name, sl, self.y_stats)
            if self.augment:
                x, y = augment_batch(x, y, np.random.default_rng([self.seed, int(epoch), int(step)]))
            return x, y
        if self.x_transform is None:  # Q and U change sign when turned: turned in physical units, then standardised
            x, y = self._read(i, self.x_name, sl, None), self._read(i, self.y_name, sl, None)
            if self.augment:
                x, y = augment_batch(x, y, np.random.default_rng([self.seed, int(epoch), int(step)]), self.stokes)
            return standardise(x, self.x_stats), standardise(y, self.y_stats)
        # Derived channels are made after the rotation or flip, from the map the network sees.
        x, y = self._read(i, self.x_name, sl, None), self._read(i, self.y_name, sl, self.y_stats)
        if self.augment:
            x, y = augment_batch(x, y, np.random.default_rng([self.seed, int(epoch), int(step)]))
        return standardise(self.x_transform(x), self.x_stats), y


class ArrayBatches:
    """Batches of arrays held in memory, in order, standardised as :class:`H5Batches` does.

    For data small enough to hold (tests, examples): ``x`` and ``y`` are (N, n, n) or (N, n, n, channels);
    every epoch gives the same batches.
    """

    def __init__(self, x, y, batch_size: int, x_stats: Stats | None = None, y_stats: Stats | None = None):
        if len(x) != len(y):
            raise ValueError(f"x has {len(x)} samples, y {len(y)}: one target per input")
        self.x_stats, self.y_stats = x_stats, y_stats
        self._x, self._y = standardise(x, x_stats), standardise(y, y_stats)
        self.x_shape, self.y_shape = self._x.shape[1:], self._y.shape[1:]
        self.index = list(iter_chunks(len(self._x), batch_size))

    def __len__(self) -> int:
        return len(self.index)

    def batch(self, epoch: int, step: int) -> tuple[np.ndarray, np.ndarray]:
        sl = self.index[int(step)]
        return self._x[sl], self._y[sl]


def tf_dataset(batches: BatchSource, epochs: int = 1, parallel_reads: int | None = None, prefetch: int | None = None):
    """A ``tf.data`` pipeline over ``epochs`` passes of ``batches``.

    ``parallel_reads`` batches are read at once and ``prefetch`` more wait ready (both tuned by
    ``tf.data`` when None), so the model step never waits on the disk. The order is deterministic.
    Fit with ``steps_per_epoch=len(batches)``.
    """
    import tensorflow as tf

    parallel_reads = tf.data.AUTOTUNE if parallel_reads is None else parallel_reads
    prefetch = tf.data.AUTOTUNE if prefetch is None else prefetch

    n = len(batches)

    def read(j):
        j = int(j)
        return batches.batch(j // n, j % n)

    def load(j):
        x, y = tf.numpy_function(read, [j], [tf.float32, tf.float32], stateful=False)
        x.set_shape((None, *batches.x_shape))
        y.set_shape((None, *batches.y_shape))
        return x, y

    return (
        tf.data.Dataset.range(epochs * n)
        .map(load, num_parallel_calls=parallel_reads, deterministic=True)
        .prefetch(prefetch)
    )


def distribution_strategy(kind: str):
    """The ``tf.distribute`` strategy that trains a model: build and compile it inside ``strategy.scope()``.

    ``single``: TensorFlow's default strategy (one device, as without any strategy). ``mirrored``: one
    replica per GPU of this node, or per logical CPU device where there is no GPU; the gradients of the
    replicas are summed. Datasets batched with the global batch size are split between the replicas, so
    the batch size means the same thing under both, and where each batch divides evenly between the
    replicas training gives the same losses up to float rounding (tests/integration/test_distributed_training.py).
    """
    import tensorflow as tf

    if kind == "single":
        return tf.distribute.get_strategy()
    if kind == "mirrored":
        devices = [d.name for d in tf.config.list_logical_devices("GPU")]
        return tf.distribute.MirroredStrategy(devices or [d.name for d in tf.config.list_logical_devices("CPU")])
    raise ValueError(f"strategy = {kind!r}: allowed single, mirrored")


def keras_feed(batches: BatchSource, workers: int = 4, max_queue_size: int = 16):
    """The same batches as :func:`tf_dataset` as a ``keras.utils.PyDataset`` read by ``workers`` threads with
    ``max_queue_size`` batches queued ahead: the input pipeline for Keras backends other than TensorFlow
    (JAX, PyTorch), where ``tf.data`` is not installed."""
    import keras

    class Feed(keras.utils.PyDataset):
        def __init__(self):
            super().__init__(workers=workers, use_multiprocessing=False, max_queue_size=max_queue_size)
            self.epoch = 0

        def __len__(self):
            return len(batches)

        def __getitem__(self, step):
            return batches.batch(self.epoch, step)

        def on_epoch_end(self):
            self.epoch += 1

    return Feed()
