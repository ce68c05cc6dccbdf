"""Training cost of each lensing version's network on this machine (not part of the tests).

Prints milliseconds per sample-epoch (one forward and backward pass of one map, at the version's
batch size) and the training seconds its `scale=default` sizes imply, relative to v2 and absolute.
The `lensing_default` block of each conf/lensing/vN.yaml is sized from these figures so that the
eight versions train in under an hour on 2 CPU cores. Run: `python bench/lensing_cost.py`.
"""

from __future__ import annotations

import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src")]
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def ms_per_sample_epoch(config: dict, n_samples: int = 256) -> float:
    from cmbml.lensing.networks import lensing_cnn

    npix, net = config["npix"], config["lensing_net"]
    model = lensing_cnn(npix, net["conv_filters"], net["conv_kernels"], net["output_kernel"])
    model.compile(optimizer="adam", loss="mse")
    maps = np.random.default_rng(0).standard_normal((n_samples, npix, npix, 1)).astype("f4")
    batch = config["lensing_train"]["batch_size"]
    model.fit(maps, maps, batch_size=batch, epochs=1, verbose=0)  # build and warm up
    t0 = time.perf_counter()
    model.fit(maps, maps, batch_size=batch, epochs=2, verbose=0)
    return 1e3 * (time.perf_counter() - t0) / (2 * n_samples)


def main() -> None:
    print(f"{platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}")
    rows, total = [], 0.0
    for path in sorted((ROOT / "conf" / "lensing").glob("v*.yaml")):
        config = yaml.safe_load(path.read_text())
        ms = ms_per_sample_epoch(config)
        size = config["lensing_default"]
        seconds = ms / 1e3 * size["n_training"] * size["epochs"]
        total += seconds
        rows.append((path.stem, ms, size["n_training"], size["epochs"], seconds))
    v2_ms = {r[0]: r[1] for r in rows}["v2"]
    print(f"{'version':8} {'ms/sample-epoch':>16} {'vs v2':>6} {'n_train':>8} {'epochs':>6} {'train s':>8}")
    for version, ms, n_train, epochs, seconds in rows:
        print(f"{version:8} {ms:16.1f} {ms / v2_ms:6.2f} {n_train:8d} {epochs:6d} {seconds:8.0f}")
    print(f"all eight: {total / 60:.1f} min of training at scale=default")


if __name__ == "__main__":
    main()
