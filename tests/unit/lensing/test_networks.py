"""Lensing networks: periodic padding, the ResUNet family (shapes, zero-initialised output, the QE pass-through),
safe-mode saving of every registered architecture, and the parameter checks."""

import numpy as np
import pytest
from pydantic import ValidationError

keras = pytest.importorskip("keras")

from cmbml.lensing.networks import ARCHITECTURES, periodic_margin, periodic_pad

TINY = {"base_filters": 2, "depth": 2, "blocks_per_level": 1, "min_margin_pixels": 4}
"""A ResUNet small enough to build in a second."""

TINY_PARAMS = {
    "original": {"conv_filters": [3, 2], "conv_kernels": [3, 5], "output_kernel": 3},
    "resunet": TINY,
    "resunet_qe": TINY,
}
"""Small parameters of every published lensing architecture (a new one must be added here)."""


def tiny(name):
    arch = ARCHITECTURES[name]
    return arch, arch.Params(**TINY_PARAMS[name])


def random_inputs(npix, n_channels, n=2, seed=0):
    return np.random.default_rng(seed).standard_normal((n, npix, npix, n_channels)).astype(np.float32)


def predict(model, x):
    return keras.ops.convert_to_numpy(model(x, training=False))


@pytest.mark.parametrize("npix, margin", [(5, 1), (5, 3), (5, 5), (8, 2)])
def test_periodic_pad_wraps_the_edges_like_numpy_wrap(npix, margin):
    """periodic_pad equals np.pad(mode="wrap") on (batch, npix, npix, c) maps: an edge pixel's neighbours are the
    pixels across the opposite edge (margins up to the map side)."""
    inputs = keras.Input((npix, npix, 2))
    model = keras.Model(inputs, periodic_pad(inputs, margin, npix, "pad"))
    x = random_inputs(npix, 2, n=3)
    expected = np.pad(x, ((0, 0), (margin, margin), (margin, margin), (0, 0)), mode="wrap")
    got = predict(model, x)
    assert got.shape == (3, npix + 2 * margin, npix + 2 * margin, 2)
    np.testing.assert_array_equal(got, expected)


def test_periodic_pad_with_no_margin_is_the_identity_and_a_margin_over_the_side_is_refused():
    inputs = keras.Input((5, 5, 1))
    assert periodic_pad(inputs, 0, 5, "pad") is inputs
    with pytest.raises(ValueError, match="exceeds the map side"):
        periodic_pad(inputs, 6, 5, "pad")


@pytest.mark.parametrize("npix", [50, 100])
@pytest.mark.parametrize("depth", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("min_margin", [0, 3, 4, 7])
def test_periodic_margin_makes_the_padded_side_halve_depth_times_with_the_least_margin(npix, depth, min_margin):
    """npix + 2 margin is divisible by 2**depth, margin >= min_margin, and no smaller margin does both."""
    margin = periodic_margin(npix, depth, min_margin)
    assert margin >= min_margin
    assert (npix + 2 * margin) % 2**depth == 0
    assert all((npix + 2 * m) % 2**depth for m in range(min_margin, margin))


@pytest.mark.parametrize("name", ["resunet", "resunet_qe"])
@pytest.mark.parametrize("npix", [50, 100])
def test_resunets_map_their_input_channels_to_one_kappa_map_starting_from_exactly_zero(name, npix):
    """(batch, npix, npix, len(inputs)) -> (batch, npix, npix, 1) for npix 50 and 100 (which need different
    periodic margins); the output layer is zero-initialised, so the untrained network predicts exactly 0."""
    arch, params = tiny(name)
    model = arch.build(params, npix)
    assert model.input_shape == (None, npix, npix, len(arch.inputs))
    assert model.output_shape == (None, npix, npix, 1)
    prediction = predict(model, 10.0 * random_inputs(npix, len(arch.inputs), n=3))
    assert prediction.shape == (3, npix, npix, 1)
    np.testing.assert_array_equal(prediction, 0.0)


def test_resunet_qe_output_layer_sees_the_inputs_and_can_pass_kappa_qe_through():
    """With the output kernel set to 1 on the kappa_qe input (the last inputs after the decoder's features)
    and 0 elsewhere, resunet_qe returns its kappa_qe input channel exactly."""
    arch, params = tiny("resunet_qe")
    model = arch.build(params, 50)
    out = model.get_layer("kappa_out")
    kernel, bias = out.get_weights()
    n_inputs = len(arch.inputs)
    assert kernel.shape == (1, 1, params.base_filters + n_inputs, 1)  # full-resolution features, then inputs
    kernel = np.zeros_like(kernel)
    kernel[0, 0, params.base_filters + arch.inputs.index("kappa_qe"), 0] = 1.0
    out.set_weights([kernel, np.zeros_like(bias)])
    x = random_inputs(50, n_inputs, n=2, seed=3)
    np.testing.assert_array_equal(predict(model, x), x[..., arch.inputs.index("kappa_qe")][..., None])


def test_resunet_output_layer_sees_the_decoder_features_only():
    """Without the pass-through the output kernel spans the decoder's full-resolution features alone."""
    arch, params = tiny("resunet")
    kernel = arch.build(params, 50).get_layer("kappa_out").get_weights()[0]
    assert kernel.shape == (1, 1, params.base_filters, 1)


def test_every_registered_architecture_has_tiny_test_parameters():
    """The save/load test below covers every published architecture: a new one must be listed in TINY_PARAMS."""
    assert set(ARCHITECTURES.names()) == set(TINY_PARAMS)


@pytest.mark.parametrize("name", sorted(TINY_PARAMS))
def test_every_architecture_saves_and_loads_in_safe_mode_with_identical_predictions(name, tmp_path):
    """Built-in Keras layers only: the .keras file loads with safe_mode=True and predicts exactly the same (the
    output layer randomised first, so that the predictions are not trivially zero)."""
    arch, params = tiny(name)
    model = arch.build(params, 16, name=f"{name}_saved")
    assert all(type(layer).__module__.startswith("keras.") for layer in model.layers)
    out = model.get_layer("kappa_out")
    rng = np.random.default_rng(1)
    out.set_weights([rng.standard_normal(w.shape).astype(np.float32) for w in out.get_weights()])
    x = random_inputs(16, len(arch.inputs), n=2, seed=2)
    before = predict(model, x)
    assert np.abs(before).max() > 0
    path = tmp_path / f"{name}.keras"
    model.save(path)
    loaded = keras.models.load_model(path, safe_mode=True)
    assert loaded.name == f"{name}_saved"
    for a, b in zip(model.get_weights(), loaded.get_weights()):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(predict(loaded, x), before)


@pytest.mark.parametrize("name", ["resunet", "resunet_qe"])
def test_resunets_need_the_map_side(name):
    """npix=None (a size-agnostic model) is refused with a message naming the architecture and the reason."""
    arch, params = tiny(name)
    with pytest.raises(ValueError, match=f"{name} needs the map side"):
        arch.build(params, None)


@pytest.mark.parametrize("name", sorted(TINY_PARAMS))
def test_params_refuse_an_unknown_key(name):
    with pytest.raises(ValidationError, match="no_such_key"):
        ARCHITECTURES[name].Params(**TINY_PARAMS[name], no_such_key=1)


@pytest.mark.parametrize("name", ["resunet", "resunet_qe"])
def test_resunet_params_refuse_depth_zero(name):
    """depth >= 1: the network halves the resolution at least once."""
    with pytest.raises(ValidationError, match="depth"):
        ARCHITECTURES[name].Params(**{**TINY, "depth": 0})


def test_resunet_params_defaults_are_valid():
    """Every key has a default, so an empty block is a valid network."""
    params = ARCHITECTURES["resunet"].Params()
    assert params.depth >= 1 and params.base_filters >= 1


def test_an_odd_map_side_is_refused_by_the_multi_scale_networks_before_any_compute():
    """A padded side npix + 2 margin has the parity of npix, so an odd side can never halve: periodic_margin
    raises instead of searching forever, and the parameter check names npix."""
    from cmbml.common.params import ParamError
    from cmbml.lensing.networks import periodic_margin
    from cmbml.lensing.setup import LensingSetup
    from tests.conftest import REPO, compose

    with pytest.raises(ValueError, match="even"):
        periodic_margin(49, 2, 4)
    with pytest.raises(ParamError, match=r"npix = 49: lensing_net.architecture = resunet .* must be even"):
        LensingSetup.from_params(compose("lensing=v4", "npix=49", "lensing_net.architecture=resunet"), REPO / "conf")


def test_the_physics_informed_network_starts_at_the_estimators_map_in_physical_units():
    """ResUNetQE.start sets the output layer from the training statistics so that the untrained network, wrapped
    with its standardisation, returns exactly the kappa_qe channel: training starts from the classical answer
    whatever the learning rate (a learning rate of 1e-4 could not grow a zero pass-through weight in a short run)."""
    from cmbml.common.networks import with_standardisation

    arch = ARCHITECTURES["resunet_qe"]
    core = arch.build(arch.Params(base_filters=2, depth=2), 16)
    x_stats, y_stats = ([3.0, 0.01], [80.0, 0.002]), (0.005, 0.03)
    arch.start(core, x_stats, y_stats)
    model = with_standardisation(core, *x_stats, *y_stats)
    rng = np.random.default_rng(0)
    x = np.stack([80 * rng.standard_normal((4, 16, 16)), 0.002 * rng.standard_normal((4, 16, 16))], axis=-1)
    np.testing.assert_allclose(model.predict(x.astype("f4"), verbose=0)[..., 0], x[..., 1], rtol=1e-4, atol=1e-7)
