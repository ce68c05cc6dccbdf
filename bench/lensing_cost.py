"""Training cost of each lensing version's networks on this machine (not part of the tests).

For every version and architecture (``--architectures``, default all registered), prints milliseconds per
sample-epoch (one forward and backward pass of one map at the version's batch size, input channels included)
and the training seconds its `scale=default` sizes imply, relative to v2's original network and absolute, with
the total per architecture. The `lensing_default` block of each conf/lensing/vN.yaml is sized from these
figures so that each architecture trains the eight versions in about an hour on 2 CPU cores.
Run: `python bench/lensing_cost.py [--architectures original resunet_qe]`.
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


def ms_per_sample_epoch(config: dict, architecture: str, n_samples: int = 256) -> float:
    from cmbml.lensing.networks import ARCHITECTURES

    npix, arch = config["npix"], ARCHITECTURES[architecture]
    params = arch.Params.model_validate(config["lensing_net"].get(architecture) or {})
    model = arch.build(params, npix)
    model.compile(optimizer="adam", loss="mse")
    maps = np.random.default_rng(0).standard_normal((n_samples, npix, npix, len(arch.inputs))).astype("f4")
    batch = config["lensing_train"]["batch_size"]
    target = maps[..., :1]
    model.fit(maps, target, batch_size=batch, epochs=1, verbose=0)  # build and warm up
    t0 = time.perf_counter()
    model.fit(maps, target, batch_size=batch, epochs=2, verbose=0)
    return 1e3 * (time.perf_counter() - t0) / (2 * n_samples)


def main() -> None:
    import argparse

    from cmbml.lensing.networks import ARCHITECTURES

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--architectures", nargs="+", default=list(ARCHITECTURES))
    args = ap.parse_args()
    print(f"{platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}")
    rows, totals = [], {a: 0.0 for a in args.architectures}
    for path in sorted((ROOT / "conf" / "lensing").glob("v*.yaml")):
        config = yaml.safe_load(path.read_text())
        size = config["lensing_default"]
        for architecture in args.architectures:
            ms = ms_per_sample_epoch(config, architecture)
            seconds = ms / 1e3 * size["n_training"] * size["epochs"]
            totals[architecture] += seconds
            rows.append((path.stem, architecture, ms, size["n_training"], size["epochs"], seconds))
    reference = next((r[2] for r in rows if r[0] == "v2" and r[1] == "original"), rows[0][2])
    print(
        f"{'version':8} {'architecture':12} {'ms/sample-epoch':>16} {'vs v2':>6} {'n_train':>8} {'epochs':>6} "
        f"{'train s':>8}"
    )
    for version, architecture, ms, n_train, epochs, seconds in rows:
        print(f"{version:8} {architecture:12} {ms:16.1f} {ms / reference:6.2f} {n_train:8d} {epochs:6d} {seconds:8.0f}")
    for architecture, total in totals.items():
        print(f"{architecture}: all eight versions {total / 60:.1f} min of training at scale=default")


if __name__ == "__main__":
    main()
