"""How many maps a lensing network needs: rho_network / rho_QE against the number of training maps (on demand).

For each version and architecture, the network is trained on the first ``n`` maps of the version's training
stream for each ``n`` (nested sets), with the pipeline's own pieces: the simulator, the HDF5 batches, the fit loop
with early stopping, the input channels of the architecture, and scored by the evaluation's code on 1000
independent test maps beside the quadratic estimator built from the version's sky (jackknife errors, paired).

Writes ``<out>.json`` (every point: per-bin and mean ratio with errors, wall time), ``<out>.md`` (the table and,
per curve, the training-set size where it reaches 0.9 and 1.0 of the estimator: interpolated in log10(n) between
measured sets, or extrapolated along a line through the last three) and ``<out>.png`` (the curves). The machine
is named in the JSON. ``--fresh-seed`` also scores each network on maps of another master seed and on mismatched
(prediction, kappa) pairs: a network above the estimator must keep its lead there and score rho ~ 0 here.

Each point trains for ``--epochs`` epochs, or for fewer where ``--max-map-passes`` (maps times epochs) would be
exceeded, at least one: large training sets then still take more optimiser steps than small ones, but the curve's
cost grows like the largest set rather than five times it. Each point's epochs are in the table.

Run (on 2 CPU cores a point costs about 5 ms per map pass at 50 x 50 and 15 ms at 100 x 100: v8's `resunet`
curve to 10^5 maps took 23 minutes of training; ``--append`` lets it grow a piece at a time):

    python bench/lensing_learning_curve.py --versions v4 v6 v8 --architectures resunet resunet_qe \\
        --n-training 1000 3000 10000 100000 --epochs 5 --max-map-passes 200000 --append --fresh-seed 12345 \\
        --page docs/results.md
"""

from __future__ import annotations

import argparse
import json
import os
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
    fresh: tuple[dict, object] | None = None,
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
    bound = leak_bound(estimator, simulator.cl_kk_grid, setup.rho_bin_edges, setup.optimal_n0_gain)

    def score(maps: dict, qe, kappa_shift: int = 0):
        """The network beside the estimator on ``maps``; ``kappa_shift`` pairs each prediction with another
        map's kappa (an honest network then has rho ~ 0)."""
        inputs = maker(maps["T_lensed"]) if maker.derived else maps["T_lensed"][..., None]
        pred = fitted.model.predict(inputs, batch_size=256, verbose=0)[..., 0].astype(np.float64)
        kappa = np.roll(maps["kappa"].astype(np.float64), kappa_shift, axis=0)
        network = correlation_spectra(grid, pred, kappa, setup.rho_bin_edges)
        physical = setup.sim.kappa_exaggeration_factor == 1
        return compare(network, qe, rho_opt, physical=physical, rho_bound=bound)

    rows, m = score(test, qe_spectra)
    files["training"].unlink()  # nested sets are rewritten from the stream; disk holds one at a time
    checks = {}
    if fresh is not None:  # the same network on maps of another master seed: no map it or the QE met
        fresh_maps, fresh_qe = fresh
        _, f = score(fresh_maps, fresh_qe)
        _, shuffled = score(fresh_maps, fresh_qe, kappa_shift=1)
        checks = {
            "fresh_ratio": f["cnn_over_qe"],
            "fresh_ratio_err": f["cnn_over_qe_err"],
            "fresh_rho_network": f["rho_cnn_mean"],
            "fresh_rho_qe": f["rho_qe_mean"],
            "fresh_leak_suspected": f.get("leak_suspected", 0),
            "mismatched_rho_network": shuffled["rho_cnn_mean"],
            "mismatched_rho_network_err": shuffled["rho_cnn_mean_err"],
        }
    return {
        "version": setup.version,
        "architecture": architecture,
        "n_training": n,
        "epochs": epochs,
        "epochs_run": fitted.epochs_run,
        "train_seconds": seconds,
        "ratio": m["cnn_over_qe"],
        "ratio_err": m["cnn_over_qe_err"],
        "rho_network": m["rho_cnn_mean"],
        "rho_qe": m["rho_qe_mean"],
        "leak_suspected": m.get("leak_suspected", 0),
        "leak_z": m.get("leak_z"),
        "rho_leak_bound": m.get("rho_leak_bound_mean"),
        **checks,
        "per_bin": [{"L": r["L"], "ratio": r["rho_cnn"] / r["rho_qe"]} for r in rows],
    }


def maps_to_reach(points: list[dict], target: float) -> tuple[float | None, str]:
    """Training maps where a curve reaches ``target`` (network / QE) and how that count was found:
    ``"measured"`` (its smallest set already does), ``"interpolated"`` (linearly in log10(n) between the two
    measured sets that bracket it) or ``"extrapolated"`` (a straight line in log10(n) through the last three
    points; None when that line does not rise)."""
    pts = sorted(points, key=lambda p: p["n_training"])
    if not pts:
        return None, "extrapolated"
    x = np.log10([p["n_training"] for p in pts])
    y = np.array([p["ratio"] for p in pts])
    if y[0] >= target:
        return float(pts[0]["n_training"]), "measured"
    for i in range(1, len(pts)):
        if y[i] >= target:
            frac = (target - y[i - 1]) / (y[i] - y[i - 1])
            return float(10 ** (x[i - 1] + frac * (x[i] - x[i - 1]))), "interpolated"
    if len(pts) < 2:
        return None, "extrapolated"
    slope, intercept = np.polyfit(x[-3:], y[-3:], 1)
    return (float(10 ** ((target - intercept) / slope)) if slope > 0 else None), "extrapolated"


def _count(found: tuple[float | None, str]) -> str:
    n, how = found
    if n is None:
        return "- (the curve does not rise)"
    return f"<= {n:.0f} (measured)" if how == "measured" else f"{n:.2g} ({how})"


def write_outputs(results: list[dict], header: dict, out: Path) -> str:
    from cmbml.common.plotting import pyplot, save_figure

    out.parent.mkdir(parents=True, exist_ok=True)
    (out.with_suffix(".json")).write_text(json.dumps({"machine": header, "points": results}, indent=1))
    curves: dict[tuple[str, str], list[dict]] = {}
    for r in results:
        curves.setdefault((r["version"], r["architecture"]), []).append(r)
    lines = [
        f"Machine: {header['machine']}; {header['epochs']} epochs at most"
        + (f" and {header['max_map_passes']} map passes" if header.get("max_map_passes") else "")
        + f", early stopping after 2 epochs without gain on 300 maps; {header['n_test']} independent test maps.",
        *(f"Command: `{c}`" for c in header["commands"]),
        "",
        "| version | architecture | training maps | epochs (run) | rho network / QE / leak bound "
        "| network / QE | network / QE by L third (low / mid / high) | another seed: network / QE "
        "| mismatched pairs: rho network | train s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for (v, a), pts in curves.items():
        for p in sorted(pts, key=lambda p: p["n_training"]):
            # the bound is the version's (the estimator's N0 and C_kk): points logged before it was kept share it
            known = [q["rho_leak_bound"] for q in results if q["version"] == v and q.get("rho_leak_bound")]
            bound = f"{known[0]:.3f}" if known else "-"
            fresh = f"{p['fresh_ratio']:.3f} +- {p['fresh_ratio_err']:.3f}" if "fresh_ratio" in p else "-"
            mismatched = (
                f"{p['mismatched_rho_network']:.3f} +- {p['mismatched_rho_network_err']:.3f}"
                if "mismatched_rho_network" in p
                else "-"
            )
            lines.append(
                f"| {v} | {a} | {p['n_training']} | {p.get('epochs', header['epochs'])} ({p['epochs_run']}) | "
                f"{p['rho_network']:.3f} / {p['rho_qe']:.3f} / {bound} | {p['ratio']:.3f} +- {p['ratio_err']:.3f} | "
                f"{' / '.join(f'{t:.2f}' for t in by_third(p))} | {fresh} | {mismatched} | {p['train_seconds']:.0f} |"
            )
    lines += ["", "| version | architecture | maps to reach 0.9 of QE | maps to reach 1.0 of QE |", "|---|---|---|---|"]
    for (v, a), pts in curves.items():
        lines.append(f"| {v} | {a} | {_count(maps_to_reach(pts, 0.9))} | {_count(maps_to_reach(pts, 1.0))} |")
    table = "\n".join(lines) + "\n"
    out.with_suffix(".md").write_text(table)
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4.2), layout="constrained")
    for (v, a), pts in curves.items():
        pts = sorted(pts, key=lambda p: p["n_training"])
        line = ax.errorbar(
            [p["n_training"] for p in pts],
            [p["ratio"] for p in pts],
            yerr=[p["ratio_err"] for p in pts],
            fmt="o-",
            capsize=3,
            label=f"{v} {a}",
        )
        fresh = [p for p in pts if "fresh_ratio" in p]
        if fresh:  # the same networks on maps of another master seed (the leak check)
            ax.errorbar(
                [p["n_training"] * 1.08 for p in fresh],
                [p["fresh_ratio"] for p in fresh],
                yerr=[p["fresh_ratio_err"] for p in fresh],
                fmt="s",
                mfc="none",
                color=line.lines[0].get_color(),
                capsize=3,
                label=f"{v} {a}, maps of another seed",
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
    return table


def by_third(point: dict) -> list[float]:
    """The per-bin ratios averaged over the lowest, middle and highest third of the L bins."""
    ratios = np.array([b["ratio"] for b in point["per_bin"]])
    return [float(part.mean()) for part in np.array_split(ratios, 3) if part.size]


def write_page(page: Path, table: str, figure: Path) -> None:
    """Put the table and the figure between the page's ``<!-- lensing-learning-curve -->`` markers, atomically."""
    from cmbml.common.io import atomic_path
    from stages.report import replace_between_markers

    link = os.path.relpath(figure, page.parent)
    text = replace_between_markers(
        page.read_text(), "lensing-learning-curve", f"{table}\n![the lensing learning curve]({link})\n"
    )
    with atomic_path(page) as tmp:
        tmp.write_text(text)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--versions", nargs="+", default=["v4", "v6", "v8"])
    ap.add_argument("--architectures", nargs="+", default=["resunet", "resunet_qe"])
    ap.add_argument("--n-training", nargs="+", type=int, default=[1000, 3000, 10000, 30000, 100000])
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--max-map-passes", type=int, default=None, help="cap on maps x epochs per point")
    ap.add_argument("--n-test", type=int, default=1000)
    ap.add_argument("--append", action="store_true", help="add to the points already in <out>.json")
    ap.add_argument("--rerun", action="store_true", help="with --append: measure the requested points again")
    ap.add_argument(
        "--fresh-seed",
        type=int,
        default=None,
        help="also score each network on maps of this master seed (and on mismatched pairs): the leak check",
    )
    ap.add_argument("--page", type=Path, default=None, help="also write the table and figure into this page's block")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "lensing_learning_curve")
    args = ap.parse_args(argv)

    from bench.suite import machine
    from cmbml.common.spectra import camb_spectra
    from cmbml.lensing.evaluation import sky_estimator
    from cmbml.lensing.metrics import correlation_spectra
    from cmbml.lensing.networks import ARCHITECTURES
    from cmbml.lensing.simulate import LensingSimulator

    header = {
        "machine": "{cpu}, {cores} cores, {memory_GiB} GiB, Python {python}".format(**machine()),
        "epochs": args.epochs,
        "max_map_passes": args.max_map_passes,
        "n_test": args.n_test,
        "commands": ["python bench/lensing_learning_curve.py " + " ".join(sys.argv[1:] if argv is None else argv)],
    }
    results, camb = [], None
    if args.append and args.out.with_suffix(".json").exists():
        # points of earlier runs (a CPU can give the curve a piece at a time); a point already there is not rerun
        earlier = json.loads(args.out.with_suffix(".json").read_text())
        kept = {k: earlier["machine"][k] for k in ("machine", "epochs", "max_map_passes", "n_test")}
        if kept != {k: header[k] for k in kept}:
            raise SystemExit(f"{args.out.with_suffix('.json')} was made with {kept}; these runs differ, use --out")
        results = earlier["points"]
        header["commands"] = earlier["machine"]["commands"] + header["commands"]
    if args.rerun:  # the requested points are measured again and replace the stored ones
        requested = {(v, a, n) for v in args.versions for a in args.architectures for n in args.n_training}
        results = [r for r in results if (r["version"], r["architecture"], r["n_training"]) not in requested]
    done = {(r["version"], r["architecture"], r["n_training"]) for r in results}
    with tempfile.TemporaryDirectory(prefix="cmbml-learning-curve-") as tmp:
        tmp = Path(tmp)
        for version in args.versions:
            if all((version, a, n) in done for a in args.architectures for n in args.n_training):
                continue
            setup, params = setup_for(version, tmp)
            if camb is None:  # CAMB once: the cosmology is the same for every version
                camb = camb_spectra(params["cosmology"], params["spectra"]["lmax"])
            simulator = LensingSimulator(setup.sim, camb["cl_tt_unlensed"], camb["cl_kk"], seed=setup.seed)
            estimator = sky_estimator(simulator)
            test = simulator.chunk("evaluation", slice(0, args.n_test))
            kappa = test["kappa"].astype(np.float64)
            qe = correlation_spectra(setup.grid, estimator.reconstruct(test["T_lensed"]), kappa, setup.rho_bin_edges)
            _, rho_opt = estimator.wiener_rho(simulator.cl_kk_grid, setup.rho_bin_edges)
            fresh = None
            if args.fresh_seed is not None:
                if args.fresh_seed == setup.seed:
                    raise SystemExit(f"--fresh-seed {args.fresh_seed} is the pipeline's own seed: pick another")
                other = LensingSimulator(setup.sim, camb["cl_tt_unlensed"], camb["cl_kk"], seed=args.fresh_seed)
                maps = other.chunk("evaluation", slice(0, args.n_test))
                fresh = (
                    maps,
                    correlation_spectra(
                        setup.grid,
                        estimator.reconstruct(maps["T_lensed"]),
                        maps["kappa"].astype(np.float64),
                        setup.rho_bin_edges,
                    ),
                )
            for architecture in args.architectures:
                # the architecture as the version's conf sets it (lensing_net.<architecture>)
                net_params = ARCHITECTURES[architecture].Params.model_validate(
                    params["lensing_net"].get(architecture) or {}
                )
                for n in sorted(args.n_training):
                    if (version, architecture, n) in done:
                        continue
                    epochs = args.epochs
                    if args.max_map_passes:
                        epochs = max(1, min(epochs, args.max_map_passes // n))
                    r = train_and_score(
                        setup, simulator, estimator, architecture, net_params, n, epochs, tmp, test, qe, rho_opt, fresh
                    )
                    results.append(r)
                    print(
                        f"{version} {architecture} n={n}: network/QE {r['ratio']:.3f} +- {r['ratio_err']:.3f} "
                        f"({epochs} epochs, {r['train_seconds']:.0f} s)"
                        + (
                            f"; on fresh maps {r['fresh_ratio']:.3f} +- {r['fresh_ratio_err']:.3f}, "
                            f"mismatched rho {r['mismatched_rho_network']:.3f}"
                            if "fresh_ratio" in r
                            else ""
                        ),
                        flush=True,
                    )
                    write_outputs(results, header, args.out)
    if not results:
        raise SystemExit("no points to write")
    if len(results) == len(done):  # nothing new: the page records the commands that made the points
        header["commands"] = header["commands"][:-1] or header["commands"]
    table = write_outputs(results, header, args.out)
    if args.page:
        write_page(args.page, table, args.out.with_suffix(".png"))
    print(f"wrote {args.out.with_suffix('.md')}, .json, .png" + (f" and {args.page}" if args.page else ""))


if __name__ == "__main__":
    main()
