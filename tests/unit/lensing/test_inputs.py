"""A lensing network's input channels: T itself, the Wiener-filtered quadratic estimate made from it, the model
card that rebuilds them, and the symmetry that lets training make them after the augmentation."""

import json

import numpy as np
import pytest

from cmbml.common.flatsky import FlatGrid, gaussian_realisation
from cmbml.lensing.inputs import InputMaker
from cmbml.lensing.quadratic_estimator import QuadraticEstimator

GRID = FlatGrid(32, 27.48)
T_LMAX = 383
KAPPA_LMAX = 380
"""Both below the grid's Nyquist multipole (393 for 27.48' pixels), as in lensing v1-v4."""


@pytest.fixture(scope="module")
def estimator(camb_cls):
    return QuadraticEstimator.from_spectra(GRID, camb_cls["cl_tt_lensed"], 0.0, T_LMAX)


@pytest.fixture(scope="module")
def maker(estimator, camb_cls):
    """T and kappa_qe, with the kappa power on the grid as the stages give it (band-limited, per shell)."""
    assert max(T_LMAX, KAPPA_LMAX) < GRID.ell_nyquist
    return InputMaker.for_sky(("T", "kappa_qe"), estimator, GRID.cl_on_grid(camb_cls["cl_kk"], KAPPA_LMAX))


@pytest.fixture(scope="module")
def t_maps(camb_cls):
    """Three Gaussian T maps (uK) with the lensed spectrum to T_lmax."""
    rng = np.random.default_rng(7)
    cl = GRID.cl_on_grid(camb_cls["cl_tt_lensed"], T_LMAX)
    return np.stack([gaussian_realisation(GRID, cl, rng) for _ in range(3)])


def test_t_channel_is_the_t_maps_as_float32_with_a_channel_axis(t_maps):
    """InputMaker(("T",)) gives (N, n, n, 1) float32 equal to the maps; from (N, n, n, 1) maps too; not derived."""
    maker = InputMaker(("T",))
    assert not maker.derived
    out = maker(t_maps)
    assert out.shape == (3, 32, 32, 1) and out.dtype == np.float32
    np.testing.assert_array_equal(out[..., 0], t_maps.astype(np.float32))
    np.testing.assert_array_equal(maker(t_maps[..., None]), out)


def test_kappa_qe_channel_follows_t_in_the_given_order_and_is_derived(maker, t_maps, estimator):
    """Channels stack in the order named: T first, then the Wiener-filtered estimate of kappa (not zero)."""
    assert maker.derived
    out = maker(t_maps)
    assert out.shape == (3, 32, 32, 2) and out.dtype == np.float32
    np.testing.assert_array_equal(out[..., 0], t_maps.astype(np.float32))
    assert np.all(np.isfinite(out[..., 1])) and np.abs(out[..., 1]).max() > 0
    swapped = InputMaker(("kappa_qe", "T"), maker.estimator, maker.cl_kk)(t_maps)
    np.testing.assert_array_equal(swapped, out[..., ::-1])


def test_unknown_channel_is_refused():
    with pytest.raises(ValueError, match="unknown input channel"):
        InputMaker(("T", "E"))


def test_kappa_qe_without_an_estimator_or_kappa_power_is_refused(estimator):
    with pytest.raises(ValueError, match="needs the quadratic estimator"):
        InputMaker(("T", "kappa_qe"))
    with pytest.raises(ValueError, match="needs the quadratic estimator"):
        InputMaker.for_sky(("T", "kappa_qe"), None, np.ones((32, 32)))
    with pytest.raises(ValueError, match="needs the quadratic estimator"):
        InputMaker(("T", "kappa_qe"), estimator, None)


def test_card_is_json_and_rebuilds_identical_channels(maker, t_maps):
    """to_card goes through json.dumps/json.loads and from_card makes bit-identical channels on the same maps."""
    card = json.loads(json.dumps(maker.to_card()))
    assert card["channels"] == ["T", "kappa_qe"] and set(card["meaning"]) == {"T", "kappa_qe"}
    rebuilt = InputMaker.from_card(card)
    assert rebuilt.channels == maker.channels
    np.testing.assert_array_equal(rebuilt(t_maps), maker(t_maps))


def test_t_only_card_has_no_estimator_and_round_trips(t_maps):
    card = json.loads(json.dumps(InputMaker(("T",)).to_card()))
    assert "estimator" not in card and "cl_kk" not in card
    rebuilt = InputMaker.from_card(card)
    assert rebuilt.channels == ("T",) and rebuilt.estimator is None
    np.testing.assert_array_equal(rebuilt(t_maps), t_maps[..., None].astype(np.float32))


SYMMETRIES = [(1, False), (2, False), (3, False), (0, True), (1, True), (2, True), (3, True)]
"""The 7 symmetries of the square other than the identity: (quarter turns, then a flip)."""


def symmetry(k, flip):
    def g(a):
        a = np.rot90(a, k, axes=(1, 2))
        return np.flip(a, axis=2) if flip else a

    return g


@pytest.mark.parametrize("k, flip", SYMMETRIES)
def test_kappa_qe_is_covariant_under_the_symmetries_of_the_square(maker, t_maps, k, flip):
    """channel(g T) = g channel(T) to 1e-6 of the channel's scale for every rotation by 90 degrees and flip
    (T and kappa band-limited below the Nyquist multipole): the estimator is isotropic on the periodic grid,
    so the channel H5Batches makes after rotating T is the rotated channel of T."""
    g = symmetry(k, flip)
    channel = maker(t_maps)[..., 1]
    moved = maker(np.ascontiguousarray(g(t_maps)))[..., 1]
    assert not np.allclose(g(channel), channel)  # the symmetry moves the map: the check is not trivial
    np.testing.assert_allclose(moved, g(channel), rtol=0, atol=1e-6 * np.abs(channel).max())


@pytest.mark.parametrize("k, flip", [(1, False), (0, True)])
def test_kappa_qe_is_covariant_when_t_reaches_the_nyquist_multipole(camb_cls, k, flip):
    """As above with T_lmax null (every grid mode of T, as lensing v6-v8) and kappa band-limited at 50 (v8): the
    estimator leaves out the Nyquist row and column of T, whose wavevector's sign is ambiguous, so the channel
    stays covariant (with them it moved by 0.6 % of its maximum)."""
    estimator = QuadraticEstimator.from_spectra(GRID, camb_cls["cl_tt_lensed"], 0.0, None)
    maker = InputMaker.for_sky(("kappa_qe",), estimator, GRID.cl_on_grid(camb_cls["cl_kk"], 50))
    rng = np.random.default_rng(7)
    cl = GRID.cl_on_grid(camb_cls["cl_tt_lensed"])
    t_maps = np.stack([gaussian_realisation(GRID, cl, rng) for _ in range(3)])
    g = symmetry(k, flip)
    channel = maker(t_maps)[..., 0]
    moved = maker(np.ascontiguousarray(g(t_maps)))[..., 0]
    np.testing.assert_allclose(moved, g(channel), rtol=0, atol=1e-6 * np.abs(channel).max())
