"""Parameter sets (Hydra groups lensing/ and scale/) and the checks that run before any compute."""

import math

import pytest
import yaml

from cmbml.common.params import ParamError
from stages.experiments import check_all as validate
from tests.conftest import REPO, compose

# Seed README ("Summary of the eight versions") and science notes (networks, training).
SEED_TABLE = {
    "v1": dict(
        npix=50, pix=27.48, T_lmax=383, kappa_lmax=50, factor=30, same_T=True, noise=0.0, filters=[64, 64, 32], out=9
    ),
    "v2": dict(
        npix=50, pix=27.48, T_lmax=383, kappa_lmax=50, factor=30, same_T=False, noise=0.0, filters=[64] * 4, out=9
    ),
    "v3": dict(
        npix=50,
        pix=27.48,
        T_lmax=383,
        kappa_lmax=50,
        factor=10,
        same_T=False,
        noise=0.0,
        filters=[64] * 4 + [32],
        out=9,
    ),
    "v4": dict(
        npix=50, pix=27.48, T_lmax=383, kappa_lmax=50, factor=1, same_T=False, noise=0.0, filters=[64] * 4 + [32], out=9
    ),
    "v5": dict(
        npix=50, pix=0.8588, T_lmax=12287, kappa_lmax=5000, factor=1, same_T=False, noise=0.0, filters=[64] * 6, out=3
    ),
    "v6": dict(
        npix=100, pix=6.0, T_lmax=None, kappa_lmax=None, factor=1, same_T=False, noise=0.0, filters=[32] * 12, out=3
    ),
    "v7": dict(
        npix=50, pix=27.48, T_lmax=None, kappa_lmax=None, factor=1, same_T=False, noise=0.0, filters=[64] * 8, out=3
    ),
    "v8": dict(
        npix=50,
        pix=27.48,
        T_lmax=None,
        kappa_lmax=50,
        factor=1,
        same_T=False,
        noise=5.0,
        filters=[64] * 5 + [32],
        out=3,
    ),
}


@pytest.mark.parametrize("version", sorted(SEED_TABLE))
def test_each_version_composes_to_the_seed_table(version):
    p, want = compose(f"lensing={version}"), SEED_TABLE[version]
    assert p["lensing_version"] == version
    assert (p["npix"], p["T_lmax"], p["kappa_lmax"]) == (want["npix"], want["T_lmax"], want["kappa_lmax"])
    assert p["pixel_arcmin"] == pytest.approx(want["pix"])
    assert p["kappa_exaggeration_factor"] == want["factor"]
    assert p["same_T_realisation"] is want["same_T"] and p["noise_uK_arcmin"] == want["noise"]
    net = p["lensing_net"][p["lensing_net"]["architecture"]]
    assert net["conv_filters"] == want["filters"] and net["output_kernel"] == want["out"]
    validate(p)


def test_v6_to_v8_patch_sides():
    # seed README: v6 100 px over 10 deg; v7 and v8 50 px over 22.9 deg.
    assert compose("lensing=v6")["npix"] * compose("lensing=v6")["pixel_arcmin"] / 60 == pytest.approx(10.0)
    for v in ("v7", "v8"):
        p = compose(f"lensing={v}")
        assert p["npix"] * p["pixel_arcmin"] / 60 == pytest.approx(22.9, abs=0.01)


def test_committed_params_yaml_is_the_default_composition():
    with open(REPO / "params.yaml") as fh:
        assert yaml.safe_load(fh) == compose()


def test_default_is_v2_and_exaggeration_10_reproduces_v3_physics():
    default, v3 = compose(), compose("lensing=v3")
    assert default["lensing_version"] == "v2" and default["kappa_exaggeration_factor"] != 10
    swept = compose("kappa_exaggeration_factor=10")
    keys = ["npix", "pixel_arcmin", "T_lmax", "kappa_lmax", "kappa_exaggeration_factor", "same_T_realisation"]
    assert {k: swept[k] for k in keys} == {k: v3[k] for k in keys}


@pytest.mark.parametrize("scale", ["smoke", "default", "paper"])
def test_scales_change_sizes_never_physics(scale):
    base, p = compose(), compose(f"scale={scale}")
    assert p["scale"]["name"] == scale
    assert {k: v for k, v in p.items() if k != "scale"} == {k: v for k, v in base.items() if k != "scale"}
    validate(p)


def test_paper_scale_takes_the_versions_original_sample_sizes():
    # science notes: v7 trained on 20000 maps.
    assert compose("lensing=v7", "scale=paper")["scale"]["lensing"]["n_training"] == 20000


@pytest.mark.parametrize("version", [f"v{i}" for i in range(1, 9)])
def test_default_scale_takes_the_versions_cost_based_sizes_and_1000_test_maps(version):
    p = compose(f"lensing={version}")
    sizes = p["scale"]["lensing"]
    assert (sizes["n_training"], sizes["epochs"]) == (
        p["lensing_default"]["n_training"],
        p["lensing_default"]["epochs"],
    )
    assert sizes["n_evaluation"] >= 1000


def problems_of(**changes):
    p = compose()
    for dotted, value in changes.items():
        node = p
        *parents, leaf = dotted.split("__")
        for part in parents:
            node = node[part]
        node[leaf] = value
    with pytest.raises(ParamError) as err:
        validate(p)
    return str(err.value)


@pytest.mark.parametrize(
    "changes, must_mention",
    [
        (dict(npix=0), ["npix = 0", "8 <= npix <= 1024"]),
        (dict(pixel_arcmin=-1.0), ["pixel_arcmin = -1.0", "0 < pixel_arcmin"]),
        (dict(T_lmax=500), ["T_lmax = 500", "393", "Nyquist"]),
        (dict(kappa_lmax=5000), ["kappa_lmax = 5000", "Nyquist"]),
        (dict(lensing_version="v9"), ["lensing_version = 'v9'", "v1, v2"]),
        (dict(scale__lensing__n_training=0), ["scale.lensing.n_training = 0"]),
        (dict(kappa_exaggeration_factor=0), ["kappa_exaggeration_factor = 0"]),
        (
            dict(lensing_evaluate__rho_bin_width_in_fundamentals=0.5),
            ["rho_bin_width_in_fundamentals = 0.5", "fundamental"],
        ),
        (dict(kappa_lmax=20), ["kappa_lmax = 20", "rho(L) bin"]),
        (dict(lensing_train__batch_size=10_000), ["lensing_train.batch_size = 10000", "n_training"]),
    ],
)
def test_invalid_parameters_name_the_key_and_the_allowed_range(changes, must_mention):
    message = problems_of(**changes)
    for fragment in must_mention:
        assert fragment in message


def test_every_problem_is_reported_at_once():
    message = problems_of(npix=0, noise_uK_arcmin=-1.0)
    assert "npix = 0" in message and "noise_uK_arcmin = -1.0" in message


def test_one_camb_table_covers_every_version_and_scale():
    from cmbml.common.config import required_spectra_lmax

    assert required_spectra_lmax(compose("lensing=v5")) == 12287
    v6 = compose("lensing=v6")  # no band limit: every grid mode up to the corner sqrt(2) ell_Nyquist
    assert required_spectra_lmax(v6) >= math.sqrt(2) * 1800
    for version in SEED_TABLE:
        for scale in ("smoke", "default", "paper"):
            p = compose(f"lensing={version}", f"scale={scale}")
            assert required_spectra_lmax(p) <= p["spectra"]["lmax"]
            validate(p)  # every version runs at every scale (e.g. batch 128 needs n_training >= 128)
    message = problems_of(spectra__lmax=1000)
    assert "spectra.lmax = 1000" in message and "1535" in message


@pytest.mark.parametrize(
    "variant, components, spectra", [("E", ["E"], ["EE"]), ("B", ["B"], ["BB"]), ("QU", ["Q", "U"], ["EE", "BB"])]
)
def test_cenn_variants_differ_only_in_components(variant, components, spectra):
    p = compose(f"cenn={variant}")
    assert p["cenn"] == {"variant": variant, "components": components, "spectra": spectra}
    assert {k: v for k, v in p.items() if k != "cenn"} == {k: v for k, v in compose().items() if k != "cenn"}
    validate(p)


def test_cenn_paper_scale_is_the_original_geometry():
    # science notes: 256 x 256 patches of 90 arcsec from nside 2048, 10,000 training simulations, crop 8 px.
    sc = compose("scale=paper")["scale"]["cenn"]
    assert (sc["npix"], sc["pixel_arcmin"], sc["nside"], sc["n_training"], sc["crop_pixels"]) == (
        256,
        1.5,
        2048,
        10000,
        8,
    )
    assert compose()["scale"]["cenn"]["npix"] * compose()["scale"]["cenn"]["pixel_arcmin"] / 60 == pytest.approx(6.4)


@pytest.mark.parametrize(
    "changes, must_mention",
    [
        (dict(cenn_evaluate__bin_width=35.0), ["cenn_evaluate.bin_width = 35.0", "fundamental"]),
        (dict(scale__cenn__npix=60), ["scale.cenn.npix = 60", "multiples of 16"]),
        (dict(scale__cenn__nside=500), ["scale.cenn.nside = 500", "powers of two"]),
        (dict(scale__cenn__crop_pixels=40), ["scale.cenn.crop_pixels = 40"]),
        (dict(foregrounds__dust__template="planck_dust.fits"), ["foregrounds.dust.template", "dvc add data"]),
        (dict(cenn_simulate__holdout_lon_deg=[60.0, 10.0]), ["cenn_simulate.holdout_lon_deg"]),
    ],
)
def test_invalid_cenn_parameters_name_the_key_and_the_allowed_range(changes, must_mention):
    message = problems_of(**changes)
    for fragment in must_mention:
        assert fragment in message
