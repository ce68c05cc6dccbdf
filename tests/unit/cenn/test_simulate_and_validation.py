"""CENN patch datasets: generation (noise level, determinism) and the Great Expectations gate
(it rejects NaN, wrong shape, swapped channels, labels equal to inputs and repeated patches)."""

from pathlib import Path

import h5py
import numpy as np
import pytest

from cmbml.cenn.foregrounds import channel_maps, load_source_counts, polarization_spectra
from cmbml.cenn.fullsky import gaussian_alm, tqu_from_alm
from cmbml.cenn.setup import CennSetup
from cmbml.cenn.simulate import build_component_skies, cut_split, plan_split, read_instrument, write_split
from cmbml.cenn.validation import build_tables, cenn_expectation
from cmbml.common.executors import ForkExecutor
from cmbml.common.flatsky import FlatGrid
from cmbml.common.gate import run_gate
from tests.conftest import REPO, compose
from tests.helpers import copy_files, failed

SIZES = {"Train": 16, "Test": 8, "Validation": 8}


@pytest.fixture(scope="module")
def world(camb_cls):
    """Smoke-scale skies (nside 256, 32 px x 12 arcmin) and the parameters that made them."""
    params = compose("scale=smoke")
    roles = {"Train": "training", "Test": "early_stopping", "Validation": "evaluation"}  # SPLIT_FILES
    params["scale"]["cenn"].update({f"n_{roles[s]}": n for s, n in SIZES.items()})
    params["cenn_train"]["batch_size"] = 8  # at most n_training
    sc = params["scale"]["cenn"]
    nside, lmax = sc["nside"], 3 * sc["nside"] - 1
    channels = read_instrument(REPO / params["instrument"]["table"])
    params["instrument"]["table"] = str(REPO / params["instrument"]["table"])
    alm = gaussian_alm(
        camb_cls["cl_tt_lensed"],
        camb_cls["cl_ee_lensed"],
        camb_cls["cl_bb_lensed"],
        camb_cls["cl_te_lensed"],
        lmax,
        np.random.default_rng(0),
    )
    cmb_qu = [tqu_from_alm(alm, nside)[1:]]
    totals, _, _ = channel_maps(
        params["foregrounds"],
        [c.freq_ghz for c in channels],
        nside,
        params["seed"],
        load_source_counts(params["foregrounds"], REPO / "data"),
    )
    fg = [totals[c.freq_ghz] for c in channels]
    fg_cls = {"ell": np.arange(lmax + 1)}
    for c in channels:
        cls = polarization_spectra(totals[c.freq_ghz], lmax, params["cenn_simulate"]["b_min_deg"])
        fg_cls[f"cl_EE_{c.freq_ghz:g}GHz"], fg_cls[f"cl_BB_{c.freq_ghz:g}GHz"] = cls["EE"], cls["BB"]
    inputs, labels = build_component_skies(cmb_qu, fg, channels, 1, nside, ["E"])
    return dict(params=params, channels=channels, inputs=inputs, labels=labels, fg_cls=fg_cls, cmb_qu=cmb_qu, fg=fg)


def make_split(world, folder: Path, split: str, noise=True, workers=1, chunk=32):
    p, sc = world["params"], world["params"]["scale"]["cenn"]
    geometry = FlatGrid(sc["npix"], sc["pixel_arcmin"])
    plan = plan_split(split, SIZES[split], p["seed"], 1, 30.0, [0.0, 60.0], [180.0, 240.0], geometry)
    chunks = cut_split(
        plan,
        world["inputs"],
        world["labels"],
        world["channels"],
        sc["nside"],
        geometry,
        ["E"],
        p["seed"],
        noise=noise,
        executor=ForkExecutor(workers),
        chunk=chunk,
    )
    path = folder / f"{split}_E.h5"
    setup = CennSetup.from_params(p, REPO / "conf")
    attrs = {
        "split": split,
        "params_digest": setup.dataset_digest,
        "channels_GHz": setup.instrument.freqs_ghz,
        "target_GHz": setup.instrument.target_channel.freq_ghz,
    }
    write_split({"E": path}, plan, chunks, sc["npix"], 3, attrs)
    return path


@pytest.fixture(scope="module")
def clean(world, tmp_path_factory):
    folder = tmp_path_factory.mktemp("cenn")
    return {(s, "E"): make_split(world, folder, s) for s in SIZES}


def gate(world, paths, tmp_path):
    expect = cenn_expectation(CennSetup.from_params(world["params"], REPO / "conf"), _camb(world), world["fg_cls"])
    return run_gate(tmp_path / "gx", "cenn_datasets", build_tables(paths, expect))


def _camb(world):
    from cmbml.common.spectra import camb_spectra

    if "camb" not in world:
        world["camb"] = camb_spectra(world["params"]["cosmology"], 3000)
    return world["camb"]


def test_noise_per_pixel_matches_the_configured_depth(world, tmp_path):
    """Input minus the noiseless input is white noise of sigma = depth [uK-arcmin] / pixel side,
    per channel (1.96, 1.17, 1.75 uK-deg at 100/143/217 GHz), to 3%."""
    noisy, quiet = make_split(world, tmp_path / "a", "Test"), make_split(world, tmp_path / "b", "Test", noise=False)
    with h5py.File(noisy) as a, h5py.File(quiet) as b:
        diff = a["M"][:] - b["M"][:]
        assert np.array_equal(a["M0"][:], b["M0"][:])
    for k, depth_uk_deg in enumerate([1.96, 1.17, 1.75]):
        assert diff[..., k].std() == pytest.approx(depth_uk_deg * 60 / 12.0, rel=0.03)
    assert abs(np.corrcoef(diff[..., 0].ravel(), diff[..., 1].ravel())[0, 1]) < 0.03


def test_patches_do_not_depend_on_workers_or_chunking(world, tmp_path):
    one = make_split(world, tmp_path / "one", "Train", workers=1, chunk=16)
    two = make_split(world, tmp_path / "two", "Train", workers=2, chunk=5)
    with h5py.File(one) as a, h5py.File(two) as b:
        assert a["M"][:].tobytes() == b["M"][:].tobytes() and a["M0"][:].tobytes() == b["M0"][:].tobytes()
        assert a.attrs["complete"]


def test_the_label_is_the_cmb_at_the_target_beam(world):
    """Without foregrounds or noise the 143 GHz input equals the label (same beam)."""
    from cmbml.cenn.simulate import build_component_skies

    zero_fg = [np.zeros_like(f) for f in world["fg"]]
    inputs, labels = build_component_skies(
        world["cmb_qu"], zero_fg, world["channels"], 1, world["params"]["scale"]["cenn"]["nside"], ["E"]
    )
    assert np.allclose(inputs[(0, "E")][1], labels[(0, "E")], atol=1e-4)
    assert not np.allclose(inputs[(0, "E")][0], labels[(0, "E")], atol=1e-2)  # 100 GHz: wider beam


def test_clean_patches_pass_the_gate(world, clean, tmp_path):
    result = gate(world, clean, tmp_path)
    assert result.success, result.failures
    assert Path(result.data_docs_index.removeprefix("file://")).is_file()


def test_a_nan_is_rejected(world, clean, tmp_path):
    paths = copy_files(clean, tmp_path / "copy")
    with h5py.File(paths[("Test", "E")], "r+") as h5:
        h5["M"][2, 5, 5, 0] = np.nan
    assert failed(gate(world, paths, tmp_path), "Test_E_patches: expect_column_values_to_be_between(nonfinite_count)")


def test_a_wrong_shape_is_rejected(world, clean, tmp_path):
    paths = copy_files(clean, tmp_path / "copy")
    with h5py.File(paths[("Validation", "E")], "r+") as h5:
        data = h5["M"][:, :, :, :2]
        del h5["M"]
        h5["M"] = data
    assert failed(gate(world, paths, tmp_path), "files: expect_column_pair_values_to_be_equal(M_shape)")


def test_swapped_channels_are_rejected(world, clean, tmp_path):
    """100 and 143 GHz look alike in noise; the dust SED ratios between channels tell them apart."""
    paths = copy_files(clean, tmp_path / "copy")
    with h5py.File(paths[("Train", "E")], "r+") as h5:
        h5["M"][...] = h5["M"][:][..., [1, 0, 2]]
    result = gate(world, paths, tmp_path)
    assert failed(result, "Train_E_channel_order")
    assert not failed(result, "Test_E_channel_order")


def test_labels_equal_to_inputs_are_rejected(world, clean, tmp_path):
    paths = copy_files(clean, tmp_path / "copy")
    with h5py.File(paths[("Test", "E")], "r+") as h5:
        h5["M0"][...] = h5["M"][..., 1:2]
    assert failed(
        gate(world, paths, tmp_path), "Test_E_patches: expect_column_values_to_be_between(target_minus_label_var)"
    )


def test_a_patch_repeated_across_splits_is_rejected(world, clean, tmp_path):
    paths = copy_files(clean, tmp_path / "copy")
    with h5py.File(paths[("Train", "E")], "r") as src, h5py.File(paths[("Validation", "E")], "r+") as dst:
        dst["M"][0], dst["M0"][0] = src["M"][3], src["M0"][3]
    assert failed(gate(world, paths, tmp_path), "all_E_patches: expect_column_values_to_be_unique(digest)")


def test_pairs_out_of_step_and_blank_labels_are_rejected(world, clean, tmp_path):
    """Labels rolled by one patch (Train), one label transposed (Test), one label zeroed (Validation)."""
    paths = copy_files(clean, tmp_path / "copy")
    with h5py.File(paths[("Train", "E")], "r+") as h5:
        h5["M0"][...] = np.roll(h5["M0"][:], 1, axis=0)
    with h5py.File(paths[("Test", "E")], "r+") as h5:
        h5["M0"][2] = np.swapaxes(h5["M0"][2], 0, 1)
    with h5py.File(paths[("Validation", "E")], "r+") as h5:
        h5["M0"][4] = 0.0
    result = gate(world, paths, tmp_path)
    for split in ("Train", "Test", "Validation"):
        assert failed(result, f"{split}_E_patches: expect_column_values_to_be_in_set(pair_digest_ok)")
    # without digests: the rolled labels no longer correlate with their inputs' 143 GHz channel
    assert failed(result, "Train_E_patches: expect_column_mean_to_be_between(label_target_corr)")
    assert not failed(result, "Test_E_patches: expect_column_mean_to_be_between(label_target_corr)")
    assert failed(result, "Validation_E_patches: expect_column_values_to_be_between(label_var)")


def test_wrong_attributes_mixed_sets_and_near_copies_are_rejected(world, clean, tmp_path):
    """Test written for another target channel and without units, Validation from other parameters, and a
    Train input repeated in Validation with 1e-6 noise."""
    paths = copy_files(clean, tmp_path / "copy")
    with h5py.File(paths[("Test", "E")], "r+") as h5:
        h5.attrs["target_GHz"] = 217.0
        del h5.attrs["units"]
    with h5py.File(paths[("Validation", "E")], "r+") as h5:
        h5.attrs["params_digest"] = "made-by-other-parameters"
    with h5py.File(paths[("Train", "E")], "r") as src, h5py.File(paths[("Validation", "E")], "r+") as dst:
        dst["M"][1] = src["M"][0] + 1e-6 * np.random.default_rng(2).standard_normal(src["M"][0].shape)
    result = gate(world, paths, tmp_path)
    for column in ("attr_target_GHz", "attr_units", "attr_params_digest"):
        assert failed(result, f"files: expect_column_values_to_be_in_set({column})")
    assert failed(result, "near_duplicates_E: expect_column_values_to_be_between(M_nearest_similarity)")
    assert not failed(result, "near_duplicates_E: expect_column_values_to_be_between(M0_nearest_similarity)")
