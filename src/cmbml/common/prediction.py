"""Evaluation on held-out maps: batched network prediction from HDF5 datasets."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cmbml.common.io import iter_chunks


def predict_h5(model, path: str | Path, x_name: str, batch: int, add_channel_axis: bool = False,
               transform=None) -> np.ndarray:
    """Network outputs for every sample of the HDF5 dataset ``x_name``, read and predicted ``batch`` at a time.

    With ``add_channel_axis`` the inputs (N, n, n) gain a trailing channel axis and the outputs lose it; with
    ``transform`` the network is given ``transform(x)`` instead (its input channels made from ``x``).
    """
    import h5py

    with h5py.File(path, "r") as h5:
        data = h5[x_name]
        out = None
        for sl in iter_chunks(data.shape[0], batch):
            x = data[sl]
            inputs = transform(x) if transform is not None else (x[..., None] if add_channel_axis else x)
            y = model.predict(inputs, verbose=0)
            y = y[..., 0] if add_channel_axis else y
            if out is None:
                out = np.empty((data.shape[0],) + y.shape[1:], dtype=y.dtype)
            out[sl] = y
    return out
