"""A flagged lensing network, checked on maps nothing has seen (on demand, not part of the tests).

The leak guard flags a network whose rho exceeds, by more than the scatter at physical kappa, both the quadratic
estimator's and what an optimal estimator could reach. This script scores a registered model on test maps simulated from another master seed (so no training,
early-stopping or evaluation map, nor any map of the estimator's calibration, can be among them) beside the same
estimator, per L bin and averaged, and on mismatched pairs (each prediction against another map's kappa, which
must give rho ~ 0). A network that keeps its rho on fresh maps has learned physics, not the test set.

Run from the repository root (the MLflow store in params.yaml):

    python bench/lensing_fresh_maps.py models:/cmbml-lensing-v5@default --version v5 --seed 12345
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


def model_arguments(ap: argparse.ArgumentParser, seed: int) -> None:
    """The arguments of a bench that scores a registered lensing model on maps of another seed."""
    ap.add_argument("model", help="models:/cmbml-lensing-<v>@<scale>, runs:/<id>/model or a .keras file with its card")
    ap.add_argument("--version", required=True, help="the parameter set the model was trained on (v1..v8)")
    ap.add_argument("--seed", type=int, default=seed, help="master seed of the maps (params.yaml's is another)")
    ap.add_argument("--n-maps", type=int, default=1000)


def load_for_fresh_maps(args):
    """``(setup, net, card, maker, camb)``: the version's setup, the model, its card, the input maker its card
    names and the CAMB spectra; refuses the pipeline's own seed."""
    import tempfile

    from bench.lensing_learning_curve import setup_for
    from cmbml.common.spectra import camb_spectra
    from cmbml.lensing.inputs import InputMaker
    from stages.model_registry import load_model

    with tempfile.TemporaryDirectory() as tmp:
        setup, params = setup_for(args.version, Path(tmp))
    if args.seed == setup.seed:
        raise SystemExit(f"--seed {args.seed} is the pipeline's own seed: pick another for maps nothing has seen")
    net, card = load_model(args.model)
    maker = InputMaker.from_card(card["input"]["derived"]) if "derived" in card["input"] else InputMaker(("T",))
    return setup, net, card, maker, camb_spectra(params["cosmology"], params["spectra"]["lmax"])


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    model_arguments(ap, seed=12345)
    args = ap.parse_args(argv)

    from cmbml.lensing.evaluation import compare, leak_bound, sky_estimator
    from cmbml.lensing.metrics import correlation_spectra
    from cmbml.lensing.simulate import LensingSimulator

    setup, net, card, maker, camb = load_for_fresh_maps(args)
    simulator = LensingSimulator(setup.sim, camb["cl_tt_unlensed"], camb["cl_kk"], seed=args.seed)
    test = simulator.chunk("evaluation", slice(0, args.n_maps))
    pred = net.predict(maker(test["T_lensed"]), batch_size=256, verbose=0)[..., 0].astype(np.float64)
    kappa, edges, grid = test["kappa"].astype(np.float64), setup.rho_bin_edges, setup.grid
    estimator = sky_estimator(simulator)
    qe = correlation_spectra(grid, estimator.reconstruct(test["T_lensed"]), kappa, edges)
    network = correlation_spectra(grid, pred, kappa, edges)
    _, rho_opt = estimator.wiener_rho(simulator.cl_kk_grid, edges)
    bound = leak_bound(estimator, simulator.cl_kk_grid, edges, setup.optimal_n0_gain)
    _, m = compare(network, qe, rho_opt, physical=setup.sim.kappa_exaggeration_factor == 1, rho_bound=bound)
    shuffled = correlation_spectra(grid, pred, np.roll(kappa, 1, axis=0), edges)
    print(
        f"{args.model} ({card.get('architecture', 'original')}) on {args.n_maps} fresh {args.version} maps "
        f"(seed {args.seed}): network rho {m['rho_cnn_mean']:.3f} +- {m['rho_cnn_mean_err']:.3f}, QE "
        f"{m['rho_qe_mean']:.3f} +- {m['rho_qe_mean_err']:.3f}, QE limit {m['rho_opt_mean']:.3f}; network / QE "
        f"{m['cnn_over_qe']:.3f} +- {m['cnn_over_qe_err']:.3f}; mismatched pairs rho {np.mean(shuffled.rho):.4f}"
        + (f"; leak bound {m['rho_leak_bound_mean']:.3f}, excess {m['leak_z']:.1f} errors" if "leak_z" in m else "")
    )
    print("L      network  QE     limit  leak bound")
    for i, ell in enumerate(network.ell):
        print(f"{ell:6.0f} {network.rho[i]:.3f}    {qe.rho[i]:.3f}  {rho_opt[i]:.3f}  {bound[i]:.3f}")


if __name__ == "__main__":
    main()
