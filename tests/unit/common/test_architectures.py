"""The architecture registries: a new network is one registered class (a name, a pydantic ``Params`` and
``build``), which the stages build by name and the library fit trains like the published ones."""

from typing import ClassVar

import numpy as np
import pytest
from pydantic import BaseModel, ConfigDict, Field

keras = pytest.importorskip("keras")

from cmbml.cenn.networks import ARCHITECTURES as CENN_ARCHITECTURES
from cmbml.common.config import architecture_params
from cmbml.common.fit import fit
from cmbml.common.networks import make_optimizer
from cmbml.common.training import ArrayBatches
from cmbml.lensing.networks import ARCHITECTURES as LENSING_ARCHITECTURES


class TinyLensing:
    """One linear convolution: lensed T (npix, npix, 1) -> kappa (npix, npix, 1)."""

    name: ClassVar[str] = "tiny_test_lensing"

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid")
        kernel: int = Field(3, ge=1, le=7)

    @staticmethod
    def build(params, npix, name="lensing_cnn"):
        inputs = keras.Input((npix, npix, 1), name="T_lensed")
        outputs = keras.layers.Conv2D(1, params.kernel, padding="same", name="kappa_out")(inputs)
        return keras.Model(inputs, outputs, name=name)


class TinyCenn:
    """One convolution from every frequency channel to the CMB, any patch size, with L2 decay."""

    name: ClassVar[str] = "tiny_test_cenn"

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid")

    @staticmethod
    def build(params, n_channels, l2, name="cenn"):
        inputs = keras.Input((None, None, n_channels), name="M")
        outputs = keras.layers.Conv2D(1, 3, padding="same", kernel_regularizer=keras.regularizers.L2(l2))(inputs)
        return keras.Model(inputs, outputs, name=name)


@pytest.fixture
def registered():
    """Both dummies registered for the test only: the registries are module-level and shared."""
    LENSING_ARCHITECTURES.register(TinyLensing)
    CENN_ARCHITECTURES.register(TinyCenn)
    try:
        yield
    finally:
        LENSING_ARCHITECTURES.unregister(TinyLensing.name)
        CENN_ARCHITECTURES.unregister(TinyCenn.name)


def tiny_arrays(n_channels: int, n: int = 8, npix: int = 16, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.normal(3.0, 2.0, (n, npix, npix, n_channels)).astype(np.float32)
    y = (x.mean(axis=-1, keepdims=True) - 3.0).astype(np.float32)
    return x, y


def fit_one_epoch(core, x, y):
    """Compile as the stages do and fit one epoch on standardised arrays through the library fit."""

    def stats(a):
        return a.mean(axis=(0, 1, 2)).tolist(), a.std(axis=(0, 1, 2)).tolist()

    training = ArrayBatches(x[:6], y[:6], 3, stats(x), stats(y))
    early_stopping = ArrayBatches(x[6:], y[6:], 3, stats(x), stats(y))
    core.compile(optimizer=make_optimizer("adam", 1e-3), loss="mse")
    epochs = []
    fitted = fit(
        core,
        training,
        early_stopping,
        epochs=1,
        patience=1,
        on_epoch_end=lambda epoch, losses: epochs.append((epoch, losses)),
        verbose=0,
    )
    assert fitted.epochs_run == 1 and fitted.best_epoch == 1
    assert [e for e, _ in epochs] == [1] and set(epochs[0][1]) == {"loss", "val_loss"}
    assert epochs[0][1]["val_loss"] == pytest.approx(fitted.best_val_loss)
    prediction = fitted.model.predict(x[:2], verbose=0)  # physical units in, physical units out
    assert prediction.shape == y[:2].shape and np.isfinite(prediction).all()
    return fitted


def test_a_registered_lensing_architecture_is_built_by_name_and_fitted(registered):
    assert TinyLensing.name in LENSING_ARCHITECTURES.names()
    params = architecture_params(
        {"architecture": TinyLensing.name, TinyLensing.name: {"kernel": 5}}, LENSING_ARCHITECTURES
    )
    core = LENSING_ARCHITECTURES[TinyLensing.name].build(params, 16, name="lensing_cnn_test")
    assert core.get_layer("kappa_out").kernel_size == (5, 5)
    fitted = fit_one_epoch(core, *tiny_arrays(1))
    assert fitted.model.name == "lensing_cnn_test_physical"


def test_a_registered_cenn_architecture_is_built_by_name_and_fitted(registered):
    assert TinyCenn.name in CENN_ARCHITECTURES.names()
    params = architecture_params({"architecture": TinyCenn.name}, CENN_ARCHITECTURES)
    core = CENN_ARCHITECTURES[TinyCenn.name].build(params, n_channels=3, l2=1e-6, name="cenn_test")
    fit_one_epoch(core, *tiny_arrays(3))


def test_the_dummies_are_registered_for_their_tests_only():
    assert TinyLensing.name not in LENSING_ARCHITECTURES and TinyCenn.name not in CENN_ARCHITECTURES
    assert "original" in LENSING_ARCHITECTURES and "original" in CENN_ARCHITECTURES


@pytest.mark.parametrize(
    "registry, key",
    [(LENSING_ARCHITECTURES, "lensing_net.architecture"), (CENN_ARCHITECTURES, "cenn_net.architecture")],
)
def test_an_unknown_architecture_is_a_key_error_naming_the_parameter_and_the_known_names(registry, key):
    with pytest.raises(KeyError) as err:
        registry["no_such_network"]
    message = err.value.args[0]
    assert message.startswith(f"{key} = 'no_such_network'")
    assert all(name in message for name in registry.names())
    with pytest.raises(KeyError, match=key.replace(".", r"\.")):
        architecture_params({"architecture": "no_such_network"}, registry)
