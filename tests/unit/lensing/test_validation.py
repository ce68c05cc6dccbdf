"""The Great Expectations gate over lensing datasets: it passes good data and rejects broken data."""

from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest

from cmbml.common.gate import run_gate
from cmbml.lensing.setup import LensingSetup
from cmbml.lensing.simulate import LensingSimulator, write_split
from cmbml.lensing.validation import LensingExpectation, build_tables, qe_alignment_rows
from tests.conftest import REPO, compose
from tests.helpers import copy_files, failed

SIZES = {"training": 24, "early_stopping": 8, "evaluation": 8}


def small_params(**overrides):
    p = compose("lensing=v2", "scale=smoke")
    p["scale"]["lensing"].update({f"n_{s}": n for s, n in SIZES.items()})
    p["lensing_train"]["batch_size"] = 8  # at most n_training
    p.update(overrides)
    return p


def make_datasets(folder: Path, camb_cls, **overrides) -> dict:
    p = small_params(**overrides)
    setup = LensingSetup.from_params(p, REPO / "conf")
    sim = LensingSimulator(setup.sim, camb_cls["cl_tt_unlensed"], camb_cls["cl_kk"], p["seed"])
    paths = {}
    for split, n in SIZES.items():
        paths[split] = folder / f"{split}.h5"
        write_split(paths[split], sim, split, n, chunk=8, attrs={"params_digest": setup.dataset_digest})
    return paths


@pytest.fixture(scope="module")
def clean_datasets(tmp_path_factory, camb_cls):
    return make_datasets(tmp_path_factory.mktemp("clean"), camb_cls)


def gate(paths, camb_cls, tmp_path, params=None):
    setup = LensingSetup.from_params(params or small_params(), REPO / "conf")
    sim = LensingSimulator(setup.sim, camb_cls["cl_tt_unlensed"], camb_cls["cl_kk"], setup.seed)
    expect = LensingExpectation.from_simulator(sim, setup.n_samples, setup.kappa_rms_nsigma, setup.dataset_digest)
    alignment = pd.DataFrame(
        qe_alignment_rows(
            paths, setup.grid, camb_cls["cl_tt_lensed"], sim.cl_kk_grid, setup.sim.noise_uK_arcmin, setup.sim.T_lmax
        )
    )
    return run_gate(tmp_path / "gx", "lensing_datasets", build_tables(paths, expect, alignment))


def test_clean_datasets_pass_and_data_docs_are_written(clean_datasets, camb_cls, tmp_path):
    result = gate(clean_datasets, camb_cls, tmp_path)
    assert result.success, result.failures
    assert result.n_expectations > 30
    assert Path(result.data_docs_index.removeprefix("file://")).is_file()


def test_a_nan_is_rejected(clean_datasets, camb_cls, tmp_path):
    paths = copy_files(clean_datasets, tmp_path / "copy")
    with h5py.File(paths["early_stopping"], "r+") as h5:
        h5["T_lensed"][3, 10, 10] = np.nan
    result = gate(paths, camb_cls, tmp_path)
    assert not result.success and failed(
        result, "early_stopping_samples: expect_column_values_to_be_between(nonfinite_count)"
    )


def test_a_wrong_shape_is_rejected(clean_datasets, camb_cls, tmp_path):
    paths = copy_files(clean_datasets, tmp_path / "copy")
    with h5py.File(paths["evaluation"], "r+") as h5:
        del h5["kappa"]
        h5["kappa"] = np.zeros((8, 48, 48), dtype=np.float32)
    result = gate(paths, camb_cls, tmp_path)
    assert failed(result, "files: expect_column_values_to_be_in_set(shapes_consistent)")


def test_a_wrong_dtype_is_rejected(clean_datasets, camb_cls, tmp_path):
    paths = copy_files(clean_datasets, tmp_path / "copy")
    with h5py.File(paths["training"], "r+") as h5:
        data = h5["kappa"][:]
        del h5["kappa"]
        h5["kappa"] = data.astype(np.float64)
    result = gate(paths, camb_cls, tmp_path)
    assert failed(result, "files: expect_column_values_to_be_in_set(dtypes)")


def test_a_sample_repeated_across_splits_is_rejected(clean_datasets, camb_cls, tmp_path):
    paths = copy_files(clean_datasets, tmp_path / "copy")
    with h5py.File(paths["training"], "r") as src, h5py.File(paths["evaluation"], "r+") as dst:
        dst["T_lensed"][0], dst["kappa"][0] = src["T_lensed"][5], src["kappa"][5]
    result = gate(paths, camb_cls, tmp_path)
    assert failed(result, "all_samples: expect_column_values_to_be_unique(digest)")


def test_kappa_off_by_the_exaggeration_factor_is_rejected(tmp_path, camb_cls):
    """Maps simulated with factor 10 fail a gate that expects the parameter set's factor 30."""
    paths = make_datasets(tmp_path / "x10", camb_cls, kappa_exaggeration_factor=10)
    result = gate(paths, camb_cls, tmp_path)
    assert failed(result, "expect_column_mean_to_be_between(kappa_var)")
    assert failed(result, "attr_kappa_exaggeration_factor")


def test_a_truncated_file_is_rejected(clean_datasets, camb_cls, tmp_path):
    paths = copy_files(clean_datasets, tmp_path / "copy")
    data = paths["early_stopping"].read_bytes()
    paths["early_stopping"].write_bytes(data[: len(data) // 3])
    result = gate(paths, camb_cls, tmp_path)
    assert failed(result, "files: expect_column_values_to_be_in_set(readable)")
    assert failed(result, "early_stopping_samples: expect_table_row_count_to_equal")


def test_an_unfinished_file_is_rejected(clean_datasets, camb_cls, tmp_path):
    paths = copy_files(clean_datasets, tmp_path / "copy")
    with h5py.File(paths["training"], "r+") as h5:
        h5.attrs["complete"] = False
    assert failed(gate(paths, camb_cls, tmp_path), "files: expect_column_values_to_be_in_set(complete)")


def test_pairs_out_of_step_and_blank_labels_are_rejected(clean_datasets, camb_cls, tmp_path):
    """One fault per split, each caught by its split's checks: kappa rolled by one sample (train), kappa of one
    map transposed (val), one label zeroed (test). The digest binds each pair; the quadratic estimator's
    response to the stored kappa sees the roll without any digest."""
    paths = copy_files(clean_datasets, tmp_path / "copy")
    with h5py.File(paths["training"], "r+") as h5:
        h5["kappa"][...] = np.roll(h5["kappa"][:], 1, axis=0)
    with h5py.File(paths["early_stopping"], "r+") as h5:
        h5["kappa"][3] = h5["kappa"][3].T
    with h5py.File(paths["evaluation"], "r+") as h5:
        h5["kappa"][2] = 0.0
    result = gate(paths, camb_cls, tmp_path)
    for split in ("training", "early_stopping", "evaluation"):
        assert failed(result, f"{split}_samples: expect_column_values_to_be_in_set(pair_digest_ok)")
    assert failed(result, "evaluation_samples: expect_column_values_to_be_between(kappa_var)")
    assert failed(result, "qe_alignment: expect_column_values_to_be_between(response)")
    (response,) = [
        r for r in result.details if r["table"] == "qe_alignment" and r["kwargs"].get("column") == "response"
    ]
    assert response["unexpected_count"] == 1  # train only: val and test keep most pairs


def test_small_splits_need_the_per_map_significance_of_256_maps():
    """5 sigma on 256 maps or more; on fewer, the same significance per map (5 sqrt(n/256)): a smoke-scale split
    of 32 maps of physical kappa (v4: about 0.76 sigma per map) can pass, a rolled one (0 +- 1) cannot be
    told from it by significance alone, so its response must also be 0.5-1.5."""
    from cmbml.lensing.validation import required_sigma

    assert required_sigma(256) == required_sigma(5000) == 5.0
    assert required_sigma(32) == pytest.approx(5 / np.sqrt(8), abs=1e-3) and 0.76 * np.sqrt(32) > required_sigma(32)


def test_the_opposite_lensing_sign_is_rejected_by_physics(clean_datasets, camb_cls, tmp_path):
    """kappa -> -kappa in every split with digests rewritten to match: only the quadratic estimator, whose
    response is then -1, can tell."""
    from cmbml.common.integrity import pair_digests

    paths = copy_files(clean_datasets, tmp_path / "copy")
    for path in paths.values():
        with h5py.File(path, "r+") as h5:
            h5["kappa"][...] = -h5["kappa"][:]
            h5["pair_digest"][...] = pair_digests(0, h5["T_lensed"][:], h5["kappa"][:])
    result = gate(paths, camb_cls, tmp_path)
    assert [f for f in result.failures if f.startswith("qe_alignment")] and all(
        f.startswith("qe_alignment") for f in result.failures
    ), result.failures


def test_near_copies_and_input_only_copies_are_rejected(clean_datasets, camb_cls, tmp_path):
    """A train map repeated in test with 1e-6 noise (digests differ), and a val input repeated without its label."""
    paths = copy_files(clean_datasets, tmp_path / "copy")
    rng = np.random.default_rng(1)
    with h5py.File(paths["training"], "r") as src, h5py.File(paths["evaluation"], "r+") as dst:
        dst["T_lensed"][0] = src["T_lensed"][5] + 1e-6 * rng.standard_normal((50, 50))
        dst["kappa"][0] = src["kappa"][5] * (1 + 1e-6)
    with h5py.File(paths["early_stopping"], "r+") as h5:
        h5["T_lensed"][1] = h5["T_lensed"][0]
    result = gate(paths, camb_cls, tmp_path)
    assert not failed(result, "all_samples: expect_column_values_to_be_unique(digest)")  # bytes differ ...
    assert failed(result, "near_duplicates: expect_column_values_to_be_between(T_lensed_nearest_similarity)")
    assert failed(result, "near_duplicates: expect_column_values_to_be_between(kappa_nearest_similarity)")


def test_a_mixed_set_and_wrong_conventions_are_rejected(clean_datasets, camb_cls, tmp_path):
    """val from another seed (a stage killed after a seed change), test without its units and with the
    opposite sign convention written: the parameter digest and the convention attributes catch both."""
    paths = copy_files(clean_datasets, tmp_path / "copy")
    other = make_datasets(tmp_path / "seed", camb_cls, seed=7)
    paths["early_stopping"] = other["early_stopping"]
    with h5py.File(paths["evaluation"], "r+") as h5:
        del h5.attrs["units_T"]
        h5.attrs["lensing_sign"] = "T_lensed(x) = T(x - grad phi)"
    result = gate(paths, camb_cls, tmp_path)
    assert failed(result, "files: expect_column_values_to_be_in_set(attr_params_digest)")
    assert failed(result, "files: expect_column_values_to_be_in_set(attr_units_T)")
    assert failed(result, "files: expect_column_values_to_be_in_set(attr_lensing_sign)")
    bad = [r for r in result.details if r["kwargs"].get("column") == "attr_params_digest"][0]
    assert bad["unexpected_count"] == 1  # only val disagrees with the current parameters
