"""The experiments' setups: one definition of each derived quantity, paths inside the repository, each
experiment's own MLflow parameters, and problems named before any compute."""

import copy
import pickle
from pathlib import Path

import numpy as np
import pytest

from cmbml.cenn.setup import CennSetup
from cmbml.common.config import logged_params
from cmbml.common.integrity import params_digest
from cmbml.common.params import ParamError
from cmbml.lensing.setup import LensingSetup
from tests.conftest import REPO, compose

CONF = REPO / "conf"


def problems(cls, params) -> str:
    with pytest.raises(ParamError) as err:
        cls.from_params(params, CONF)
    return str(err.value)


def test_default_cenn_geometry():
    """64 x 6' patches from nside 512, 2 px cropped: a 6.0 deg patch (fundamental 60), measured to
    3 nside - 1 = 1535 (below the 1800 Nyquist), bins of 60 from the fundamental."""
    setup = CennSetup.from_params(compose(), CONF)
    g = setup.geometry
    assert g.patch.side_deg == pytest.approx(6.4) and g.cropped.npix == 60
    assert g.cropped.ell_fundamental == pytest.approx(60.0) and g.spectra_lmax == 1535
    assert setup.bin_edges[0] == pytest.approx(60.0) and np.allclose(np.diff(setup.bin_edges), 120.0)  # 2 fundamentals
    assert setup.bin_edges[-1] < 1535 and setup.spin == 0
    assert g.crop(np.zeros((2, 64, 64, 3))).shape == (2, 60, 60, 3)
    assert setup.instrument.target_channel.freq_ghz == 143.0
    assert np.allclose(setup.label_transfer, setup.beams[1] * setup.interpolation_window)


def test_the_parameter_check_tests_the_very_bins_namaster_gets(monkeypatch):
    import cmbml.cenn.schema as cenn_schema

    seen = []
    real = cenn_schema.check_bins
    monkeypatch.setattr(
        cenn_schema, "check_bins", lambda edges, grid, lmax: seen.append(edges) or real(edges, grid, lmax)
    )
    setup = CennSetup.from_params(compose(), CONF)
    assert len(seen) == 1 and np.array_equal(seen[0], setup.bin_edges)


@pytest.mark.parametrize("scale", ["smoke", "default", "paper"])
@pytest.mark.parametrize("variant", ["E", "B", "QU"])
def test_every_accepted_parameter_set_gives_bins_namaster_accepts(scale, variant):
    """A NaMaster bin without a Fourier mode aborts the process: the setup's bins pass the same check."""
    from cmbml.cenn.namaster_flat import FlatSpectra

    setup = CennSetup.from_params(compose(f"scale={scale}", f"cenn={variant}"), CONF)
    estimator = FlatSpectra(
        setup.geometry.cropped, setup.bin_edges, setup.spin, setup.apodization_deg, spin0_name=setup.spectra[0]
    )
    assert estimator.ell.size == setup.bin_edges.size - 1 and estimator.names[0] == setup.spectra[0]


def test_the_lensing_setup_derives_kappa_power_and_bins_once(camb_cls):
    """The simulator's kappa power is the setup's; rho(L) bins start half a fundamental below the first mode."""
    from cmbml.lensing.simulate import LensingSimulator

    setup = LensingSetup.from_params(compose("lensing=v3"), CONF)
    sim = LensingSimulator(setup.sim, camb_cls["cl_tt_unlensed"], camb_cls["cl_kk"], seed=0)
    assert np.array_equal(sim.cl_kk_grid, setup.sim.kappa_power_on_grid(camb_cls["cl_kk"]))
    assert np.array_equal(sim.cl_kk_grid, setup.grid.cl_on_grid(camb_cls["cl_kk"], 50) * 100.0)
    f = setup.grid.ell_fundamental
    assert np.allclose(setup.rho_bin_edges, [0.5 * f, 1.5 * f, 2.5 * f, 50.0])


def test_each_experiment_logs_its_own_parameters_and_the_shared_cosmology():
    lensing, cenn = LensingSetup.from_params(compose(), CONF), CennSetup.from_params(compose(), CONF)
    for setup in (lensing, cenn):
        assert "seed" in setup.tracking.params and "cosmology.H0" in setup.tracking.params
        assert not any(k.startswith(("paths.", "mlflow.")) for k in setup.tracking.params)
    assert not any(k.startswith(("cenn", "instrument", "foregrounds", "scale.cenn")) for k in lensing.tracking.params)
    assert not any(k.startswith(("lensing", "npix", "kappa", "scale.lensing")) for k in cenn.tracking.params)
    assert lensing.tracking.params["kappa_exaggeration_factor"] == 30 and cenn.tracking.params["cenn.variant"] == "E"
    # evaluation settings are not model parameters: the evaluation logs them as tags
    assert "lensing_evaluate.n_example_maps" in lensing.tracking.evaluation_params
    assert "scale.cenn.crop_pixels" in cenn.tracking.evaluation_params
    assert (
        "scale.cenn.crop_pixels" not in cenn.tracking.params and "cenn_evaluate.bin_width" not in cenn.tracking.params
    )
    # one MLflow log_params batch each (MLflow takes at most 100 per call)
    assert len(lensing.tracking.params) < 100 and len(cenn.tracking.params) < 100


def test_a_target_frequency_that_is_no_channel_is_named_with_the_allowed_ones():
    p = compose()
    p["instrument"]["target_GHz"] = 150
    message = problems(CennSetup, p)
    assert "instrument.target_GHz = 150" in message and "[100.0, 143.0, 217.0]" in message


@pytest.mark.parametrize("key, value", [("table", "../outside.csv"), ("table", "/etc/hostname")])
def test_an_instrument_table_outside_the_repository_is_refused(key, value):
    p = compose()
    p["instrument"][key] = value
    message = problems(CennSetup, p)
    assert f"instrument.table = {value!r}" in message and "outside the repository" in message


def test_a_missing_instrument_table_is_named():
    p = compose()
    p["instrument"]["table"] = "data/no_such_table.csv"
    assert "instrument.table = 'data/no_such_table.csv': no such file" in problems(CennSetup, p)


def test_a_tracking_store_outside_the_repository_is_refused(monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    p = compose()
    p["mlflow"]["tracking_uri"] = "sqlite:///../elsewhere/mlflow.db"
    assert "mlflow.tracking_uri = 'sqlite:///../elsewhere/mlflow.db'" in problems(LensingSetup, p)
    p["mlflow"]["tracking_uri"] = "postgresql://db/mlflow"
    assert "allowed a SQLite store inside the repository" in problems(LensingSetup, p)


def test_a_path_block_pointing_outside_the_repository_is_refused():
    p = compose()
    p["paths"]["lensing"]["metrics"] = "/tmp/lensing.json"
    assert "paths must be relative" in problems(LensingSetup, p)
    del p["paths"]["lensing"]["rho"]
    assert "paths.lensing.rho: missing" in problems(LensingSetup, p)


def test_all_problems_of_an_experiment_are_reported_at_once():
    p = compose()
    p["npix"], p["lensing_train"]["optimizer"], p["lensing_net"]["original"]["conv_kernels"] = 0, "lbfgs", [3, 3, 3, 4]
    message = problems(LensingSetup, p)
    for fragment in ("npix = 0", "lensing_train.optimizer = 'lbfgs'", "lensing_net.original.conv_kernels[3] = 4"):
        assert fragment in message


def test_the_unseen_sky_setup_differs_from_the_training_one_only_in_its_foregrounds_and_their_paths():
    """The unseen sky cuts only Validation patches, with the training sky's seed, sizes, geometry and CMB;
    its foregrounds, patches and gate report are its own. A model's sky does not depend on its role:
    with the same model in both roles the two skies' datasets carry the same parameter digest."""
    params = compose()
    train, unseen = CennSetup.from_params(params, CONF), CennSetup.from_params(params, CONF, foreground_sky="unseen")
    assert train.roles == ("training", "early_stopping", "evaluation") and unseen.roles == ("evaluation",)
    assert (train.foregrounds["model"], unseen.foregrounds["model"]) == ("gaussian", "nongaussian")
    assert (unseen.seed, unseen.n_samples, unseen.geometry) == (train.seed, train.n_samples, train.geometry)
    assert unseen.paths.cmb == train.paths.cmb and unseen.paths.model == train.paths.model
    for field in ("foregrounds", "foreground_cls", "patches", "report", "validation"):
        assert getattr(unseen.paths, field) != getattr(train.paths, field), field
    assert unseen.dataset_digest != train.dataset_digest
    same = compose("foregrounds@unseen_foregrounds=gaussian")
    assert (
        CennSetup.from_params(same, CONF, foreground_sky="unseen").dataset_digest
        == CennSetup.from_params(same, CONF).dataset_digest
    )
    with pytest.raises(ValueError, match="allowed"):
        CennSetup.from_params(params, CONF, foreground_sky="validation")


# The params_digest every dataset file carries, pinned: the same keys (DATASET_KEYS, read from the schema's field
# metadata) with the same values give the same digest, so that datasets already made stay valid. A change here
# (a key renamed, a key added to a dataset's parameters) makes every dataset stale: change it knowingly.
PINNED_DIGESTS = {
    (): {
        "lensing": "6016f1c66c08b71b8951aa0a",  # lensing_simulate.oversampling added
        "training": "737434a01238695a1a5c6f4c",
        "unseen": "f7d55d2cd82f8aee809477bd",
    },
    ("lensing=v5", "cenn=QU", "scale=smoke"): {
        "lensing": "a93c6c1e0a8f34dda3442559",
        "training": "9bbc50025245777bdd4e4060",  # smoke nside 256
        "unseen": "c04694b13af77218cab46aca",
    },
}


@pytest.mark.parametrize("overrides", sorted(PINNED_DIGESTS), ids=lambda o: " ".join(o) or "default")
def test_the_dataset_digests_are_unchanged(overrides):
    params, want = compose(*overrides), PINNED_DIGESTS[overrides]
    lensing = LensingSetup.from_params(params, CONF)
    assert lensing.dataset_digest == want["lensing"]
    assert lensing.dataset_digest == params_digest(logged_params(params, LensingSetup.DATASET_KEYS))
    for sky in ("training", "unseen"):
        assert CennSetup.from_params(params, CONF, foreground_sky=sky).dataset_digest == want[sky], sky


def test_the_keys_of_each_experiment_are_read_from_the_schema():
    """The roles in the schema's field metadata give the keys each experiment digests, logs and tags."""
    assert set(LensingSetup.DATASET_KEYS) == {
        "seed",
        "cosmology",
        "lensing_version",
        "npix",
        "pixel_arcmin",
        "T_lmax",
        "kappa_lmax",
        "kappa_exaggeration_factor",
        "same_T_realisation",
        "noise_uK_arcmin",
        "lensing_simulate.remap",
        "lensing_simulate.remap_epsilon",
        "lensing_simulate.oversampling",
        "scale.lensing.n_training",
        "scale.lensing.n_early_stopping",
        "scale.lensing.n_evaluation",
    }
    assert set(CennSetup.DATASET_KEYS) == {
        "seed",
        "cosmology",
        "instrument",
        "cmb_maps.n_realisations",
        "foregrounds",
        "cenn.variant",
        "cenn.components",
        "cenn_simulate.b_min_deg",
        "cenn_simulate.holdout_lon_deg",
        "cenn_simulate.early_stopping_lon_deg",
        "scale.cenn.nside",
        "scale.cenn.npix",
        "scale.cenn.pixel_arcmin",
        "scale.cenn.n_training",
        "scale.cenn.n_early_stopping",
        "scale.cenn.n_evaluation",
    }
    assert set(LensingSetup.EVALUATION_KEYS) == {"lensing_evaluate"}
    assert set(CennSetup.EVALUATION_KEYS) == {
        "cenn_evaluate",
        "cenn_separate",
        "unseen_foregrounds",
        "scale.cenn.crop_pixels",
        "cenn.spectra",
    }
    assert set(LensingSetup.KEYS) == {
        "seed",
        "cosmology",
        "lensing_version",
        "npix",
        "pixel_arcmin",
        "T_lmax",
        "kappa_lmax",
        "kappa_exaggeration_factor",
        "same_T_realisation",
        "noise_uK_arcmin",
        "lensing_simulate",
        "lensing_validate",
        "lensing_net",
        "lensing_train",
        "lensing_evaluate",
        "scale.name",
        "scale.lensing",
    }
    assert set(CennSetup.KEYS) == {
        "seed",
        "cosmology",
        "instrument",
        "cmb_maps",
        "foregrounds",
        "unseen_foregrounds",
        "cenn",
        "cenn_simulate",
        "cenn_net",
        "cenn_train",
        "cenn_evaluate",
        "cenn_separate",
        "scale.name",
        "scale.cenn",
    }


def test_the_setups_expose_the_network_training_and_every_path():
    params = compose()
    lensing, cenn = LensingSetup.from_params(params, CONF), CennSetup.from_params(params, CONF)
    assert lensing.net_architecture == "original" and lensing.net_params.conv_filters == [64, 64, 64, 64]
    assert cenn.net_architecture == "original" and cenn.net_params.model_dump() == {}
    # training reads as one block: the experiment's training keys and the scale's epochs
    assert (lensing.train.learning_rate, lensing.train.epochs, lensing.train.early_stopping_patience) == (1e-3, 3, 3)
    assert (cenn.train.l2, cenn.train.epochs, cenn.train.early_stopping_patience) == (1e-6, 40, 20)
    for setup in (lensing, cenn):
        assert setup.paths.data_docs == Path(params["paths"]["data_docs"])
        assert setup.paths.camb_cls == Path(params["paths"]["spectra"]["camb_cls"])
    assert lensing.paths.split("early_stopping") == Path(params["paths"]["lensing"]["early_stopping"])
    assert cenn.paths.patch_file("training", "E") == Path(params["paths"]["cenn"]["patches"]) / "Train_E.h5"
    for setup in (lensing, cenn):  # setups travel to worker processes
        again = pickle.loads(pickle.dumps(setup))
        assert (again.train, again.paths, again.net_params) == (setup.train, setup.paths, setup.net_params)
        assert copy.deepcopy(setup.paths).data_docs == setup.paths.data_docs


def test_each_setup_checks_its_own_keys_and_the_whole_file_check_every_key():
    """A setup validates the shared blocks and its own experiment's keys (the experiments never import each
    other); the whole-file check, which `cmbml params check` and the `cmbml` command before every stage run,
    refuses a misspelt key anywhere, the top level included."""
    from cmbml.common.params import ParamError
    from stages.experiments import check_all

    p = compose()
    p["cenn_train"]["learnig_rate"] = 0.1
    LensingSetup.from_params(p, CONF)  # not the lensing setup's business
    assert "cenn_train.learnig_rate: unknown key" in problems(CennSetup, p)
    del p["cenn_train"]["learnig_rate"]
    p["lensing_trian"] = {}
    CennSetup.from_params(p, CONF)
    with pytest.raises(ParamError) as err:
        check_all(p, CONF)
    assert "lensing_trian: unknown key (did you mean lensing_train?)" in str(err.value)
    p["lensing_train"]["learnig_rate"] = 0.1
    assert "lensing_train.learnig_rate: unknown key" in problems(LensingSetup, p)


def test_a_lensing_process_never_imports_the_cenn_package():
    """The layering holds at run time too: building the lensing setup loads no CENN module."""
    import subprocess
    import sys

    probe = (
        "import sys; from cmbml.lensing.setup import load; load(); "
        "loaded = sorted(m for m in sys.modules if m.startswith('cmbml.cenn')); assert not loaded, loaded"
    )
    out = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]


def test_the_lensing_setup_does_not_open_the_cenn_input_files():
    """The instrument table and the counts tables are inputs of the CENN stages only (data.dvc): a lensing stage
    runs without them, while `cmbml params check` and the CENN stages refuse a missing one."""
    p = compose()
    p["instrument"]["table"] = "data/no_such_table.csv"
    LensingSetup.from_params(p, CONF)
    assert "no such file" in problems(CennSetup, p)
    # the whole-file check before a lensing stage (a queued experiment's copy may lack data/) opens none either
    from stages.experiments import check_all

    check_all(p, CONF, files_of="lensing")
    with pytest.raises(ParamError, match="no such file"):
        check_all(p, CONF)
