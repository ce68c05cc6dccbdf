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
