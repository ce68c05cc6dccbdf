"""On-demand speed measurements of the lensing pipeline (not part of the tests).

Each figure is a ratio against a baseline timed in the same process, plus absolute rates for
the machine it ran on. Run: `make bench` (or `python bench/bench_lensing.py`).
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path[:0] = [str(Path(__file__).resolve().parents[1] / "src"), str(Path(__file__).resolve().parents[1])]
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from cmbml.flatsky import FlatGrid, gaussian_realisation  # noqa: E402
from cmbml.lensing import deflection_from_kappa, remap_bicubic, remap_fourier  # noqa: E402


def best_of(fn, repeat=5, number=3):
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        for _ in range(number):
            fn()
        times.append((time.perf_counter() - t0) / number)
    return min(times)


def bench_remap(npix):
    grid = FlatGrid(npix, 27.48 if npix == 50 else 6.0)
    rng = np.random.default_rng(0)
    ells = np.arange(4000)
    t_map = gaussian_realisation(grid, grid.cl_on_grid(1e3 / (ells + 10.0) ** 2), rng)
    kappa = gaussian_realisation(grid, grid.cl_on_grid(1e-7 * np.ones(4000)), rng)
    d_x, d_y = deflection_from_kappa(grid, kappa)
    t_spline = best_of(lambda: remap_bicubic(grid, t_map, d_x, d_y))
    t_exact = best_of(lambda: remap_fourier(grid, t_map, d_x, d_y))
    return {"npix": npix, "bicubic_ms": 1e3 * t_spline, "fourier_exact_ms": 1e3 * t_exact,
            "exact_over_bicubic_time": t_exact / t_spline}


def bench_training(n=256, batch=32):
    import keras

    from cmbml.models import lensing_cnn

    model = lensing_cnn(50, [64] * 4, [3] * 4, 9)  # the v2 network
    model.compile(optimizer="adam", loss="mse")
    x = np.random.default_rng(0).standard_normal((n, 50, 50, 1)).astype(np.float32)
    model.fit(x, x, batch_size=batch, epochs=1, verbose=0)  # warm-up (graph tracing)
    t0 = time.perf_counter()
    model.fit(x, x, batch_size=batch, epochs=2, verbose=0)
    t_train = (time.perf_counter() - t0) / (2 * n)
    t0 = time.perf_counter()
    model.predict(x, batch_size=batch, verbose=0)
    t_pred = (time.perf_counter() - t0) / n
    return {"network": "v2 (4x(64,3) + (1,9))", "train_samples_per_s": 1 / t_train,
            "predict_samples_per_s": 1 / t_pred, "train_over_predict_time": t_train / t_pred,
            "keras": keras.__version__}


def main():
    results = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}",
        "remap": [bench_remap(50), bench_remap(100)],
        "training": bench_training(),
    }
    out = Path("bench/results/lensing.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
