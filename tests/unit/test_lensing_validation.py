"""The Great Expectations gate over lensing datasets: it passes good data and rejects broken data."""

from pathlib import Path

import h5py
import numpy as np
import pytest

from cmbml.gate import run_gate
from cmbml.lensing_config import LensingSetup
from cmbml.lensing_sim import LensingSimulator, write_split
from cmbml.lensing_validation import LensingExpectation, build_tables
from tests.conftest import REPO
from tests.helpers import copy_files, failed
from tests.conftest import compose

SIZES = {"train": 24, "val": 8, "test": 8}


def small_params(**overrides):
    p = compose("lensing=v2", "scale=smoke")
    p["scale"]["lensing"].update({f"n_{s}": n for s, n in SIZES.items()})
    p["lensing_train"]["batch_size"] = 8  # at most n_train
    p.update(overrides)
    return p


def make_datasets(folder: Path, camb_cls, **overrides) -> dict:
    p = small_params(**overrides)
    sim = LensingSimulator(LensingSetup.from_params(p, REPO / "conf").sim, camb_cls["cl_tt_unlensed"], camb_cls["cl_kk"],
                           p["seed"])
    paths = {}
    for split, n in SIZES.items():
        paths[split] = folder / f"{split}.h5"
        write_split(paths[split], sim, split, n, chunk=8, attrs={})
    return paths


@pytest.fixture(scope="module")
def clean_datasets(tmp_path_factory, camb_cls):
    return make_datasets(tmp_path_factory.mktemp("clean"), camb_cls)


def gate(paths, camb_cls, tmp_path, params=None):
    setup = LensingSetup.from_params(params or small_params(), REPO / "conf")
    sim = LensingSimulator(setup.sim, camb_cls["cl_tt_unlensed"], camb_cls["cl_kk"], setup.seed)
    expect = LensingExpectation.from_simulator(sim, setup.n_samples, setup.kappa_rms_nsigma)
    return run_gate(tmp_path / "gx", "lensing_datasets", build_tables(paths, expect))


def test_clean_datasets_pass_and_data_docs_are_written(clean_datasets, camb_cls, tmp_path):
    result = gate(clean_datasets, camb_cls, tmp_path)
    assert result.success, result.failures
    assert result.n_expectations > 30
    assert Path(result.data_docs_index.removeprefix("file://")).is_file()


def test_a_nan_is_rejected(clean_datasets, camb_cls, tmp_path):
    paths = copy_files(clean_datasets, tmp_path / "copy")
    with h5py.File(paths["val"], "r+") as h5:
        h5["T_lensed"][3, 10, 10] = np.nan
    result = gate(paths, camb_cls, tmp_path)
    assert not result.success and failed(result, "val_samples: expect_column_values_to_be_between(nonfinite_count)")


def test_a_wrong_shape_is_rejected(clean_datasets, camb_cls, tmp_path):
    paths = copy_files(clean_datasets, tmp_path / "copy")
    with h5py.File(paths["test"], "r+") as h5:
        del h5["kappa"]
        h5["kappa"] = np.zeros((8, 48, 48), dtype=np.float32)
    result = gate(paths, camb_cls, tmp_path)
    assert failed(result, "files: expect_column_values_to_be_in_set(shapes_consistent)")


def test_a_wrong_dtype_is_rejected(clean_datasets, camb_cls, tmp_path):
    paths = copy_files(clean_datasets, tmp_path / "copy")
    with h5py.File(paths["train"], "r+") as h5:
        data = h5["kappa"][:]
        del h5["kappa"]
        h5["kappa"] = data.astype(np.float64)
    result = gate(paths, camb_cls, tmp_path)
    assert failed(result, "files: expect_column_values_to_be_in_set(dtypes)")


def test_a_sample_repeated_across_splits_is_rejected(clean_datasets, camb_cls, tmp_path):
    paths = copy_files(clean_datasets, tmp_path / "copy")
    with h5py.File(paths["train"], "r") as src, h5py.File(paths["test"], "r+") as dst:
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
    data = paths["val"].read_bytes()
    paths["val"].write_bytes(data[: len(data) // 3])
    result = gate(paths, camb_cls, tmp_path)
    assert failed(result, "files: expect_column_values_to_be_in_set(readable)")
    assert failed(result, "val_samples: expect_table_row_count_to_equal")


def test_an_unfinished_file_is_rejected(clean_datasets, camb_cls, tmp_path):
    paths = copy_files(clean_datasets, tmp_path / "copy")
    with h5py.File(paths["train"], "r+") as h5:
        h5.attrs["complete"] = False
    assert failed(gate(paths, camb_cls, tmp_path), "files: expect_column_values_to_be_in_set(complete)")
