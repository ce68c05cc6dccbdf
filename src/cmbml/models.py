"""Keras networks: the lensing CNN family (v1-v8) and input/target standardisation.

Importing this module imports Keras (and TensorFlow): keep it off start-up paths.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
import numpy as np


def lensing_cnn(
    npix: int | None,
    conv_filters: Sequence[int],
    conv_kernels: Sequence[int],
    output_kernel: int,
    kernel_initializer: str = "orthogonal",
    name: str = "lensing_cnn",
) -> keras.Model:
    """The cnn_lensing network: a stack of same-padded ReLU convolutions.

    Unlike the original, the output layer is linear: a ReLU there clips negative kappa.
    Input (npix, npix, 1) standardised lensed T; output (npix, npix, 1) standardised kappa.
    ``npix=None`` builds a size-agnostic (fully convolutional) model.
    """
    inputs = keras.Input(shape=(npix, npix, 1), name="T_lensed")
    x = inputs
    for i, (filters, kernel) in enumerate(zip(conv_filters, conv_kernels)):
        x = keras.layers.Conv2D(filters, kernel, padding="same", activation="relu",
                                kernel_initializer=kernel_initializer, name=f"conv{i + 1}")(x)
    outputs = keras.layers.Conv2D(1, output_kernel, padding="same", activation=None,
                                  kernel_initializer=kernel_initializer, name="kappa_out")(x)
    return keras.Model(inputs, outputs, name=name)


def with_standardisation(
    core: keras.Model, x_mean: float, x_std: float, y_mean: float, y_std: float, name: str | None = None
) -> keras.Model:
    """Wrap a network trained on standardised data so that it maps physical units to physical units.

    The statistics live in non-trainable ``Normalization`` layers, so they are saved with
    the model: ``x -> (x - x_mean) / x_std -> core -> y * y_std + y_mean``.
    """
    norm_in = keras.layers.Normalization(mean=float(x_mean), variance=float(x_std) ** 2, name="standardise_input")
    norm_out = keras.layers.Normalization(mean=float(y_mean), variance=float(y_std) ** 2, invert=True,
                                          name="unstandardise_output")
    inputs = keras.Input(shape=core.input_shape[1:], name=core.input_names[0] if hasattr(core, "input_names") else "input")
    outputs = norm_out(core(norm_in(inputs)))
    return keras.Model(inputs, outputs, name=name or f"{core.name}_physical")


def make_optimizer(name: str, learning_rate: float, clipnorm: float | None = None, weight_decay: float | None = None):
    """A Keras optimizer by name, with optional gradient-norm clipping."""
    kwargs = {"learning_rate": learning_rate}
    if clipnorm:
        kwargs["clipnorm"] = float(clipnorm)
    classes = {"adam": keras.optimizers.Adam, "sgd": keras.optimizers.SGD,
               "adagrad": keras.optimizers.Adagrad, "rmsprop": keras.optimizers.RMSprop}
    return classes[name](**kwargs)


def count_parameters(model: keras.Model) -> int:
    return int(sum(np.prod(w.shape) for w in model.trainable_weights))
