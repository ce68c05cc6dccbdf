"""The CENN architectures that work in E and B: fixed Fourier layers made of built-in Keras layers.

Facts checked: the layers' E and B maps are the flat-sky E and B modes of NaMaster's convention (the ones the
Wiener filter and the spectra use); the inverse returns Q and U exactly; a pure-E sky has no B; the network
that uses them learns only its CENN layers and loads in safe mode; Q and U are standardised as one spin-2 field.
"""

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from cmbml.cenn.baselines import harmonic_modes, maps_from_modes
from cmbml.cenn.fourier_layers import spin_fourier, spin_rotation
from cmbml.cenn.networks import ARCHITECTURES, spin2_statistics
from cmbml.common.flatsky import FlatGrid

NPIX, PAIRS = 32, 3


def _transform(inverse: bool, pairs: int = PAIRS) -> keras.Model:
    inputs = keras.Input((NPIX, NPIX, 2 * pairs))
    return keras.Model(inputs, spin_fourier(inputs, NPIX, pairs, inverse=inverse, name="t"))


def _off_nyquist() -> np.ndarray:
    keep = np.ones((NPIX, NPIX), dtype=bool)
    keep[NPIX // 2, :] = keep[:, NPIX // 2] = False
    return keep


def test_the_layers_give_the_flat_sky_e_and_b_modes_of_the_wiener_filter():
    """Off the Nyquist row and column (where a real map's wavevector has no sign) the layers' E and B maps have
    the Fourier modes of ``harmonic_modes``, NaMaster's convention, to float32 round-off."""
    rng = np.random.default_rng(1)
    q_u = rng.normal(size=(3, NPIX, NPIX, 2 * PAIRS)).astype(np.float32)
    e_b = _transform(False).predict(q_u, verbose=0)
    modes = harmonic_modes(
        {"Q": q_u[..., :PAIRS].astype(float), "U": q_u[..., PAIRS:].astype(float)}, FlatGrid(NPIX, 6.0)
    )
    keep = _off_nyquist()
    for k, spectrum in enumerate("EB"):
        got = np.fft.fft2(e_b[..., k * PAIRS : (k + 1) * PAIRS], axes=(1, 2))
        scale = np.abs(modes[spectrum]).max()
        assert np.abs(got - modes[spectrum])[:, keep].max() < 1e-5 * scale


def test_the_inverse_returns_q_and_u_and_the_rotation_is_orthogonal():
    rng = np.random.default_rng(2)
    q_u = rng.normal(size=(2, NPIX, NPIX, 2 * PAIRS)).astype(np.float32)
    e_b = _transform(False).predict(q_u, verbose=0)
    np.testing.assert_allclose(_transform(True).predict(e_b, verbose=0), q_u, atol=2e-5)
    # Orthogonal per mode: the total power of E and B is that of Q and U (Parseval).
    assert np.sum(e_b.astype(float) ** 2) == pytest.approx(np.sum(q_u.astype(float) ** 2), rel=1e-5)
    c, s = spin_rotation(NPIX)
    np.testing.assert_allclose(c**2 + s**2, 1.0, atol=1e-12)


def test_a_pure_e_sky_has_no_b_and_e_only_outputs_are_pure_e():
    """Q and U made from an E field alone give B maps at round-off, and an output with B = 0 is pure E."""
    grid = FlatGrid(NPIX, 6.0)
    rng = np.random.default_rng(3)
    e_map = rng.normal(size=(2, NPIX, NPIX, 1))
    e_modes = np.fft.fft2(e_map, axes=(1, 2))
    e_modes[:, NPIX // 2, :] = e_modes[:, :, NPIX // 2] = 0  # a real map's Nyquist modes carry no spin-2 angle
    q_u = maps_from_modes({"E": e_modes, "B": np.zeros_like(e_modes)}, grid)
    x = np.concatenate([q_u["Q"], q_u["U"]], axis=-1).astype(np.float32)
    e_b = _transform(False, pairs=1).predict(x, verbose=0)
    assert np.abs(e_b[..., 1]).max() < 1e-5 * np.abs(e_b[..., 0]).max()
    np.testing.assert_allclose(e_b[..., 0], np.fft.ifft2(e_modes[..., 0], axes=(1, 2)).real, atol=1e-4)


def test_the_eb_network_learns_only_its_cenn_layers_and_loads_in_safe_mode(tmp_path):
    eb, original = ARCHITECTURES["eb"], ARCHITECTURES["original"]
    model = eb.build(eb.Params(), n_channels=2 * PAIRS, l2=1e-6, n_outputs=2, npix=NPIX)
    reference = original.build(original.Params(), n_channels=2 * PAIRS, l2=1e-6, n_outputs=2)
    assert model.count_params() > reference.count_params()  # the fixed Fourier weights are saved with it
    assert sum(int(np.prod(w.shape)) for w in model.trainable_weights) == sum(
        int(np.prod(w.shape)) for w in reference.trainable_weights
    )
    path = tmp_path / "eb.keras"
    model.save(path)
    loaded = keras.models.load_model(path, safe_mode=True)
    x = np.random.default_rng(4).normal(size=(2, NPIX, NPIX, 2 * PAIRS)).astype(np.float32)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)


def test_the_e_only_eb_network_returns_pure_e_and_loads_in_safe_mode(tmp_path):
    """With ``b_modes = zero`` the output's B maps vanish (off the Nyquist row and column, where a real map's
    wavevector has no spin-2 angle) whatever the input, and the model loads in safe mode."""
    eb = ARCHITECTURES["eb"]
    model = eb.build(eb.Params(b_modes="zero"), n_channels=2 * PAIRS, l2=1e-6, n_outputs=2, npix=NPIX)
    x = np.random.default_rng(5).normal(size=(2, NPIX, NPIX, 2 * PAIRS)).astype(np.float32)
    model.get_layer("deconv6").set_weights([w + 0.1 for w in model.get_layer("deconv6").get_weights()])
    q_u = model.predict(x, verbose=0)
    modes = harmonic_modes({"Q": q_u[..., :1].astype(float), "U": q_u[..., 1:].astype(float)}, FlatGrid(NPIX, 6.0))
    keep = _off_nyquist()
    assert np.abs(modes["E"][:, keep]).max() > 0
    assert np.abs(modes["B"][:, keep]).max() < 1e-5 * np.abs(modes["E"][:, keep]).max()
    path = tmp_path / "eb_e_only.keras"
    model.save(path)
    np.testing.assert_allclose(keras.models.load_model(path, safe_mode=True).predict(x, verbose=0), q_u, atol=1e-6)


def test_the_eb_network_refuses_what_is_not_q_and_u():
    eb = ARCHITECTURES["eb"]
    with pytest.raises(ValueError, match="use it with cenn=QU"):
        eb.build(eb.Params(), n_channels=3, l2=1e-6, n_outputs=1, npix=NPIX)


def test_q_and_u_share_one_scale_per_frequency_and_no_offset():
    """A quarter turn maps Q to -Q and U to -U, a flip U to -U: a standardisation that keeps the field spin-2
    has zero offsets and one scale per (Q, U) pair, the rms of both."""
    means, stds = spin2_statistics([1.0, 2.0, -1.0, 0.0], [3.0, 4.0, 5.0, 6.0], ("Q", "U"))
    assert means == [0.0] * 4
    expected = [np.sqrt((3**2 + 1 + 5**2 + 1) / 2), np.sqrt((4**2 + 4 + 6**2) / 2)]
    np.testing.assert_allclose(stds, expected + expected)
    assert spin2_statistics([1.0, 2.0, 3.0], [4.0, 5.0, 6.0], ("E",)) == ([1.0, 2.0, 3.0], [4.0, 5.0, 6.0])


def _wiener_filter(components, npix=NPIX):
    """A Wiener filter of three channels with different beams, white noise and a red foreground."""
    from cmbml.cenn.baselines import WienerFilter

    grid = FlatGrid(npix, 6.0)
    ell = np.arange(4000.0)
    response = np.stack([np.exp(-(ell**2) * s**2 / 2) for s in (1e-3, 5e-4, 0.0)])
    cl = 1e-4 / (1 + (ell / 300) ** 2)
    nuisance_cl = 1e-5 * (1 + (200 / np.maximum(ell, 1)) ** 2)
    unit = grid.npix**2 / grid.dx**2
    mixing = np.array([[1.0, 0.5, 0.2], [0.5, 1.0, 0.5], [0.2, 0.5, 1.0]])
    spectra = ("E", "B") if components == ("Q", "U") else components
    nuisance = {
        s: grid.cl_on_grid(nuisance_cl * (1 if s == "E" else 0.5))[..., None, None] * unit * mixing
        + 1e-6 * unit * np.eye(3)
        for s in spectra
    }
    return WienerFilter.build(grid, {s: cl * (1 if s == "E" else 0.1) for s in ("E", "B")}, response, nuisance), grid


@pytest.mark.parametrize("components", [("E",), ("Q", "U")])
def test_the_fourier_filter_applies_the_wiener_filter_inside_the_network(components):
    """The fixed layers give the Wiener filter's own estimate (inputs without Nyquist modes, where the two
    conventions agree), and the standardised version of the filter on standardised maps gives the same."""
    from cmbml.cenn.fourier_layers import fourier_filter, standardised_filter

    wiener, grid = _wiener_filter(components)
    rng = np.random.default_rng(5)
    maps = rng.normal(size=(2, NPIX, NPIX, 3 * len(components)))
    modes = np.fft.fft2(maps, axes=(1, 2))
    modes[:, NPIX // 2, :] = modes[:, :, NPIX // 2] = 0
    maps = np.fft.ifft2(modes, axes=(1, 2)).real
    split = {c: maps[..., 3 * k : 3 * (k + 1)] for k, c in enumerate(components)}
    expected = np.stack([wiener.apply(split)[c] for c in components], axis=-1)
    inputs = keras.Input((NPIX, NPIX, 3 * len(components)))
    matrix = wiener.mode_matrix()
    plain = keras.Model(inputs, fourier_filter(inputs, matrix, name="w"))
    np.testing.assert_allclose(
        plain.predict(maps.astype(np.float32), verbose=0), expected, atol=2e-5 * np.abs(expected).max()
    )
    k = 3 * len(components)
    x_stats, y_stats = (
        (rng.normal(size=k), rng.uniform(1, 2, k)),
        (rng.normal(size=len(components)), rng.uniform(1, 2, len(components))),
    )
    weights, offset = standardised_filter(matrix, x_stats, y_stats)
    std_model = keras.Model(inputs, fourier_filter(inputs, weights, offset, name="s"))
    shifted = maps + x_stats[0]  # maps with the channel means added, then standardised
    x_std = (shifted - x_stats[0]) / x_stats[1]
    got = std_model.predict(x_std.astype(np.float32), verbose=0) * y_stats[1] + y_stats[0]
    direct = plain.predict(shifted.astype(np.float32), verbose=0)
    np.testing.assert_allclose(got, direct, atol=2e-5 * np.abs(direct).max())


@pytest.mark.parametrize("components", [("E",), ("Q", "U")])
def test_the_untrained_wiener_informed_network_is_the_wiener_filter(components, tmp_path):
    from cmbml.cenn.fourier_layers import fourier_filter, standardised_filter

    wiener, _ = _wiener_filter(components)
    k = 3 * len(components)
    linear = standardised_filter(
        wiener.mode_matrix(), (np.zeros(k), np.ones(k)), (np.zeros(len(components)), np.ones(len(components)))
    )
    arch = ARCHITECTURES["wiener_informed"]
    model = arch.build(arch.Params(), n_channels=k, l2=1e-6, n_outputs=len(components), npix=NPIX, linear_filter=linear)
    inputs = keras.Input((NPIX, NPIX, k))
    filter_only = keras.Model(inputs, fourier_filter(inputs, *linear, name="ref"))
    x = np.random.default_rng(6).normal(size=(2, NPIX, NPIX, k)).astype(np.float32)
    np.testing.assert_allclose(model.predict(x, verbose=0), filter_only.predict(x, verbose=0), atol=1e-5)
    model.save(tmp_path / "informed.keras")
    loaded = keras.models.load_model(tmp_path / "informed.keras", safe_mode=True)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)


def _smooth_spin2(npix: int, which: str, seed: int = 7) -> np.ndarray:
    """Q and U (npix, npix, 2) of a smooth pure-E or pure-B field (power only well below the pixel scale)."""
    grid = FlatGrid(npix, 6.0)
    rng = np.random.default_rng(seed)
    modes = np.fft.fft2(rng.normal(size=(1, npix, npix, 1)), axes=(1, 2))
    modes *= np.exp(-((grid.ell / grid.ell.max() * 12) ** 2))[None, :, :, None]
    zero = np.zeros_like(modes)
    q_u = maps_from_modes({"E": modes if which == "E" else zero, "B": modes if which == "B" else zero}, grid)
    return np.concatenate([q_u["Q"], q_u["U"]], axis=-1)[0]


def test_the_qu_loss_is_the_mse_plus_the_weighted_b_mode_power_of_the_error():
    """The loss is the MSE plus the weight times the B-mode power (per pixel) of the tapered error, as
    ``harmonic_modes`` measures it; and it sees B, not E: a pure-E error's B term is a small fraction (the taper's
    leakage) of that of a pure-B error of the same modes."""
    from cmbml.cenn.networks import edge_taper, qu_loss

    assert qu_loss(0.0, NPIX) == "mse"
    grid, window = FlatGrid(NPIX, 6.0), edge_taper(NPIX, NPIX // 8)[..., None]
    loss = qu_loss(10.0, NPIX)
    b_terms = {}
    for which in "EB":
        error = _smooth_spin2(NPIX, which)[None]
        b_modes = harmonic_modes({"Q": error[..., :1] * window, "U": error[..., 1:] * window}, grid)["B"]
        b_terms[which] = np.mean(np.abs(b_modes) ** 2) / NPIX**2
        got = float(loss(np.zeros_like(error), error.astype(np.float32))[0])
        assert got == pytest.approx(np.mean(error**2) + 10 * b_terms[which], rel=1e-3)
    assert b_terms["E"] < 0.15 * b_terms["B"]


def test_a_network_trained_on_the_b_mode_loss_is_saved_as_a_predictor_that_loads_in_safe_mode(tmp_path):
    """The loss is Python code, which safe mode never loads: the saved physical-units model carries the trained
    layers and no training configuration, so it loads with no custom objects and predicts as the trained one."""
    import keras

    from cmbml.cenn.networks import qu_loss
    from cmbml.common.io import write_keras_model
    from cmbml.common.networks import with_standardisation

    core = ARCHITECTURES["eb"].build(ARCHITECTURES["eb"].Params(), n_channels=6, l2=1e-6, n_outputs=2, npix=NPIX)
    core.compile(optimizer="adam", loss=qu_loss(100.0, NPIX))
    x = np.random.default_rng(3).normal(size=(4, NPIX, NPIX, 6)).astype(np.float32)
    core.fit(x, x[..., :2], epochs=1, verbose=0)
    model = with_standardisation(core, [0.0] * 6, [1.0] * 6, [0.0] * 2, [2.0] * 2)
    write_keras_model(model, tmp_path / "b_loss.keras")
    loaded = keras.models.load_model(tmp_path / "b_loss.keras", safe_mode=True)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), 2 * core.predict(x, verbose=0), rtol=1e-5, atol=1e-5)
