"""On-demand speed measurements of the CENN pipeline (not part of the tests).

Patch cutting: one set of interpolation weights per patch applied to every map, against a
baseline of one `healpy.gnomview` projection per map, timed in the same process. Training and
inference throughput of CENN on the CPU. Run: `python bench/bench_cenn.py`.
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

from cmbml.flatsky import FlatGrid  # noqa: E402
from cmbml.patches import PatchSampler  # noqa: E402


def bench_patches(nside=1024, npix=128, pixel_arcmin=3.0, n_maps=4, n_patches=5):
    import healpy as hp
    import matplotlib

    matplotlib.use("Agg")
    rng = np.random.default_rng(0)
    maps = rng.standard_normal((n_maps, hp.nside2npix(nside))).astype(np.float32)
    geometry = FlatGrid(npix, pixel_arcmin)
    centres = [(rng.uniform(0, 360), rng.uniform(35, 80)) for _ in range(n_patches)]
    t0 = time.perf_counter()
    for lon, lat in centres:
        sampler = PatchSampler.build(nside, geometry, lon, lat)
        sampler.scalar(maps)
    t_ours = (time.perf_counter() - t0) / n_patches
    t0 = time.perf_counter()
    for lon, lat in centres:
        for m in maps:
            hp.gnomview(m, rot=(lon, lat), xsize=npix, reso=pixel_arcmin, return_projected_map=True, no_plot=True)
    t_base = (time.perf_counter() - t0) / n_patches
    return {"nside": nside, "npix": npix, "maps_per_patch": n_maps, "weights_once_ms_per_patch": 1e3 * t_ours,
            "gnomview_per_map_ms_per_patch": 1e3 * t_base, "speedup": t_base / t_ours}


def bench_cenn(npix, n=128, batch=32):
    from cmbml.models import cenn_network

    model = cenn_network(3)
    model.compile(optimizer="adagrad", loss="mse")
    x = np.random.default_rng(0).standard_normal((n, npix, npix, 3)).astype(np.float32)
    y = x[..., :1]
    model.fit(x, y, batch_size=batch, epochs=1, verbose=0)
    t0 = time.perf_counter()
    model.fit(x, y, batch_size=batch, epochs=1, verbose=0)
    t_train = (time.perf_counter() - t0) / n
    t0 = time.perf_counter()
    model.predict(x, batch_size=batch, verbose=0)
    t_pred = (time.perf_counter() - t0) / n
    return {"npix": npix, "train_samples_per_s": 1 / t_train, "predict_samples_per_s": 1 / t_pred}


def main():
    results = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "patches": bench_patches(),
        "cenn": [bench_cenn(64), bench_cenn(256, n=64)],
    }
    out = Path("bench/results/cenn.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
