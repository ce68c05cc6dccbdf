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


def cenn_network(n_channels: int = 3, l2: float = 1e-6, name: str = "cenn") -> keras.Model:
    """CENN (Casas et al. 2022): a convolutional encoder-decoder with concatenated skips.

    Encoder: Conv2D 8/16/64/128 filters, kernels 9/9/7/7, stride 2, LeakyReLU(0.2). Decoder: four
    stride-2 transposed convolutions (64/16/8/1 filters, kernels 7/9/9/9), each but the last
    concatenated with the encoder output of the same size. L2 weight decay on every kernel.
    The output layer is linear (the CMB is signed). About 1.0 M parameters; the patch side can
    be any multiple of 16 (the model is built without a fixed size).
    """
    reg = keras.regularizers.L2(l2)

    def conv(filters, kernel, layer_name):
        return keras.layers.Conv2D(filters, kernel, strides=2, padding="same", kernel_regularizer=reg, name=layer_name)

    def deconv(filters, kernel, layer_name):
        return keras.layers.Conv2DTranspose(filters, kernel, strides=2, padding="same", kernel_regularizer=reg,
                                            name=layer_name)

    def leaky(x):
        return keras.layers.LeakyReLU(negative_slope=0.2)(x)

    inputs = keras.Input(shape=(None, None, n_channels), name="M")
    c1 = leaky(conv(8, 9, "conv1")(inputs))
    c2 = leaky(conv(16, 9, "conv2")(c1))
    c3 = leaky(conv(64, 7, "conv3")(c2))
    c4 = leaky(conv(128, 7, "conv4")(c3))
    d3 = leaky(deconv(64, 7, "deconv3")(c4))
    d4 = leaky(deconv(16, 9, "deconv4")(keras.layers.Concatenate(name="skip3")([d3, c3])))
    d5 = leaky(deconv(8, 9, "deconv5")(keras.layers.Concatenate(name="skip2")([d4, c2])))
    outputs = deconv(1, 9, "deconv6")(keras.layers.Concatenate(name="skip1")([d5, c1]))
    return keras.Model(inputs, outputs, name=name)


def with_standardisation(core: keras.Model, x_mean, x_std, y_mean, y_std, name: str | None = None) -> keras.Model:
    """Wrap a network trained on standardised data so that it maps physical units to physical units.

    The statistics live in non-trainable ``Normalization`` layers, so they are saved with
    the model: ``x -> (x - x_mean) / x_std -> core -> y * y_std + y_mean``. Statistics may be
    scalars or per-channel sequences.
    """
    norm_in = keras.layers.Normalization(mean=x_mean, variance=np.square(x_std), name="standardise_input")
    norm_out = keras.layers.Normalization(mean=y_mean, variance=np.square(y_std), invert=True,
                                          name="unstandardise_output")
    inputs = keras.Input(shape=core.input_shape[1:], name=core.input_names[0] if hasattr(core, "input_names") else "input")
    outputs = norm_out(core(norm_in(inputs)))
    return keras.Model(inputs, outputs, name=name or f"{core.name}_physical")


def make_optimizer(name: str, learning_rate: float, clipnorm: float | None = None):
    """A Keras optimizer by name, with optional gradient-norm clipping."""
    kwargs = {"learning_rate": learning_rate}
    if clipnorm:
        kwargs["clipnorm"] = float(clipnorm)
    classes = {"adam": keras.optimizers.Adam, "sgd": keras.optimizers.SGD,
               "adagrad": keras.optimizers.Adagrad, "rmsprop": keras.optimizers.RMSprop}
    return classes[name](**kwargs)


def count_parameters(model: keras.Model) -> int:
    return int(sum(np.prod(w.shape) for w in model.trainable_weights))
