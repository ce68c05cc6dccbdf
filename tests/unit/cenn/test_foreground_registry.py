"""The foreground component registry: each component has its parameter model, its check and an explicit random
stream of its own, so that adding one changes no other component's sky and shares no random numbers with it."""

from __future__ import annotations

import subprocess
import sys
from typing import ClassVar

import healpy as hp
import numpy as np
import pytest
from pydantic import Field, ValidationError

from cmbml.cenn.foregrounds import (
    COMPONENT_STREAMS,
    COMPONENTS,
    MODEL_STREAMS,
    DiffuseComponent,
    DiffuseParams,
    PointSourceComponent,
    SkyDraw,
    SpectralParameter,
    channel_parts,
    foreground_sky,
    galactic_profile,
    load_source_counts,
    synchrotron_sed_rj,
)
from cmbml.common.params import Checker
from tests.conftest import REPO, compose

FG, NG = compose()["foregrounds"], compose("foregrounds=nongaussian")["foregrounds"]
NSIDE, SEED = 32, 7


class DummySources(PointSourceComponent):
    """A second radio population (the radio block's parameters) on a stream of its own."""

    name: ClassVar[str] = "dummy_sources"
    stream: ClassVar[int] = 4


class DummyDiffuse(DiffuseComponent):
    """A second synchrotron-like sky (the synchrotron block's parameters) on streams of its own."""

    name: ClassVar[str] = "dummy_diffuse"
    stream: ClassVar[int] = 5
    spectral_parameters: ClassVar[tuple[SpectralParameter, ...]] = (
        SpectralParameter("beta_dummy", "beta", "beta_scatter", stream=3),
    )

    class Params(DiffuseParams):
        beta: float = Field(ge=-6.0, le=6.0)
        beta_scatter: float = Field(ge=0.0, le=0.5)

    @staticmethod
    def sed_rj(freq_ghz, p, values):
        return synchrotron_sed_rj(freq_ghz, p["ref_GHz"], values["beta"])


# Each dummy copies the block of an existing component, its twin: on the twin's stream it would repeat the twin's sky.
DUMMIES = [(DummySources, "radio"), (DummyDiffuse, "synchrotron")]


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Correlation coefficient of two maps multipole by multipole, ``C_ab / sqrt(C_aa C_bb)``, averaged over
    10 <= ell < 3 nside with weights 2 ell + 1: 1 for one sky drawn twice; for independent skies at nside 32 its
    rms over seeds is 0.005-0.02 (the latitude-modulated, non-Gaussian skies have the fewest independent modes),
    so 0.1 is five times the worst chance level and a tenth of a shared stream's."""
    c_ab, c_aa, c_bb = hp.anafast(a, b), hp.anafast(a), hp.anafast(b)
    ell = np.arange(10, 3 * NSIDE)
    return float(np.sum((2 * ell + 1) * c_ab[ell] / np.sqrt(c_aa[ell] * c_bb[ell])) / np.sum(2 * ell + 1))


@pytest.mark.parametrize("dummy, twin", DUMMIES, ids=[c.name for c, _ in DUMMIES])
@pytest.mark.parametrize("fg", [FG, NG], ids=["gaussian", "nongaussian"])
def test_a_new_component_gets_its_own_stream(dummy, twin, fg):
    """With a dummy registered (the block of an existing component): every existing component's map and spectral
    parameter is unchanged, bit for bit, and the dummy's map is uncorrelated with each of them. Drawn on its twin's
    stream instead (what an id from its position in a list would give), it would repeat its twin's sky exactly."""
    counts = load_source_counts(fg, REPO / "data")
    before_sky = foreground_sky(fg, NSIDE, SEED, counts)
    before = dict(channel_parts(fg, before_sky, NSIDE, 100.0))
    with_dummy = {**fg, dummy.name: dict(fg[twin])}
    COMPONENTS.register(dummy)
    try:
        counts = load_source_counts(with_dummy, REPO / "data")
        sky = foreground_sky(with_dummy, NSIDE, SEED, counts)
        after = dict(channel_parts(with_dummy, sky, NSIDE, 100.0))
        profile = galactic_profile(NSIDE) if fg["galactic_profile"] == "cosecant" else 1.0
        rng = np.random.default_rng([SEED, COMPONENT_STREAMS, MODEL_STREAMS[fg["model"]], COMPONENTS[twin].stream])
        on_twins_stream = dummy.draw(with_dummy[dummy.name], SkyDraw(NSIDE, fg["model"], profile, {}, counts), rng)
    finally:
        COMPONENTS.unregister(dummy.name)
    assert list(after) == [*before, dummy.name]  # appended: summed after the existing components
    for name in before:
        np.testing.assert_array_equal(after[name], before[name])
        assert abs(correlation(after[dummy.name][0], after[name][0])) < 0.1, name
    assert sky.spectral.keys() - before_sky.spectral.keys() == {sp.key for sp in dummy.spectral_parameters}
    for key, value in before_sky.spectral.items():
        np.testing.assert_array_equal(sky.spectral[key], value)
    twins = sky.catalogues[twin]["theta"] if issubclass(dummy, PointSourceComponent) else sky.galactic[twin]
    mine = on_twins_stream["theta"] if issubclass(dummy, PointSourceComponent) else on_twins_stream
    np.testing.assert_array_equal(mine, twins)


def test_a_stream_id_or_spectral_stream_already_taken_is_refused():
    names = COMPONENTS.names()

    class OnRadiosStream(PointSourceComponent):
        name: ClassVar[str] = "late_sources"
        stream: ClassVar[int] = 2

    class OnBetaDustStream(DummyDiffuse):
        name: ClassVar[str] = "late_diffuse"
        stream: ClassVar[int] = 9
        spectral_parameters: ClassVar[tuple[SpectralParameter, ...]] = (
            SpectralParameter("beta_late", "beta", "beta_scatter", stream=0),
        )

    class SameKey(OnBetaDustStream):
        spectral_parameters: ClassVar[tuple[SpectralParameter, ...]] = (
            SpectralParameter("beta_dust", "beta", "beta_scatter", stream=9),
        )

    with pytest.raises(ValueError, match="stream 2 is already radio's"):
        COMPONENTS.register(OnRadiosStream)
    with pytest.raises(ValueError, match="takes stream 0, already dust.beta_dust's"):
        COMPONENTS.register(OnBetaDustStream)
    with pytest.raises(ValueError, match="'beta_dust' is already dust's"):
        COMPONENTS.register(SameKey)
    with pytest.raises(ValueError, match="registered twice"):
        COMPONENTS.register(COMPONENTS["dust"])
    assert COMPONENTS.names() == names


def test_the_existing_components_keep_their_streams():
    """The ids each component drew from before they were explicit: changing one changes every sky."""
    assert {n: c.stream for n, c in COMPONENTS.items()} == {"dust": 0, "synchrotron": 1, "radio": 2, "infrared": 3}
    assert {sp.key: sp.stream for c in COMPONENTS.items() for sp in c[1].spectral_parameters} == {
        "beta_dust": 0,
        "T_dust_K": 1,
        "beta_synchrotron": 2,
    }


@pytest.mark.parametrize("overrides", [[], ["foregrounds=nongaussian"]], ids=["gaussian", "nongaussian"])
def test_the_shipped_blocks_pass_their_params_and_checks(overrides):
    params = compose(*overrides)
    c = Checker(params, workdir=REPO)
    for block in ("foregrounds", "unseen_foregrounds"):
        for name, comp in COMPONENTS.items():
            comp.Params(**params[block][name])
            comp.check(c, f"{block}.{name}", params["paths"]["cenn"]["data_dir"])
    assert c.problems == []


@pytest.mark.parametrize(
    "name, change, message",
    [
        ("dust", {"beta": "1.5"}, "valid number"),
        ("dust", {"beta": True}, "valid number"),
        ("dust", {"T_dust_K": 0.5}, "greater than or equal to 1"),
        ("synchrotron", {"betta": -3.0}, "Extra inputs are not permitted"),
        ("synchrotron", {"template": ""}, "at least 1 character"),
        ("radio", {"s_max_Jy": 0.001}, "must lie above s_min_Jy"),
        ("infrared", {"pol_sigma": -1.0}, "greater than or equal to 0"),
    ],
)
def test_params_refuse_wrong_types_ranges_and_keys(name, change, message):
    with pytest.raises(ValidationError, match=message):
        COMPONENTS[name].Params(**{**FG[name], **change})


def test_checks_report_missing_files_cuts_outside_the_table_and_the_models_needs():
    params = compose()
    fg = params["foregrounds"]
    fg["model"] = "nongaussian"  # the Gaussian blocks lack the non-Gaussian keys
    fg["dust"]["template"] = "no_such_dust.fits"
    fg["radio"]["s_max_Jy"] = 1e4
    c = Checker(params, workdir=REPO)
    for name, comp in COMPONENTS.items():
        comp.check(c, f"foregrounds.{name}", "data")
    text = "\n".join(c.problems)
    assert "foregrounds.dust.ln_intensity_sigma: missing; the nongaussian model needs it" in text
    assert "foregrounds.synchrotron.angle_sigma_deg: missing" in text
    assert "foregrounds.dust.template = 'no_such_dust.fits': no such file" in text
    assert "foregrounds.radio.counts_table" in text and "outside the table" in text
    assert "infrared" not in text


def test_the_module_imports_without_tensorflow_or_healpy():
    code = (
        "import sys, cmbml.cenn.foregrounds; "
        "print(sorted(m for m in ('tensorflow', 'keras', 'healpy') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert out.stdout.strip() == "[]"
