"""How many maps a lensing network needs: rho_network / rho_QE against the number of training maps (on demand).

For each version and architecture, the network is trained on the first ``n`` maps of the version's training
stream for each ``n`` (nested sets), with the pipeline's own pieces: the simulator, the HDF5 batches, the fit loop
with early stopping, the input channels of the architecture, and scored by the evaluation's code on 1000
independent test maps beside the quadratic estimator built from the version's sky (jackknife errors, paired).

Writes ``<out>.json`` (every point: per-bin and mean ratio with errors, wall time), ``<out>.md`` (the table and,
per curve, the training-set size where a straight line in log10(n) through the last three points reaches 0.9 and
1.0 of the estimator) and ``<out>.png`` (the curves). The machine is named in the JSON.

Run (the full curve is hours on a GPU and days on 2 CPU cores; a quick look: ``--n-training 1000 3000``):

    python bench/lensing_learning_curve.py --versions v4 v6 v8 --architectures resunet resunet_qe \\
        --n-training 1000 3000 10000 30000 100000 --epochs 5
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT)]
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def setup_for(version: str, tmp: Path):
    """The version's lensing setup at scale=default, composed from conf/ as `dvc exp run -S lensing=<v>` does."""
    from cmbml.common.params import load_params
    from cmbml.lensing.setup import LensingSetup

    out = tmp / f"params.{version}.yaml"
    subprocess.run(
        [sys.executable, "-m", "stages.cli", "params", "compose", "--output", str(out), f"lensing={version}"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        env={**os.environ, "PYTHONPATH": f"{ROOT / 'src'}:{ROOT}"},
    )
    params = load_params(out)
    return LensingSetup.from_params(params, ROOT / "conf", source=str(out)), params


def train_and_score(
    setup,
    simulator,
    estimator,
    architecture: str,
    net_params,
    n: int,
    epochs: int,
    tmp: Path,
    test: dict,
    qe_spectra,
    rho_opt,
) -> dict:
    import keras

    from cmbml.common.fit import fit
    from cmbml.common.networks import make_optimizer
    from cmbml.common.training import H5Batches, streamed_mean_std
    from cmbml.lensing.evaluation import compare, leak_bound
    from cmbml.lensing.inputs import InputMaker
    from cmbml.lensing.metrics import correlation_spectra
    from cmbml.lensing.networks import ARCHITECTURES
    from cmbml.lensing.simulate import write_split

    train, grid = setup.train, setup.grid
    files = {}
    for role, count in (("training", n), ("early_stopping", 300)):
        files[role] = tmp / f"{setup.version}_{role}_{count}.h5"
        if not files[role].exists():
            write_split(files[role], simulator, role, count, 256, {})
    arch = ARCHITECTURES[architecture]
    maker = InputMaker.for_sky(arch.inputs, estimator, simulator.cl_kk_grid)
    derived = {"x_transform": maker, "x_channels": len(maker.channels)} if maker.derived else {}
    x_stats = (
        streamed_mean_std(files["training"], "T_lensed", per_channel=True, transform=maker, max_samples=2000)
        if maker.derived
        else streamed_mean_std(files["training"], "T_lensed")
    )
    y_stats = streamed_mean_std(files["training"], "kappa")
    batch = min(train.batch_size, n)
    training = H5Batches(
        files["training"],
        "T_lensed",
        "kappa",
        batch,
        x_stats,
        y_stats,
        augment=True,
        shuffle=True,
        seed=setup.seed,
        **derived,
    )
    stopping = H5Batches(files["early_stopping"], "T_lensed", "kappa", batch, x_stats, y_stats, **derived)
    keras.utils.set_random_seed(setup.seed)
    core = arch.build(net_params, grid.npix, name=f"{architecture}_{setup.version}_{n}")
    if hasattr(arch, "start"):
        arch.start(core, x_stats, y_stats)
    schedule = keras.optimizers.schedules.CosineDecay(train.learning_rate, epochs * len(training))
    core.compile(optimizer=make_optimizer(train.optimizer, schedule, train.clipnorm), loss="mse")
    t0 = time.perf_counter()
    fitted = fit(core, training, stopping, epochs, patience=2, verbose=0)
    seconds = time.perf_counter() - t0
    inputs = maker(test["T_lensed"]) if maker.derived else test["T_lensed"][..., None]
    pred = fitted.model.predict(inputs, batch_size=256, verbose=0)[..., 0].astype(np.float64)
    network = correlation_spectra(grid, pred, test["kappa"].astype(np.float64), setup.rho_bin_edges)
    bound = leak_bound(estimator, simulator.cl_kk_grid, setup.rho_bin_edges, setup.optimal_n0_gain)
    rows, m = compare(network, qe_spectra, rho_opt, physical=setup.sim.kappa_exaggeration_factor == 1, rho_bound=bound)
    return {
        "version": setup.version,
        "architecture": architecture,
        "n_training": n,
        "epochs_run": fitted.epochs_run,
        "train_seconds": seconds,
        "ratio": m["cnn_over_qe"],
        "ratio_err": m["cnn_over_qe_err"],
        "rho_network": m["rho_cnn_mean"],
        "rho_qe": m["rho_qe_mean"],
        "leak_suspected": m.get("leak_suspected", 0),
        "per_bin": [{"L": r["L"], "ratio": r["rho_cnn"] / r["rho_qe"]} for r in rows],
    }


def extrapolate(points: list[dict], target: float) -> float | None:
    """Training maps where a straight line in log10(n) through the last three points reaches ``target``
    (None when the line does not rise)."""
    pts = sorted(points, key=lambda p: p["n_training"])[-3:]
    if len(pts) < 2:
        return None
    x = np.log10([p["n_training"] for p in pts])
    y = np.array([p["ratio"] for p in pts])
    slope, intercept = np.polyfit(x, y, 1)
    if y.max() >= target:
        return float(min(p["n_training"] for p in pts if p["ratio"] >= target))
    return float(10 ** ((target - intercept) / slope)) if slope > 0 else None


def write_outputs(results: list[dict], header: dict, out: Path) -> None:
    from cmbml.common.plotting import pyplot, save_figure

    out.parent.mkdir(parents=True, exist_ok=True)
    (out.with_suffix(".json")).write_text(json.dumps({"machine": header, "points": results}, indent=1))
    curves: dict[tuple[str, str], list[dict]] = {}
    for r in results:
        curves.setdefault((r["version"], r["architecture"]), []).append(r)
    lines = [
        f"Machine: {header['machine']}; {header['epochs']} epochs at most, early stopping after 2.",
        "",
        "| version | architecture | training maps | network / QE (mean rho) | train s |",
        "|---|---|---|---|---|",
    ]
    for (v, a), pts in curves.items():
        for p in sorted(pts, key=lambda p: p["n_training"]):
            lines.append(
                f"| {v} | {a} | {p['n_training']} | {p['ratio']:.3f} +- {p['ratio_err']:.3f} | "
                f"{p['train_seconds']:.0f} |"
            )
    lines += ["", "| version | architecture | maps to reach 0.9 of QE | maps to reach 1.0 of QE |", "|---|---|---|---|"]
    for (v, a), pts in curves.items():
        fmt = lambda n: "-" if n is None else f"{n:.2g}"  # noqa: E731
        lines.append(f"| {v} | {a} | {fmt(extrapolate(pts, 0.9))} | {fmt(extrapolate(pts, 1.0))} |")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4.2), layout="constrained")
    for (v, a), pts in curves.items():
        pts = sorted(pts, key=lambda p: p["n_training"])
        ax.errorbar(
            [p["n_training"] for p in pts],
            [p["ratio"] for p in pts],
            yerr=[p["ratio_err"] for p in pts],
            fmt="o-",
            capsize=3,
            label=f"{v} {a}",
        )
    for level in (0.9, 1.0):
        ax.axhline(level, color="k", lw=0.6, ls=":")
    ax.set(
        xscale="log",
        xlabel="training maps",
        ylabel=r"$\bar\rho_{\rm network} / \bar\rho_{\rm QE}$",
        title="lensing: network over the quadratic estimator on 1000 test maps",
    )
    ax.legend(fontsize=7)
    save_figure(fig, out.with_suffix(".png"))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--versions", nargs="+", default=["v4", "v6", "v8"])
    ap.add_argument("--architectures", nargs="+", default=["resunet", "resunet_qe"])
    ap.add_argument("--n-training", nargs="+", type=int, default=[1000, 3000, 10000, 30000, 100000])
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--n-test", type=int, default=1000)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "lensing_learning_curve")
    args = ap.parse_args(argv)

    from cmbml.common.spectra import camb_spectra
    from cmbml.lensing.evaluation import sky_estimator
    from cmbml.lensing.metrics import correlation_spectra
    from cmbml.lensing.networks import ARCHITECTURES
    from cmbml.lensing.simulate import LensingSimulator

    header = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "epochs": args.epochs,
        "command": " ".join(sys.argv),
    }
    results, camb = [], None
    with tempfile.TemporaryDirectory(prefix="cmbml-learning-curve-") as tmp:
        tmp = Path(tmp)
        for version in args.versions:
            setup, params = setup_for(version, tmp)
            if camb is None:  # CAMB once: the cosmology is the same for every version
                camb = camb_spectra(params["cosmology"], params["spectra"]["lmax"])
            simulator = LensingSimulator(setup.sim, camb["cl_tt_unlensed"], camb["cl_kk"], seed=setup.seed)
            estimator = sky_estimator(simulator)
            test = simulator.chunk("evaluation", slice(0, args.n_test))
            kappa = test["kappa"].astype(np.float64)
            qe = correlation_spectra(setup.grid, estimator.reconstruct(test["T_lensed"]), kappa, setup.rho_bin_edges)
            _, rho_opt = estimator.wiener_rho(simulator.cl_kk_grid, setup.rho_bin_edges)
            for architecture in args.architectures:
                # the architecture as the version's conf sets it (lensing_net.<architecture>)
                net_params = ARCHITECTURES[architecture].Params.model_validate(
                    params["lensing_net"].get(architecture) or {}
                )
                for n in sorted(args.n_training):
                    r = train_and_score(
                        setup, simulator, estimator, architecture, net_params, n, args.epochs, tmp, test, qe, rho_opt
                    )
                    results.append(r)
                    print(
                        f"{version} {architecture} n={n}: network/QE {r['ratio']:.3f} +- {r['ratio_err']:.3f} "
                        f"({r['train_seconds']:.0f} s)",
                        flush=True,
                    )
                    write_outputs(results, header, args.out)
    print(f"wrote {args.out.with_suffix('.md')}, .json, .png")


if __name__ == "__main__":
    main()
