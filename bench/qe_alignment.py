"""How well the lensing gate's physics check separates aligned pairs from pairs out of step, per version.

For each version: 256 simulated maps, the quadratic estimator's response to their own kappa and to kappa
rolled by one sample, with its error and significance (what `lensing_validate` computes per split).

    PYTHONPATH=src:. python bench/qe_alignment.py v1 v2 v3 v4 v5 v6 v7 v8

Needs datasets/spectra/camb_cls.csv (`dvc repro spectra`).
"""

import sys
import tempfile

import h5py
import numpy as np

from cmbml.common.spectra import read_spectra_csv
from cmbml.lensing.setup import LensingSetup
from cmbml.lensing.simulate import LensingSimulator, write_split
from cmbml.lensing.validation import qe_alignment_rows
from tests.conftest import compose


def main(versions: list[str], n_maps: int = 256) -> None:
    camb = read_spectra_csv("datasets/spectra/camb_cls.csv")
    folder = tempfile.mkdtemp()
    print("version  response(aligned) +- err  sigma   response(rolled) +- err  sigma")
    for version in versions:
        setup = LensingSetup.from_params(compose(f"lensing={version}"))
        sim = LensingSimulator(setup.sim, camb["cl_tt_unlensed"], camb["cl_kk"], seed=1)
        aligned, rolled = f"{folder}/{version}_aligned.h5", f"{folder}/{version}_rolled.h5"
        write_split(aligned, sim, "train", n_maps, 64, {})
        with h5py.File(aligned) as src, h5py.File(rolled, "w") as dst:
            dst["T_lensed"], dst["kappa"] = src["T_lensed"][:], np.roll(src["kappa"][:], 1, axis=0)
        rows = qe_alignment_rows(
            {"aligned": aligned, "rolled": rolled},
            setup.grid,
            camb["cl_tt_lensed"],
            sim.cl_kk_grid,
            setup.sim.noise_uK_arcmin,
            setup.sim.T_lmax,
        )
        a, r = rows
        print(
            f"{version:7s}  {a['response']:8.3f} +- {a['response_err']:.3f}  {a['detection_sigma']:6.1f}   "
            f"{r['response']:8.3f} +- {r['response_err']:.3f}  {r['detection_sigma']:6.1f}",
            flush=True,
        )


if __name__ == "__main__":
    main(sys.argv[1:] or [f"v{i}" for i in range(1, 9)])
