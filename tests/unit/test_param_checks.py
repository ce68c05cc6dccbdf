"""Every key of params.yaml is checked before any compute: one invalid value per key, each refused with a
message that names the key and what is allowed. The table must cover every key of the composed file, so a
new parameter cannot arrive unchecked."""

import copy

import pytest

from stages.experiments import check_all
from cmbml.common.params import ParamError, flatten
from tests.conftest import compose

BAD_PATH = "../outside"

# key -> (invalid value, fragments the message must contain besides the key). The key's line must also say
# what is allowed. Values are chosen to be refused by the key's own rule (range, choice, type, cross-key).
INVALID = {
    "seed": (-1, ["0 <= seed"]),
    "cosmology.H0": (5.0, ["20 <= cosmology.H0 <= 150"]),
    "cosmology.ombh2": (0.5, ["cosmology.ombh2 <= 0.1"]),
    "cosmology.omch2": (0.0, ["0.01 <= cosmology.omch2"]),
    "cosmology.tau": (0.0, ["0.01 <= cosmology.tau"]),
    "cosmology.As": (1e-5, ["cosmology.As <= 1e-08"]),
    "cosmology.ns": (3.0, ["cosmology.ns <= 1.5"]),
    "cosmology.mnu": (-0.1, ["0 <= cosmology.mnu"]),
    "cosmology.r": (2.0, ["cosmology.r <= 1"]),
    "spectra.lmax": (1000, ["spectra.lmax <= 30000"]),
    "lensing_simulate.remap": ("nearest", ["fourier, bicubic"]),
    "lensing_simulate.chunk_samples": (0, ["1 <= lensing_simulate.chunk_samples"]),
    "lensing_simulate.remap_epsilon": (1e-15, ["2e-13 <= lensing_simulate.remap_epsilon <= 1e-06", "double precision"]),
    "lensing_simulate.workers": (0, ["1 <= lensing_simulate.workers"]),
    "lensing_train.precision": ("float16", ["float32, mixed_bfloat16, mixed_float16"]),
    "lensing_train.strategy": ("horovod", ["single, mirrored"]),
    "executor.kind": ("ray", ["local, dask"]),
    "executor.scheduler_address": ("localhost:8786", ["tcp://host:port"]),
    "lensing_validate.kappa_rms_nsigma": (0.0, ["0 < lensing_validate.kappa_rms_nsigma"]),
    "lensing_evaluate.rho_bin_width_in_fundamentals": (0.5, ["fundamental"]),
    "lensing_evaluate.n_example_maps": (0, ["1 <= lensing_evaluate.n_example_maps <= 16"]),
    "instrument.table": ("data/no_such_table.csv", ["no such file"]),
    "instrument.target_GHz": (150, ["not a channel of the table"]),
    "sky_maps.n_cmb_realisations": (0, ["1 <= sky_maps.n_cmb_realisations"]),
    "foregrounds.galactic_profile": ("gaussian", ["cosecant, uniform"]),
    "foregrounds.model": ("lognormal", ["gaussian, nongaussian"]),
    "foregrounds.spectral_fwhm_deg": (0.0, ["0.1 <= foregrounds.spectral_fwhm_deg"]),
    "foregrounds.dust.beta_scatter": (0.9, ["foregrounds.dust.beta_scatter <= 0.5"]),
    "foregrounds.dust.T_dust_scatter_K": (-1.0, ["0 <= foregrounds.dust.T_dust_scatter_K"]),
    "foregrounds.synchrotron.beta_scatter": (-0.1, ["0 <= foregrounds.synchrotron.beta_scatter"]),
    "foregrounds.dust.A_EE": (-1.0, ["0 <= foregrounds.dust.A_EE"]),
    "foregrounds.dust.A_BB": (-1.0, ["0 <= foregrounds.dust.A_BB"]),
    "foregrounds.dust.alpha_EE": (9.0, ["foregrounds.dust.alpha_EE <= 5"]),
    "foregrounds.dust.alpha_BB": (9.0, ["foregrounds.dust.alpha_BB <= 5"]),
    "foregrounds.dust.ref_GHz": (0.0, ["1 <= foregrounds.dust.ref_GHz"]),
    "foregrounds.dust.beta": (9.0, ["foregrounds.dust.beta <= 6"]),
    "foregrounds.dust.T_dust_K": (0.0, ["1 <= foregrounds.dust.T_dust_K"]),
    "foregrounds.dust.template": ("planck_dust.fits", ["dvc add data"]),
    "foregrounds.synchrotron.A_EE": (-1.0, ["0 <= foregrounds.synchrotron.A_EE"]),
    "foregrounds.synchrotron.A_BB": (-1.0, ["0 <= foregrounds.synchrotron.A_BB"]),
    "foregrounds.synchrotron.alpha_EE": (9.0, ["foregrounds.synchrotron.alpha_EE <= 5"]),
    "foregrounds.synchrotron.alpha_BB": (9.0, ["foregrounds.synchrotron.alpha_BB <= 5"]),
    "foregrounds.synchrotron.ref_GHz": (0.0, ["1 <= foregrounds.synchrotron.ref_GHz"]),
    "foregrounds.synchrotron.beta": (-9.0, ["-6 <= foregrounds.synchrotron.beta"]),
    "foregrounds.synchrotron.template": ("haslam.fits", ["dvc add data"]),
    **{f"foregrounds.{s}.{k}": (v, [frag.format(s=s)]) for s in ("radio", "infrared") for k, v, frag in [
        ("counts_table", "counts.csv", "no such file"),
        ("s_min_Jy", 0.0, "0 < foregrounds.{s}.s_min_Jy"),
        ("s_max_Jy", 0.005, "above s_min_Jy"),
        ("spectral_index", 20.0, "foregrounds.{s}.spectral_index <= 10"),
        ("ref_GHz", 0.0, "1 <= foregrounds.{s}.ref_GHz"),
        ("pol_mu", 20.0, "foregrounds.{s}.pol_mu <= 10"),
        ("pol_sigma", -1.0, "0 <= foregrounds.{s}.pol_sigma"),
    ]},
    "foregrounds.noise": ("yes", ["true or false"]),
    "cenn_simulate.b_min_deg": (85.0, ["cenn_simulate.b_min_deg <= 80"]),
    "cenn_simulate.holdout_lon_deg": ([0.0, 3.0], ["no 6.40 deg patch fits", "hi - lo >"]),
    "cenn_simulate.early_stopping_lon_deg": ([60.5, 359.5], ["leave no sky for Train"]),
    "cenn_simulate.workers": (0, ["1 <= cenn_simulate.workers"]),
    "cenn_train.precision": ("fp8", ["float32, mixed_bfloat16, mixed_float16"]),
    "cenn_train.strategy": ("parameter_server", ["single, mirrored"]),
    "cenn_train.optimizer": ("lbfgs", ["adam, sgd"]),
    "cenn_train.learning_rate": (0.0, ["0 < cenn_train.learning_rate"]),
    "cenn_train.l2": (2.0, ["cenn_train.l2 <= 1"]),
    "cenn_train.batch_size": (5000, ["cenn_train.batch_size <= 3000", "scale.cenn.n_train"]),
    "cenn_train.early_stopping_patience": (0, ["1 <= cenn_train.early_stopping_patience"]),
    "cenn_evaluate.apodization_deg": (5.0, ["a quarter of the cropped"]),
    "cenn_evaluate.bin_width": (35.0, ["fundamental"]),
    "cenn_evaluate.residual_ell_ranges": ([[2000, 3000]], ["holds no bin", "bin centre"]),
    "cenn_evaluate.n_example_patches": (0, ["1 <= cenn_evaluate.n_example_patches <= 16"]),
    "mlflow.tracking_uri": ("sqlite:////tmp/elsewhere.db", ["outside the repository"]),
    "mlflow.lensing_experiment": ("", ["non-empty"]),
    "mlflow.lensing_registered_model_prefix": ("", ["non-empty"]),
    "mlflow.cenn_experiment": ("", ["non-empty"]),
    "mlflow.cenn_registered_model_prefix": ("", ["non-empty"]),
    "lensing_version": ("v9", ["v1, v2"]),
    "npix": (0, ["8 <= npix <= 1024"]),
    "pixel_arcmin": (-1.0, ["0 < pixel_arcmin"]),
    "T_lmax": (500, ["Nyquist"]),
    "kappa_lmax": (5000, ["Nyquist"]),
    "kappa_exaggeration_factor": (0, ["0 < kappa_exaggeration_factor"]),
    "same_T_realisation": ("no", ["true or false"]),
    "noise_uK_arcmin": (-1.0, ["0 <= noise_uK_arcmin"]),
    "lensing_net.conv_filters": ([64, 0, 64, 64], ["1 <= filters <= 4096"]),
    "lensing_net.conv_kernels": ([3, 4, 3, 3], ["odd integers"]),
    "lensing_net.output_kernel": (0, ["1 <= lensing_net.output_kernel <= 31"]),
    "lensing_net.kernel_initializer": ("glorot", ["orthogonal"]),
    "lensing_train.optimizer": ("lbfgs", ["adam, sgd"]),
    "lensing_train.learning_rate": (0.0, ["0 < lensing_train.learning_rate"]),
    "lensing_train.clipnorm": (0.0, ["0 < lensing_train.clipnorm"]),
    "lensing_train.batch_size": (10_000, ["n_train"]),
    "lensing_train.augment": ("no", ["true or false"]),
    "lensing_default.n_train": (0, ["1 <= lensing_default.n_train"]),
    "lensing_default.epochs": (0, ["1 <= lensing_default.epochs"]),
    "lensing_paper.n_train": (0, ["1 <= lensing_paper.n_train"]),
    "lensing_paper.n_val": (0, ["1 <= lensing_paper.n_val"]),
    "lensing_paper.epochs": (0, ["1 <= lensing_paper.epochs"]),
    "cenn.variant": ("TE", ["E, QU"]),
    "cenn.components": (["B"], ["does not match cenn.variant"]),
    "cenn.spectra": (["BB"], ["does not match cenn.variant"]),
    "scale.name": ("huge", ["default, paper, smoke"]),
    "scale.lensing.n_train": (0, ["1 <= scale.lensing.n_train"]),
    "scale.lensing.n_val": (0, ["1 <= scale.lensing.n_val"]),
    "scale.lensing.n_test": (0, ["1 <= scale.lensing.n_test"]),
    "scale.lensing.epochs": (0, ["1 <= scale.lensing.epochs"]),
    "scale.lensing.early_stopping_patience": (0, ["1 <= scale.lensing.early_stopping_patience"]),
    "scale.cenn.nside": (500, ["powers of two"]),
    "scale.cenn.npix": (60, ["multiples of 16"]),
    "scale.cenn.pixel_arcmin": (0.0, ["0 < scale.cenn.pixel_arcmin"]),
    "scale.cenn.n_train": (0, ["1 <= scale.cenn.n_train"]),
    "scale.cenn.n_test": (0, ["1 <= scale.cenn.n_test"]),
    "scale.cenn.n_validation": (0, ["1 <= scale.cenn.n_validation"]),
    "scale.cenn.epochs": (0, ["1 <= scale.cenn.epochs"]),
    "scale.cenn.crop_pixels": (40, ["scale.cenn.crop_pixels <= 15"]),
}
# The unseen evaluation sky's block is checked as the training sky's (with the non-Gaussian model's keys).
INVALID.update({"unseen_" + key: (value, [f.replace("foregrounds.", "unseen_foregrounds.") for f in fragments])
                for key, (value, fragments) in list(INVALID.items()) if key.startswith("foregrounds.")})
INVALID.update({f"unseen_foregrounds.{s}.{k}": (v, [f"{frag}unseen_foregrounds.{s}.{k}{rest}"])
                for s in ("dust", "synchrotron") for k, v, frag, rest in [
                    ("ln_intensity_sigma", -0.5, "0 <= ", ""), ("angle_sigma_deg", 200.0, "", " <= 180")]})
DEFAULT = compose()
PATH_KEYS = [k for k in flatten(DEFAULT) if k.startswith("paths.")]


def _set(params: dict, dotted: str, value) -> dict:
    out = copy.deepcopy(params)
    node = out
    *parents, leaf = dotted.split(".")
    for part in parents:
        node = node[part]
    node[leaf] = value
    return out


def test_the_table_covers_every_key_of_the_composed_parameters():
    keys = set(flatten(DEFAULT))
    assert keys - set(INVALID) - set(PATH_KEYS) == set()
    assert set(INVALID) - keys == set()


@pytest.mark.parametrize("key", sorted(INVALID) + PATH_KEYS)
def test_each_invalid_value_is_refused_naming_the_key_and_what_is_allowed(key, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)  # set by mlflow.set_tracking_uri in earlier tests
    value, fragments = INVALID.get(key, (BAD_PATH, ["stay inside the repository"]))
    with pytest.raises(ParamError) as err:
        check_all(_set(DEFAULT, key, value))
    lines = [line for line in str(err.value).splitlines() if key in line]
    assert lines, f"no problem names {key}:\n{err.value}"
    assert any("allowed" in line or "stay inside" in line for line in lines), str(err.value)
    for fragment in fragments:
        assert fragment in str(err.value), f"{fragment!r} missing from:\n{err.value}"


NONGAUSSIAN = compose("foregrounds=nongaussian")
INVALID_NONGAUSSIAN = {  # the keys only the non-Gaussian foreground model has
    f"foregrounds.{s}.{k}": (v, [frag.format(s=s)]) for s in ("dust", "synchrotron") for k, v, frag in [
        ("ln_intensity_sigma", -0.5, "0 <= foregrounds.{s}.ln_intensity_sigma"),
        ("angle_sigma_deg", 200.0, "foregrounds.{s}.angle_sigma_deg <= 180"),
    ]}


def test_the_nongaussian_table_covers_the_keys_the_gaussian_model_lacks():
    assert set(flatten(NONGAUSSIAN)) - set(flatten(DEFAULT)) == set(INVALID_NONGAUSSIAN)


def test_the_nongaussian_foreground_parameters_are_valid():
    check_all(NONGAUSSIAN)


@pytest.mark.parametrize("key", sorted(INVALID_NONGAUSSIAN))
def test_each_invalid_nongaussian_value_is_refused_naming_the_key(key, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    value, fragments = INVALID_NONGAUSSIAN[key]
    with pytest.raises(ParamError) as err:
        check_all(_set(NONGAUSSIAN, key, value))
    assert any(key in line and "allowed" in line for line in str(err.value).splitlines()), str(err.value)
    for fragment in fragments:
        assert fragment in str(err.value), f"{fragment!r} missing from:\n{err.value}"


def test_the_unseen_sky_may_not_change_the_instrument_noise(monkeypatch):
    """The unseen sky changes the foregrounds only: its noise switch must be the training sky's."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    with pytest.raises(ParamError, match=r"unseen_foregrounds.noise = False: allowed only foregrounds.noise = True"):
        check_all(_set(DEFAULT, "unseen_foregrounds.noise", False))


def test_source_flux_cuts_must_lie_inside_the_counts_table(monkeypatch):
    """The counts tables start at 1 mJy: a fainter cut would extrapolate published counts, so it is refused."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    with pytest.raises(ParamError, match=r"foregrounds.radio.counts_table = .* s_min_Jy = 0.0001.*outside the table"):
        check_all(_set(DEFAULT, "foregrounds.radio.s_min_Jy", 1e-4))


def test_a_dask_executor_needs_a_scheduler_address(monkeypatch):
    """executor.kind = dask with no address in the parameters or the environment is refused before any compute;
    with DASK_SCHEDULER_ADDRESS set it is accepted."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("DASK_SCHEDULER_ADDRESS", raising=False)
    with pytest.raises(ParamError, match=r"executor.scheduler_address = null: executor.kind = dask needs a scheduler"):
        check_all(_set(DEFAULT, "executor.kind", "dask"))
    monkeypatch.setenv("DASK_SCHEDULER_ADDRESS", "tcp://127.0.0.1:8786")
    check_all(_set(DEFAULT, "executor.kind", "dask"))


def test_a_tracking_server_is_an_allowed_tracking_uri(monkeypatch):
    """mlflow.tracking_uri may name a tracking server (http or https) instead of the repository's SQLite file."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    check_all(_set(DEFAULT, "mlflow.tracking_uri", "http://127.0.0.1:5000"))
    with pytest.raises(ParamError, match="or a tracking server"):
        check_all(_set(DEFAULT, "mlflow.tracking_uri", "postgresql://db/mlflow"))


@pytest.mark.parametrize("key", ["lensing_train.strategy", "cenn_train.strategy"])
def test_multi_worker_training_is_refused_with_the_reason(key, monkeypatch):
    """Keras 3's Model.fit fails under MultiWorkerMirroredStrategy: asking for it stops before any compute and
    says why, instead of failing in the first training step on every node."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    with pytest.raises(ParamError, match=rf"{key} = 'multi_worker_mirrored': allowed values are single, mirrored; "
                                         r"Keras 3\.\S+ Model\.fit cannot train under MultiWorkerMirroredStrategy"):
        check_all(_set(DEFAULT, key, "multi_worker_mirrored"))
