"""Training throughput at paper geometry (on a GPU where there is one), and mixed precision's effect on the loss.

Measures, for each network and precision (float32, mixed_bfloat16):

- the input pipeline alone (HDF5 batches read by worker threads and queued ahead), samples/s;
- the model's training step alone (one batch resident in memory, repeated), samples/s;
- full epochs streamed from HDF5, samples/s, the epoch time at the paper's training count, and the GPU's
  utilisation sampled by ``nvidia-smi`` during those epochs;
- for the lensing versions, the validation loss after each epoch, float32 against mixed precision, on the
  same simulated maps (CMB skies lensed by CAMB's C^kk, simulated here with the project's simulator).

Networks: lensing v6 (100 x 100 px) and v7 (50 x 50 px) with their paper training counts, and CENN on
256 x 256 x 3 patches (paper geometry; synthetic Gaussian inputs: its throughput does not depend on
the values). Any Keras backend: ``KERAS_BACKEND=jax python bench/training_throughput.py --params-dir DIR --out OUT``
where DIR holds ``params_v6.yaml``, ``params_v7.yaml`` (``cmbml params compose lensing=v6 scale=paper
--output ...``) and ``camb_cls.csv`` (the spectra stage's table). Writes ``OUT/training_throughput.json`` and
``OUT/training_throughput.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "src"), str(REPO)]


class GpuSampler:
    """Mean GPU utilisation (%) and peak memory (MiB) from ``nvidia-smi`` while the block runs."""

    def __enter__(self):
        self.util, self.mem = [], []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self):
        while not self._stop.is_set():
            try:
                out = subprocess.run(
                    ["nvidia-smi", "--query-gpu=utilization.gpu,memory.used", "--format=csv,noheader,nounits"],
                    capture_output=True,
                    text=True,
                    timeout=5,
                )
                u, m = out.stdout.strip().splitlines()[0].split(",")
                self.util.append(float(u))
                self.mem.append(float(m))
            except (OSError, ValueError, IndexError, subprocess.SubprocessError):
                pass
            self._stop.wait(0.25)

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    @property
    def summary(self) -> dict:
        return {
            "gpu_util_mean_pct": float(np.mean(self.util)) if self.util else None,
            "gpu_mem_peak_MiB": float(np.max(self.mem)) if self.mem else None,
            "gpu_samples": len(self.util),
        }


def simulate_lensing(params_file: Path, cls_file: Path, out_dir: Path, n_train: int, n_val: int, workers: int):
    """Paper-count training and validation maps for one version, written by the project's simulator."""
    from cmbml.common.executors import ForkExecutor
    from cmbml.common.params import load_params
    from cmbml.common.spectra import read_spectra_csv
    from cmbml.lensing.setup import LensingSetup
    from cmbml.lensing.simulate import LensingSimulator, write_split

    setup = LensingSetup.from_params(load_params(params_file), REPO / "conf")
    spectra = read_spectra_csv(cls_file)
    simulator = LensingSimulator(setup.sim, spectra["cl_tt_unlensed"], spectra["cl_kk"], seed=setup.seed)
    files = {}
    t0 = time.perf_counter()
    for split, n in (("training", n_train), ("early_stopping", n_val)):
        files[split] = out_dir / f"{setup.version}_{split}.h5"
        write_split(files[split], simulator, split, n, 256, {}, executor=ForkExecutor(workers))
    return setup, files, (n_train + n_val) / (time.perf_counter() - t0)


def synthetic_cenn(out_dir: Path, n: int, npix: int = 256) -> Path:
    import h5py

    path = out_dir / "cenn_synthetic.h5"
    rng = np.random.default_rng(0)
    with h5py.File(path, "w") as h5:
        m = h5.create_dataset("M", (n, npix, npix, 3), "float32", chunks=(8, npix, npix, 3))
        m0 = h5.create_dataset("M0", (n, npix, npix, 1), "float32", chunks=(8, npix, npix, 1))
        for a in range(0, n, 256):
            b = min(n, a + 256)
            m[a:b] = rng.standard_normal((b - a, npix, npix, 3))
            m0[a:b] = m[a:b][..., 1:2] + 0.1 * rng.standard_normal((b - a, npix, npix, 1))
    return path


def measure(build, train_batches, val_batches, epochs: int, paper_n_train: int, workers: int) -> dict:
    """Input alone, step alone, then ``epochs`` streamed epochs (the first compiles and is not timed)."""
    import keras

    from cmbml.common.training import keras_feed

    feed = keras_feed(train_batches, workers=workers)
    t0 = time.perf_counter()
    for step in range(len(train_batches)):
        train_batches.batch(1, step)
    input_single = train_batches.n_samples / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    n_read = 0
    for i, (x, _) in enumerate(feed):  # threaded, as fit reads it
        n_read += x.shape[0]
        if i + 1 == len(train_batches):
            break
    input_threaded = n_read / (time.perf_counter() - t0)

    model = build()
    x, y = train_batches.batch(0, 0)
    for _ in range(3):
        model.train_on_batch(x, y)
    steps = 30
    t0 = time.perf_counter()
    for _ in range(steps):
        loss = model.train_on_batch(x, y)
    float(np.asarray(loss).ravel()[0])  # wait for the device
    step_rate = steps * x.shape[0] / (time.perf_counter() - t0)

    model = build()
    times, val_losses = [], []

    class Timer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.t0 = time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            if batch + 1 == len(train_batches):  # training done; validation follows
                float(np.asarray(logs["loss"]))  # wait for the device
                times.append(time.perf_counter() - self.t0)

        def on_epoch_end(self, epoch, logs=None):
            if logs and "val_loss" in logs:
                val_losses.append(float(logs["val_loss"]))

    val = keras_feed(val_batches, workers=workers) if val_batches is not None else None
    model.fit(keras_feed(train_batches, workers=workers), epochs=1, verbose=0)  # compile and warm up
    with GpuSampler() as gpu:
        model.fit(
            keras_feed(train_batches, workers=workers),
            validation_data=val,
            epochs=epochs,
            verbose=0,
            callbacks=[Timer()],
        )
    rate = train_batches.n_samples / float(np.median(times))
    return {
        "input_single_thread_samples_per_s": input_single,
        "input_threaded_samples_per_s": input_threaded,
        "model_step_samples_per_s": step_rate,
        "streamed_samples_per_s": rate,
        "streamed_over_step": rate / step_rate,
        "epoch_s_at_paper_count": paper_n_train / rate,
        "val_loss_per_epoch": val_losses,
        **gpu.summary,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params-dir", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--cenn-n", type=int, default=2048)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--only", default="v7,v6,cenn", help="lensing versions (params_<v>.yaml) and/or cenn")
    parser.add_argument("--n-train", type=int, default=None, help="fewer training maps than the params say")
    parser.add_argument("--precisions", default="float32,mixed_bfloat16")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    data_dir = Path(os.environ.get("TMPDIR", "/tmp")) / "cmbml_gpu_bench"
    data_dir.mkdir(parents=True, exist_ok=True)

    import keras

    from cmbml.cenn.networks import cenn_network
    from cmbml.common.networks import dtype_policy, make_optimizer
    from cmbml.common.training import H5Batches, streamed_mean_std
    from cmbml.lensing.networks import lensing_cnn

    try:
        gpu = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
        ).stdout.strip()
    except OSError:
        gpu = "none (CPU)"
    results = {
        "gpu": gpu,
        "backend": keras.backend.backend(),
        "keras": keras.__version__,
        "cpu_cores": os.cpu_count(),
        "python": platform.python_version(),
        "epochs_timed": args.epochs,
        "runs": [],
    }
    print(json.dumps({k: v for k, v in results.items() if k != "runs"}), flush=True)
    for name in args.only.split(","):
        if name == "cenn":
            path = synthetic_cenn(data_dir, args.cenn_n)
            paper_n = 10000
            xs, ys = streamed_mean_std(path, "M", per_channel=True), streamed_mean_std(path, "M0", per_channel=True)
            make = lambda: H5Batches(path, "M", "M0", 32, xs, ys, shuffle=True, seed=0)  # noqa: E731
            make_val = lambda: None  # noqa: E731
            sim_rate = None

            def builder(precision):
                def build():
                    keras.utils.set_random_seed(0)
                    with dtype_policy(precision):
                        core = cenn_network(3)
                    core.compile(optimizer=make_optimizer("adagrad", 0.005), loss="mse")
                    return core

                return build

            geometry = "256 x 256 x 3 (1.5')"
        else:
            from cmbml.common.params import load_params
            from cmbml.lensing.setup import LensingSetup

            setup = LensingSetup.from_params(load_params(args.params_dir / f"params_{name}.yaml"), REPO / "conf")
            setup, files, sim_rate = simulate_lensing(
                args.params_dir / f"params_{name}.yaml",
                args.params_dir / "camb_cls.csv",
                data_dir,
                args.n_train or setup.n_samples["training"],
                setup.n_samples["early_stopping"],
                os.cpu_count() or 1,
            )
            paper_n = setup.n_samples["training"]
            ts, ks = streamed_mean_std(files["training"], "T_lensed"), streamed_mean_std(files["training"], "kappa")
            tr = setup.train

            def make():
                return H5Batches(
                    files["training"],
                    "T_lensed",
                    "kappa",
                    tr.batch_size,
                    ts,
                    ks,
                    augment=tr.augment,
                    shuffle=True,
                    seed=setup.seed,
                )

            make_val = lambda: H5Batches(files["early_stopping"], "T_lensed", "kappa", tr.batch_size, ts, ks)  # noqa: E731

            def builder(precision, setup=setup, tr=tr):
                def build():
                    keras.utils.set_random_seed(0)
                    with dtype_policy(precision):
                        core = lensing_cnn(
                            setup.grid.npix,
                            setup.net_params.conv_filters,
                            setup.net_params.conv_kernels,
                            setup.net_params.output_kernel,
                            setup.net_params.kernel_initializer,
                        )
                    core.compile(optimizer=make_optimizer(tr.optimizer, tr.learning_rate, tr.clipnorm), loss="mse")
                    return core

                return build

            geometry = f"{setup.grid.npix} x {setup.grid.npix} ({setup.grid.pixel_arcmin:g}'), batch {tr.batch_size}"
        for precision in args.precisions.split(","):
            run = {
                "network": name,
                "geometry": geometry,
                "precision": precision,
                "paper_n_train": paper_n,
                "simulated_maps_per_s": sim_rate,
                **measure(builder(precision), make(), make_val(), args.epochs, paper_n, args.workers),
            }
            results["runs"].append(run)
            print(json.dumps(run), flush=True)
            (args.out / "training_throughput.json").write_text(json.dumps(results, indent=2) + "\n")
    lines = [
        f"GPU: {results['gpu']}; Keras {results['keras']} on {results['backend']}; {results['cpu_cores']} CPU "
        f"cores. Command: `KERAS_BACKEND={results['backend']} python bench/training_throughput.py --params-dir DIR "
        f"--out OUT --epochs {args.epochs}`.",
        "",
        "| network | geometry | precision | input alone samples/s | model step alone samples/s | streamed "
        "samples/s | streamed / step | epoch at paper count s | GPU util % | val loss per epoch |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results["runs"]:
        util = "n/a" if r["gpu_util_mean_pct"] is None else f"{r['gpu_util_mean_pct']:.0f}"
        losses = ", ".join(f"{v:.4f}" for v in r["val_loss_per_epoch"]) or "n/a (synthetic)"
        lines.append(
            f"| {r['network']} | {r['geometry']} | {r['precision']} | {r['input_threaded_samples_per_s']:.0f} "
            f"| {r['model_step_samples_per_s']:.0f} | {r['streamed_samples_per_s']:.0f} | "
            f"{r['streamed_over_step']:.2f} | {r['epoch_s_at_paper_count']:.1f} | {util} | {losses} |"
        )
    (args.out / "training_throughput.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
