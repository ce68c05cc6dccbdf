"""PySM 3 skies (foregrounds=pysm): PySM's real model code run on small templates in PySM's own layout
(tests/pysm_templates.py, nside 16), through this project's foreground functions and parameter checks."""

from __future__ import annotations

import shutil

import healpy as hp
import numpy as np
import pytest

from cmbml.cenn.foregrounds import (
    channel_parts,
    dust_sed_rj,
    foreground_sky,
    load_source_counts,
    rj_to_cmb,
    synchrotron_sed_rj,
)
from cmbml.cenn.pysm_sky import SUPPORTED_PRESETS, mean_sed_rj, preset_templates
from cmbml.cenn.validation import channel_sed_cmb
from cmbml.common.params import ParamError
from cmbml.common.schema import validate_params
from tests.conftest import REPO, compose
from tests.pysm_templates import PRESET_FILES, write_pysm_templates

NSIDE, SEED, FREQS = 16, 7, (100.0, 143.0, 217.0)
PYSM = compose("foregrounds=pysm")


@pytest.fixture(scope="module")
def templates(tmp_path_factory):
    """Every supported preset's templates at nside 16 in a folder of PySM's layout: (folder, maps as written)."""
    folder = tmp_path_factory.mktemp("pysm")
    return folder, write_pysm_templates(folder, NSIDE)


def sky_block(folder, presets=("d1", "s1"), nside=None) -> dict:
    return {**PYSM["foregrounds"], "pysm": {"presets": list(presets), "nside": nside, "data_dir": str(folder)}}


def parts(fg, nside=NSIDE, freqs=FREQS) -> dict[float, dict[str, np.ndarray]]:
    sky = foreground_sky(fg, nside, SEED, load_source_counts(fg, REPO / "data"))
    return {freq: dict(channel_parts(fg, sky, nside, freq)) for freq in freqs}


def test_the_supported_presets_read_pysm_2_templates_named_as_in_pysms_presets():
    """Each offered preset is one of PySM's, and the files the project looks for are exactly those of
    presets.cfg (copied by hand into tests/pysm_templates.py): what the tests write is PySM's own layout."""
    from pysm3.sky import PRESET_MODELS

    assert set(SUPPORTED_PRESETS) == set(PRESET_FILES)
    for preset in SUPPORTED_PRESETS:
        assert preset in PRESET_MODELS
        assert preset_templates(preset) == [f"pysm_2/{name}" for name in PRESET_FILES[preset]]


def test_rj_to_cmb_agrees_with_pysms_unit_equivalency():
    """This project's dT_CMB/dT_RJ = (e^x - 1)^2 / (x^2 e^x) and PySM's uK_RJ -> uK_CMB equivalency (astropy's
    thermodynamic temperature, T_CMB = 2.7255 K) agree to 1e-6 from 20 to 857 GHz, for a delta bandpass."""
    import pysm3.units as u

    for freq in (20.0, 100.0, 143.0, 217.0, 353.0, 857.0):
        pysm = (1.0 * u.uK_RJ).to_value(u.uK_CMB, equivalencies=u.cmb_equivalencies(freq * u.GHz))
        assert rj_to_cmb(freq) == pytest.approx(pysm, rel=1e-6)


def test_pysm_channels_are_uk_cmb_and_scale_as_the_templates_sed(templates):
    """d1 + s1 through foreground_sky/channel_parts: at each channel the dust (Q, U) is the 353 GHz template
    times the modified black body of that pixel's beta_d and T_d maps (PySM's (nu/nu0)^(beta-2) B_nu(T) ratio is
    this project's dust_sed_rj) times rj_to_cmb, and the synchrotron the 23 GHz template times
    (nu/23)^beta_s(pixel) times rj_to_cmb, pixel by pixel in RING order: uK_CMB, and no other scaling. PySM's own
    uK_CMB output (Sky(output_unit="uK_CMB")) gives the same maps."""
    import pysm3
    import pysm3.units as u

    from cmbml.cenn.pysm_sky import local_data

    folder, maps = templates
    fg = sky_block(folder)
    got = parts(fg)
    beta_d, t_d, beta_s = maps["dust_beta.fits"], maps["dust_temp.fits"], maps["synch_beta.fits"]
    dust_ref = np.stack([maps["dust_q_new.fits"], maps["dust_u_new.fits"]]).astype(float)
    synch_ref = np.stack([maps["synch_q_new.fits"], maps["synch_u_new.fits"]]).astype(float)
    for freq in FREQS:
        dust = dust_ref * dust_sed_rj(freq, 353.0, beta_d, t_d) * rj_to_cmb(freq)
        synch = synch_ref * synchrotron_sed_rj(freq, 23.0, beta_s) * rj_to_cmb(freq)
        np.testing.assert_allclose(got[freq]["dust"], dust, rtol=2e-5, atol=1e-6 * np.abs(dust).max())
        np.testing.assert_allclose(got[freq]["synchrotron"], synch, rtol=2e-5, atol=1e-6 * np.abs(synch).max())
        with local_data(folder):
            cmb = pysm3.Sky(nside=NSIDE, preset_strings=["d1", "s1"], output_unit="uK_CMB").get_emission(freq * u.GHz)
        total = got[freq]["dust"] + got[freq]["synchrotron"]
        np.testing.assert_allclose(total, cmb[1:3].value, rtol=1e-5, atol=1e-6 * np.abs(total).max())
    # the sources and their order stay the project's: every registered component, dust rising from 100 to 217 GHz
    assert list(got[100.0]) == ["dust", "synchrotron", "radio", "infrared"]
    ratio = np.std(got[217.0]["dust"]) / np.std(got[100.0]["dust"])
    assert ratio == pytest.approx(
        dust_sed_rj(217, 353, 1.54, 20) * rj_to_cmb(217) / (dust_sed_rj(100, 353, 1.54, 20) * rj_to_cmb(100)), rel=0.1
    )


def test_pysm_evaluates_at_its_own_nside_then_the_maps_are_ud_graded(templates):
    """pysm.nside = 32 on a sky of nside 16: the channel map is PySM's nside-32 map degraded with healpy.ud_grade
    (RING): the mean of the four sub-pixels."""
    folder, _ = templates
    fine = parts(sky_block(folder, ("d0",), nside=32), nside=32, freqs=(143.0,))[143.0]["dust"]
    coarse = parts(sky_block(folder, ("d0",), nside=32), nside=16, freqs=(143.0,))[143.0]["dust"]
    np.testing.assert_allclose(coarse, hp.ud_grade(fine, 16), rtol=1e-12)


def test_a_component_without_a_preset_is_left_out(templates):
    """presets [d0]: dust from PySM, no synchrotron at all (PySM's replace the project's own skies)."""
    folder, _ = templates
    got = parts(sky_block(folder, ("d0",)), freqs=(100.0,))[100.0]
    assert np.abs(got["dust"]).max() > 0 and not got["synchrotron"].any()


def test_the_gate_predicts_the_channel_order_from_pysms_mean_dust_sed(templates):
    """For a pysm sky the dataset gate's SED (ratios of the channels' contamination cross-covariances) is PySM's
    d0 modified black body, beta 1.54, T 20 K at 353 GHz (read from PySM's presets), in uK_CMB: on a d1 + s1 sky
    the summed cross-covariance of the channel maps over |b| > 30 deg follows it to 5%."""
    from cmbml.cenn.fullsky import galactic_latitude_deg

    folder, _ = templates
    fg = sky_block(folder)
    sed = channel_sed_cmb(fg, FREQS)
    expected = dust_sed_rj(np.array(FREQS), 353.0, 1.54, 20.0) * rj_to_cmb(np.array(FREQS))
    np.testing.assert_allclose(sed, expected, rtol=1e-12)
    assert mean_sed_rj(["s1"], 100.0) == pytest.approx((100 / 23) ** -3)
    got = parts({**fg, "pysm": {**fg["pysm"], "nside": None}})
    high = np.abs(galactic_latitude_deg(NSIDE)) > 30
    diffuse = {f: (got[f]["dust"] + got[f]["synchrotron"])[:, high] for f in FREQS}

    def cov(a, b):
        return float(np.sum(diffuse[a] * diffuse[b]))

    assert cov(100.0, 217.0) / cov(143.0, 217.0) == pytest.approx(sed[0] / sed[1], rel=0.05)
    assert cov(143.0, 100.0) / cov(217.0, 100.0) == pytest.approx(sed[1] / sed[2], rel=0.05)


def test_missing_templates_are_refused_in_one_line_before_any_compute(templates, tmp_path):
    """Without dust_beta.fits the sky is refused in one line naming the folder, the preset and the file (and
    nothing is downloaded: PySM reads through PYSM_LOCAL_DATA with astropy's downloads off)."""
    folder, _ = templates
    partial = tmp_path / "pysm"
    shutil.copytree(folder, partial)
    (partial / "pysm_2" / "dust_beta.fits").unlink()
    with pytest.raises(FileNotFoundError) as err:
        foreground_sky(sky_block(partial), NSIDE, SEED, load_source_counts(PYSM["foregrounds"], REPO / "data"))
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(f"foregrounds.pysm: preset d1 needs {partial}/pysm_2/dust_beta.fits, not found")
    assert "docs/cenn.md: PySM skies" in message


@pytest.fixture()
def workdir(tmp_path, templates):
    """A repository folder for the parameter checks: data/ as tracked (instrument and counts tables) and the
    templates in data/pysm, as a user who fetched them has."""
    shutil.copytree(REPO / "data", tmp_path / "data", ignore=shutil.ignore_patterns("pysm"))
    shutil.copytree(templates[0], tmp_path / "data" / "pysm")
    return tmp_path


def check(params, workdir):
    """The check every CENN stage starts with (CennSetup.from_params), in ``workdir`` as the repository."""
    validate_params(params, REPO / "conf", experiment="cenn", workdir=workdir)


@pytest.mark.parametrize(
    "overrides",
    [["foregrounds=pysm"], ["foregrounds@unseen_foregrounds=pysm"]],
    ids=["training", "unseen"],
)
def test_the_composed_pysm_sky_is_valid_with_its_templates(overrides, workdir, monkeypatch):
    """The real Hydra composition with foregrounds=pysm (or as the unseen sky) passes every check of the CENN
    experiment once data/pysm holds the templates."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    params = compose(*overrides)
    sky = "foregrounds" if overrides[0].startswith("foregrounds=") else "unseen_foregrounds"
    assert params[sky]["model"] == "pysm" and params[sky]["pysm"]["presets"] == ["d1", "s1"]
    check(params, workdir)


def test_a_missing_template_is_refused_by_the_params_check_in_one_line(workdir, monkeypatch):
    """`cmbml params check` (and every CENN stage, which validates the file first): the one problem names the
    block, the preset, the file in the repository's data/pysm and where to read how to fetch it."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    (workdir / "data" / "pysm" / "pysm_2" / "synch_beta.fits").unlink()
    with pytest.raises(ParamError) as err:
        check(PYSM, workdir)
    assert err.value.problems == [
        "foregrounds.pysm: preset s1 needs data/pysm/pysm_2/synch_beta.fits, not found: fetch the templates once "
        "(docs/cenn.md: PySM skies)"
    ]


@pytest.mark.parametrize(
    "dotted, value, expected",
    [
        ("foregrounds.pysm.presets", ["d1", "s01"], "foregrounds.pysm.presets[1] = 's01': allowed values are d0, d1"),
        ("foregrounds.pysm.presets", ["d9"], "foregrounds.pysm.presets[0] = 'd9': allowed values are"),
        ("foregrounds.pysm.presets", ["d1", "d0"], "foregrounds.pysm.presets[1] = 'd0': 'd1' already gives the dust"),
        ("foregrounds.pysm.preset", ["d1"], "foregrounds.pysm.preset: unknown key (did you mean presets?)"),
        ("foregrounds.pysm.nside", 100, "foregrounds.pysm.nside = 100: allowed powers of two"),
        ("foregrounds.pysm.data_dir", "reports/pysm", "foregrounds.pysm.data_dir = 'reports/pysm': allowed a folder"),
        ("foregrounds.pysm", KeyError, "foregrounds.pysm: missing; model pysm needs it"),
    ],
    ids=["misspelt", "unsupported", "two-dusts", "misspelt-key", "nside", "outside-data", "no-block"],
)
def test_a_wrong_pysm_block_is_refused_naming_the_key(dotted, value, expected, workdir, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    from tests.unit.common.test_param_checks import _set

    params = _set(PYSM, dotted, value)
    with pytest.raises(ParamError) as err:
        check(params, workdir)
    assert any(line.startswith(expected) for line in err.value.problems), err.value.problems
