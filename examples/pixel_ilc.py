"""A method from outside the project, entered in the CENN benchmark: a pixel-space ILC per patch, in NumPy alone.

It reads the evaluation patches (``M``: the sky at each frequency, uK_CMB) and writes one estimate of the CMB
per patch, in the files' order, for ``cmbml score``:

    python examples/pixel_ilc.py datasets/cenn/patches/Validation_E.h5 -o ilc.npy
    cmbml score cenn ilc.npy --method my-pixel-ilc
    cmbml report            # the CENN table gains the row "my-pixel-ilc (entered)"

For Q and U give both files (Q first): the estimate is written as [sample, y, x, (Q, U)].
"""

import argparse

import h5py
import numpy as np


def pixel_ilc(maps: np.ndarray) -> np.ndarray:
    """(n, y, x, channels) -> (n, y, x): per patch, the unit-response combination of the channels of least
    power, w = C^-1 1 / (1^T C^-1 1), C the channels' pixel second moments in that patch (not mean-subtracted:
    a foreground offset over the patch is part of what the weights must remove)."""
    n, ny, nx, nc = maps.shape
    flat = maps.reshape(n, -1, nc)
    cov = np.einsum("npi,npj->nij", flat, flat) / flat.shape[1]
    w = np.linalg.solve(cov, np.ones((n, nc, 1)))[..., 0]
    w /= w.sum(axis=1, keepdims=True)
    return np.einsum("nyxc,nc->nyx", maps, w)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("patches", nargs="+", help="Validation_<component>.h5 files, in the variant's order")
    parser.add_argument("-o", "--output", required=True, help="NumPy file for the estimates")
    args = parser.parse_args()
    estimates = []
    for path in args.patches:
        with h5py.File(path, "r") as h5:
            estimates.append(pixel_ilc(h5["M"][:].astype(np.float64)))
    np.save(args.output, np.stack(estimates, axis=-1).astype(np.float32))
    print(f"pixel ILC: {estimates[0].shape[0]} patches -> {args.output}")
