"""Evaluation on held-out maps: batched network prediction from HDF5 datasets."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from cmbml.common.io import iter_chunks


def predict_h5(
    model,
    path: str | Path | Sequence[str | Path],
    x_name: str,
    batch: int,
    add_channel_axis: bool = False,
    transform=None,
) -> np.ndarray:
    """Network outputs for every sample of the HDF5 dataset ``x_name``, read and predicted ``batch`` at a time.

    ``path`` may be a list of files holding the same samples (e.g. the Q and U patches): their ``x_name``
    (N, n, n, C) are joined along the channel axis, in order, as :class:`cmbml.common.training.H5Batches` does with
    ``stack_channels``. With ``add_channel_axis`` the inputs (N, n, n) gain a trailing channel axis and the
    outputs lose it; with ``transform`` the network is given ``transform(x)`` instead (its input channels made
    from ``x``).
    """
    import contextlib

    import h5py

    paths = [path] if isinstance(path, (str, Path)) else list(path)
    with contextlib.ExitStack() as stack:
        datasets = [stack.enter_context(h5py.File(p, "r"))[x_name] for p in paths]
        n = datasets[0].shape[0]
        if any(d.shape[0] != n for d in datasets):
            raise ValueError(
                f"{', '.join(map(str, paths))}: {x_name} holds different sample counts; joined "
                "files must hold the same samples"
            )
        out = None
        for sl in iter_chunks(n, batch):
            x = datasets[0][sl] if len(datasets) == 1 else np.concatenate([d[sl] for d in datasets], axis=-1)
            inputs = transform(x) if transform is not None else (x[..., None] if add_channel_axis else x)
            y = model.predict(inputs, verbose=0)
            y = y[..., 0] if add_channel_axis else y
            if out is None:
                out = np.empty((n,) + y.shape[1:], dtype=y.dtype)
            out[sl] = y
    return out
