"""Simulated lensing datasets: determinism, streaming and the statistics the gate relies on."""

import h5py
import numpy as np
import pytest

from cmbml.common.executors import ForkExecutor
from cmbml.lensing.setup import LensingSetup
from cmbml.lensing.simulate import LensingSimulator, write_split
from tests.conftest import REPO, compose


def simulator(camb_cls, **overrides):
    params = compose("lensing=v2")
    params.update(overrides)
    return LensingSimulator(
        LensingSetup.from_params(params, REPO / "conf").sim,
        camb_cls["cl_tt_unlensed"],
        camb_cls["cl_kk"],
        seed=params["seed"],
    )


def test_same_parameters_give_byte_identical_files_whatever_the_chunking_and_workers(tmp_path, camb_cls):
    """Chunks of 3 simulated in two worker processes give the same bytes as one chunk in this process."""
    sim = simulator(camb_cls)
    write_split(tmp_path / "a.h5", sim, "evaluation", 10, chunk=3, attrs={}, executor=ForkExecutor(2))
    write_split(tmp_path / "b.h5", simulator(camb_cls), "evaluation", 10, chunk=10, attrs={})
    with h5py.File(tmp_path / "a.h5") as a, h5py.File(tmp_path / "b.h5") as b:
        for name in ("T_lensed", "kappa", "T_unlensed"):
            assert a[name][:].tobytes() == b[name][:].tobytes()
        assert a.attrs["complete"] and a.attrs["kappa_exaggeration_factor"] == 30


def test_splits_and_seeds_draw_different_samples(camb_cls):
    sim = simulator(camb_cls)
    assert not np.array_equal(sim.sample("training", 0)["kappa"], sim.sample("early_stopping", 0)["kappa"])
    other = simulator(camb_cls, seed=1)
    assert not np.array_equal(sim.sample("training", 0)["kappa"], other.sample("training", 0)["kappa"])


def test_same_T_realisation_shares_the_unlensed_map(camb_cls):
    # seed README: v1 uses the same unlensed T map realisation for every sample; v2 does not.
    v1 = simulator(camb_cls, same_T_realisation=True)
    assert np.array_equal(v1.sample("training", 0)["T_unlensed"], v1.sample("early_stopping", 7)["T_unlensed"])
    v2 = simulator(camb_cls)
    assert not np.array_equal(v2.sample("training", 0)["T_unlensed"], v2.sample("training", 1)["T_unlensed"])


def test_kappa_variance_scales_with_the_exaggeration_factor_squared(camb_cls):
    """Mean kappa variance over maps matches the prediction, which is factor^2 times the x1 one."""
    sim = simulator(camb_cls)
    var = np.mean([sim.sample("training", i)["kappa"].var() for i in range(200)])
    rel_sigma = np.sqrt(2 / (sim.kappa_effective_modes * 200))
    assert var == pytest.approx(sim.expected_kappa_variance, rel=5 * rel_sigma)
    x1 = simulator(camb_cls, kappa_exaggeration_factor=1.0)
    assert sim.expected_kappa_variance == pytest.approx(900 * x1.expected_kappa_variance)


def test_white_noise_is_added_after_lensing(camb_cls):
    # science notes: v8 noise is white, sigma_pix = 5 uK-arcmin / pixel side, added after lensing.
    noisy = simulator(camb_cls, noise_uK_arcmin=5.0)
    clean = simulator(camb_cls)
    diff = noisy.sample("evaluation", 3)["T_lensed"] - clean.sample("evaluation", 3)["T_lensed"]
    assert np.std(diff) == pytest.approx(5.0 / 27.48, rel=0.05)


def test_lensing_moves_power_but_keeps_the_map_variance(camb_cls):
    """Lensing remaps pixels: the lensed map differs from the unlensed one but keeps its variance."""
    sim = simulator(camb_cls)
    s = [sim.sample("training", i) for i in range(30)]
    ratio = np.mean([x["T_lensed"].var() for x in s]) / np.mean([x["T_unlensed"].var() for x in s])
    assert ratio == pytest.approx(1.0, abs=0.05)
    assert np.mean([np.std(x["T_lensed"] - x["T_unlensed"]) / np.std(x["T_unlensed"]) for x in s]) > 0.1


def test_an_interrupted_write_leaves_no_file(tmp_path, camb_cls):
    sim = simulator(camb_cls)

    def crash(n):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_split(tmp_path / "train.h5", sim, "training", 20, chunk=5, attrs={}, progress=crash)
    assert list(tmp_path.iterdir()) == []
