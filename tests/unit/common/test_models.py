"""Networks: the CENN architecture, the lensing CNN family and standardisation inside the model."""

import os

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from cmbml.cenn.networks import cenn_network, leaky_relu
from cmbml.common.networks import count_parameters, with_standardisation
from cmbml.lensing.networks import lensing_cnn


def test_cenn_matches_the_published_architecture():
    """Conv 8/16/64/128 with kernels 9/9/7/7 and stride 2, transposed convolutions with
    concatenated skips, LeakyReLU 0.2 (as max(x, 0.2 x)): about 1.0 M parameters (science notes)."""
    model = cenn_network(3)
    convs = [model.get_layer(f"conv{i}") for i in range(1, 5)]
    assert [c.filters for c in convs] == [8, 16, 64, 128]
    assert [c.kernel_size[0] for c in convs] == [9, 9, 7, 7] and all(c.strides == (2, 2) for c in convs)
    assert 0.95e6 < count_parameters(model) < 1.1e6
    assert {layer.name for layer in model.layers} >= {"skip1", "skip2", "skip3"}
    slopes = [layer for layer in model.layers if isinstance(layer, keras.layers.Rescaling)]
    leaky = [layer for layer in model.layers if isinstance(layer, keras.layers.Maximum)]
    assert len(leaky) == len(slopes) == 7 and all(abs(float(layer.scale) - 0.2) < 1e-6 for layer in slopes)


def test_leaky_relu_from_built_in_layers_equals_keras_leaky_relu():
    """max(x, 0.2 x) is LeakyReLU(0.2) in value, also for tiny, huge and zero inputs."""
    x = np.concatenate([np.random.default_rng(0).standard_normal(1000), [0.0, -0.0, 1e-38, -1e-38, 3e38, -3e38]])
    x = x.astype(np.float32).reshape(1, -1)
    inputs = keras.Input((x.shape[1],))
    built = keras.Model(inputs, leaky_relu(inputs, 0.2, "act")).predict(x, verbose=0)
    reference = keras.layers.LeakyReLU(negative_slope=0.2)(x)
    assert np.array_equal(built, np.asarray(reference))


def test_cenn_fit_leaves_grappler_remapper_working():
    """With oneDNN on (the default on recent x86 CPUs), Conv2D + BiasAdd + LeakyRelu made Grappler's remapper
    fail on every CENN fit ("remapper failed: ... LeakyReluGrad exist for missing node .../BiasAdd")."""
    import subprocess
    import sys

    from tests.conftest import REPO

    script = (
        "import numpy as np; from cmbml.cenn.networks import cenn_network; m = cenn_network(3); "
        "m.compile('adam', 'mse'); x = np.random.default_rng(0).standard_normal((4, 32, 32, 3)).astype('float32'); "
        "m.fit(x, x[..., :1], batch_size=2, epochs=1, verbose=0); print('fitted')"
    )
    env = {**os.environ, "TF_ENABLE_ONEDNN_OPTS": "1", "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": str(REPO / "src")}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0 and "fitted" in out.stdout, out.stderr
    assert "remapper failed" not in out.stderr, out.stderr


@pytest.mark.parametrize("npix", [32, 64, 256])
def test_cenn_is_size_agnostic(npix):
    model = cenn_network(3)
    out = model.predict(np.zeros((1, npix, npix, 3), dtype=np.float32), verbose=0)
    assert out.shape == (1, npix, npix, 1)


def test_lensing_cnn_output_can_be_negative():
    """The original's ReLU output clipped negative kappa; the output layer here is linear."""
    model = lensing_cnn(16, [8, 8], [3, 3], 3)
    assert model.get_layer("kappa_out").activation.__name__ == "linear"
    out = model.predict(np.random.default_rng(0).standard_normal((4, 16, 16, 1)).astype(np.float32), verbose=0)
    assert (out < 0).any() and (out > 0).any()


def test_standardisation_travels_with_the_model(tmp_path):
    """A core trained on standardised data, wrapped, maps physical input to physical output and
    survives a save/load round trip."""
    core = keras.Sequential(
        [keras.Input((8, 8, 2)), keras.layers.Conv2D(1, 1, use_bias=False, kernel_initializer="ones")]
    )
    model = with_standardisation(core, [10.0, -5.0], [2.0, 4.0], 3.0, 0.5)
    x = np.zeros((1, 8, 8, 2), dtype=np.float32)
    x[..., 0], x[..., 1] = 12.0, -1.0  # standardised: 1 and 1 -> core sums to 2 -> 2 * 0.5 + 3 = 4
    assert model.predict(x, verbose=0) == pytest.approx(4.0, abs=1e-5)
    model.save(tmp_path / "m.keras")
    assert keras.models.load_model(tmp_path / "m.keras").predict(x, verbose=0) == pytest.approx(4.0, abs=1e-5)


def test_a_model_file_loads_with_the_card_beside_it(tmp_path):
    import json

    from stages.model_registry import load_model

    core = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(1, 1)], name="core")
    model = with_standardisation(core, 1.0, 2.0, 0.0, 1.0)
    model.save(tmp_path / "model.keras")
    with pytest.raises(FileNotFoundError, match="no model_card.json beside it"):
        load_model(str(tmp_path / "model.keras"))
    (tmp_path / "model_card.json").write_text(json.dumps({"experiment": "lensing"}))
    net, card = load_model(str(tmp_path / "model.keras"))
    assert card == {"experiment": "lensing"}
    x = np.ones((1, 8, 8, 1), np.float32)
    np.testing.assert_allclose(net.predict(x, verbose=0), model.predict(x, verbose=0))
    with pytest.raises(FileNotFoundError, match="not a model"):
        load_model(str(tmp_path / "model_card.json"))


def test_nothing_loaded_runs_code_from_the_model(tmp_path):
    """A Lambda layer holds serialised Python; safe loading refuses it rather than run it."""
    import json

    from stages.model_registry import load_model

    inputs = keras.Input((4,))
    keras.Model(inputs, keras.layers.Lambda(lambda t: t * 2.0)(inputs)).save(tmp_path / "model.keras")
    (tmp_path / "model_card.json").write_text(json.dumps({}))
    with pytest.raises(ValueError, match="safe_mode"):
        load_model(str(tmp_path / "model.keras"))
