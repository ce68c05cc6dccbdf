"""CAMB theory spectra."""

import numpy as np
import pytest


def test_kappa_spectrum_check_value(camb_cls):
    # science notes: C^kk(L=100) is about 1.5e-7 for a Planck-like cosmology.
    assert camb_cls["cl_kk"][100] == pytest.approx(1.5e-7, rel=0.15)


def test_lensing_smooths_the_acoustic_peaks(camb_cls):
    """Lensing transfers power into the troughs: lensed/unlensed TT oscillates by a few percent at ell 1000-2000."""
    ratio = camb_cls["cl_tt_lensed"][1000:2000] / camb_cls["cl_tt_unlensed"][1000:2000]
    assert 0.005 < np.std(ratio) < 0.1


def test_first_acoustic_peak_height(camb_cls):
    ell = camb_cls["ell"]
    dl = ell * (ell + 1) * camb_cls["cl_tt_lensed"] / (2 * np.pi)
    peak = int(np.argmax(dl[100:400])) + 100
    assert 200 <= peak <= 235 and 5000 < dl[peak] < 6200


def test_csv_round_trip(tmp_path, camb_cls):
    from cmbml.common.spectra import read_spectra_csv, write_spectra_csv

    write_spectra_csv(tmp_path / "cls.csv", camb_cls)
    back = read_spectra_csv(tmp_path / "cls.csv")
    assert np.allclose(back["cl_kk"], camb_cls["cl_kk"], rtol=1e-9)
    assert back["ell"][-1] == 3000


def test_the_camb_table_does_not_depend_on_the_machine_s_core_count(tmp_path):
    """CAMB's OpenMP sums depend on its thread count (1 and 3 threads gave tables that differ in the last digits at
    lmax 3000, and 1 or 2 threads differ at ell 7852-12149 of the pipeline's table): run with OMP_NUM_THREADS 1 and 3,
    as on machines of one and three cores, `camb_spectra` gives the same bytes."""
    import os
    import subprocess
    import sys

    from tests.conftest import REPO

    code = (
        "import hashlib, numpy as np\n"
        "from cmbml.common.config import load_spectra\n"
        "from cmbml.common.spectra import camb_spectra\n"
        "s = camb_spectra(load_spectra().cosmology, 3000)\n"
        "print(hashlib.md5(np.concatenate([np.asarray(v, float) for v in s.values()]).tobytes()).hexdigest())\n"
    )
    digests = {
        subprocess.run(
            [sys.executable, "-c", code],
            cwd=REPO,
            env={**os.environ, "OMP_NUM_THREADS": str(n), "PYTHONPATH": str(REPO / "src")},
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        for n in (1, 3)
    }
    assert len(digests) == 1, digests
