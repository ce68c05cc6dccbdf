"""Does a lensing network read the folded modes? Score it on maps lensed at the pixels and on band-limited ones.

Lensing moves power from ``l`` to ``l + L``. Lensed at the pixels alone (``lensing_simulate.oversampling=1``), the
modes pushed beyond the grid's Nyquist multipole fold back onto the grid as power correlated with kappa, which no
band-limited instrument records and the quadratic estimator does not model. This script draws the same unlensed T
and kappa twice from a seed no dataset uses, lenses them both ways (``cmbml.lensing.physics.lens_band_limited``
with oversampling 1 and 2) and scores a registered model and the quadratic estimator of the version's sky on each,
with the evaluation's code (rho with jackknife errors, the ratio with its paired error, the leak guard). A network
that holds its rho on the band-limited maps reads lensing; one that collapses there read the folded modes.

Run from the repository root (the MLflow store in params.yaml), for example on a network trained on aliased maps:

    dvc exp run -S lensing=v7 -S lensing_net.architecture=resunet -S lensing_simulate.oversampling=1
    python bench/lensing_aliasing.py models:/cmbml-lensing-v7@default --version v7
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

from bench.lensing_fresh_maps import load_for_fresh_maps, model_arguments


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    model_arguments(ap, seed=4242)
    args = ap.parse_args(argv)

    from dataclasses import replace

    from cmbml.lensing.evaluation import compare, leak_bound, sky_estimator
    from cmbml.lensing.metrics import correlation_spectra
    from cmbml.lensing.simulate import LensingSimulator

    setup, net, _, maker, camb = load_for_fresh_maps(args)
    grid, edges, sim = setup.grid, setup.rho_bin_edges, setup.sim
    for oversampling in (1, 2):
        config = replace(sim, oversampling=oversampling)
        # the same seed, stream and index: the same unlensed T, kappa and noise; only the lensing differs
        simulator = LensingSimulator(config, camb["cl_tt_unlensed"], camb["cl_kk"], seed=args.seed)
        samples = [simulator.sample_stream(2, i) for i in range(args.n_maps)]
        kappa = np.stack([s["kappa"] for s in samples])
        t_lensed = np.stack([s["T_lensed"] for s in samples])
        estimator = sky_estimator(simulator)
        _, rho_opt = estimator.wiener_rho(simulator.cl_kk_grid, edges)
        bound = leak_bound(estimator, simulator.cl_kk_grid, edges, setup.optimal_n0_gain)
        x = maker(t_lensed.astype(np.float32)) if maker.derived else t_lensed[..., None].astype(np.float32)
        pred = net.predict(x, batch_size=256, verbose=0)[..., 0].astype(np.float64)
        qe = correlation_spectra(grid, estimator.reconstruct(t_lensed), kappa, edges)
        network = correlation_spectra(grid, pred, kappa, edges)
        _, m = compare(network, qe, rho_opt, physical=sim.kappa_exaggeration_factor == 1, rho_bound=bound)
        label = "lensed at the pixels (aliased)" if oversampling == 1 else "band-limited (oversampling 2)"
        print(
            f"{args.version}, {args.n_maps} maps {label}: network {m['rho_cnn_mean']:.4f} +- "
            f"{m['rho_cnn_mean_err']:.4f}, QE {m['rho_qe_mean']:.4f} +- {m['rho_qe_mean_err']:.4f}, limit "
            f"{m['rho_opt_mean']:.4f}; network / QE {m['cnn_over_qe']:.3f} +- {m['cnn_over_qe_err']:.3f}"
            + (f"; leak bound {m['rho_leak_bound_mean']:.4f}, excess {m['leak_z']:.1f} errors" if "leak_z" in m else "")
        )


if __name__ == "__main__":
    main()
