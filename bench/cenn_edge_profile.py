"""Where a CENN network beats the Wiener filter: map MSE by distance from the patch edge (on demand, not a test).

The Wiener filter works on the patch's FFT, as if the patch were periodic: near the edges it mixes the opposite
edge's sky in. A network with "same"-padded convolutions sees the edges as edges. On a Gaussian sky the two can
differ only there; in the interior the Wiener filter is the optimum and a network can at best equal it.
This script scores the workspace's trained network (models/cenn/model.keras) and the Wiener filter fitted on
the Train patches, on the Validation patches, in rings of pixels by distance from the nearest edge.

Run from the repository root after `dvc repro cenn_evaluate` (any variant):

    python bench/cenn_edge_profile.py
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT)]
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def ring_index(npix: int) -> np.ndarray:
    """Distance of every pixel (npix, npix) from the nearest edge, in pixels (0 on the border)."""
    i = np.arange(npix)
    edge = np.minimum(i, npix - 1 - i)
    return np.minimum(edge[:, None], edge[None, :])


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rings", default="2,4,8,16,1000", help="ring edges in pixels from the border")
    args = ap.parse_args(argv)

    import h5py
    import keras

    from cmbml.cenn.baselines import BaselineSetup
    from cmbml.cenn.evaluation import ClassicalBaselines
    from cmbml.cenn.setup import load
    from cmbml.common.prediction import predict_h5
    from cmbml.common.roles import EVALUATION, TRAINING
    from cmbml.common.spectra import read_spectra_csv

    setup = load()
    geometry, components = setup.geometry, setup.components
    camb = read_spectra_csv(setup.paths.camb_cls)
    lmax = int(geometry.sky_lmax)
    cl_label = {s: camb[f"cl_{s.lower()}_lensed"][: lmax + 1] * setup.label_transfer**2 for s in ("EE", "BB")}
    baselines = ClassicalBaselines.fit(
        {c: setup.paths.patch_file(TRAINING, c) for c in components},
        BaselineSetup(geometry.patch, setup.channel_response, cl_label, setup.bin_width, tuple(components)),
    )
    files = [setup.paths.patch_file(EVALUATION, c) for c in components]
    network = predict_h5(keras.models.load_model(setup.paths.model), files, "M", batch=64)
    inputs, labels = {}, {}
    for comp, path in zip(components, files):
        with h5py.File(path, "r") as h5:
            inputs[comp], labels[comp] = h5["M"][:].astype(np.float64), h5["M0"][..., 0].astype(np.float64)
    wiener = baselines.fitted["wiener"].apply(inputs)
    rings = ring_index(geometry.patch.npix)
    edges = [int(e) for e in args.rings.split(",")]
    print(
        f"CENN {setup.variant}, {setup.foregrounds['model']} sky, {len(labels[components[0]])} Validation patches "
        f"of {geometry.patch.npix}^2 x {geometry.patch.pixel_arcmin}'; map MSE (uK^2) by distance from the edge"
    )
    print(f"{'pixels from edge':>18} {'pixels':>7} {'network':>9} {'Wiener':>9} {'ratio':>7}")
    for lo, hi in zip(edges[:-1], edges[1:]):
        ring = (rings >= lo) & (rings < hi)
        net = np.mean([np.mean((network[..., k][:, ring] - labels[c][:, ring]) ** 2) for k, c in enumerate(components)])
        wf = np.mean([np.mean((wiener[c][:, ring] - labels[c][:, ring]) ** 2) for c in components])
        print(
            f"{f'{lo}-{min(hi, geometry.patch.npix // 2)}':>18} {int(ring.sum()):>7} {net:>9.3f} {wf:>9.3f} "
            f"{net / wf:>7.3f}"
        )
    print(
        f"Wiener filter's own prediction for a periodic patch: {baselines.fit_metrics()['map_mse_wiener_predicted_uK2']:.3f}"
    )


if __name__ == "__main__":
    main()
