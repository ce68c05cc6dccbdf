"""Keras networks: the lensing CNN family (v1-v8) and input/target standardisation.

Importing this module imports Keras (and TensorFlow): keep it off start-up paths.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

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
    outputs = keras.layers.Conv2D(1, output_kernel, padding="same", activation=None, dtype="float32",
                                  kernel_initializer=kernel_initializer, name="kappa_out")(x)
    return keras.Model(inputs, outputs, name=name)


def leaky_relu(x, negative_slope: float, name: str):
    """LeakyReLU as ``max(x, negative_slope * x)`` from built-in layers (saved and loaded without custom
    objects), for ``0 <= negative_slope < 1``.

    Equal to ``keras.layers.LeakyReLU(negative_slope)`` in value; the gradient differs only at ``x == 0``
    exactly (1 instead of the slope). It builds no LeakyRelu op, whose fusion with a preceding
    convolution breaks Grappler's remapper in training graphs (see :func:`cenn_network`).
    Layers: ``<name>_slope`` (the scaled copy) and ``<name>_leaky`` (the maximum).
    """
    if not 0.0 <= negative_slope < 1.0:
        raise ValueError(f"negative_slope = {negative_slope}: max(x, a x) is a leaky ReLU only for 0 <= a < 1")
    scaled = keras.layers.Rescaling(negative_slope, name=f"{name}_slope")(x)
    return keras.layers.Maximum(name=f"{name}_leaky")([x, scaled])


def cenn_network(n_channels: int = 3, l2: float = 1e-6, name: str = "cenn") -> keras.Model:
    """CENN (Casas et al. 2022): a convolutional encoder-decoder with concatenated skips.

    Encoder: Conv2D 8/16/64/128 filters, kernels 9/9/7/7, stride 2, LeakyReLU(0.2). Decoder: four
    stride-2 transposed convolutions (64/16/8/1 filters, kernels 7/9/9/9), each but the last
    concatenated with the encoder output of the same size. L2 weight decay on every kernel.
    The output layer is linear (the CMB is signed). About 1.0 M parameters; the patch side can
    be any multiple of 16 (the model is built without a fixed size).

    LeakyReLU(0.2) is built as ``max(x, 0.2 x)`` (:func:`leaky_relu`), not with ``keras.layers.LeakyReLU``:
    TensorFlow's Grappler remapper (with oneDNN, the default on recent x86 CPUs) fuses
    Conv2D + BiasAdd + LeakyRelu and deletes the BiasAdd that the training graph's LeakyReluGrad still
    reads, then abandons the whole pass with "remapper failed: ... fanout ... LeakyReluGrad exist for
    missing node .../BiasAdd" on every fit. The maximum has the same values and, away from a
    pre-activation of exactly 0, the same gradient.
    """
    reg = keras.regularizers.L2(l2)

    def conv(filters, kernel, layer_name):
        return keras.layers.Conv2D(filters, kernel, strides=2, padding="same", kernel_regularizer=reg, name=layer_name)

    def deconv(filters, kernel, layer_name, **kwargs):
        return keras.layers.Conv2DTranspose(filters, kernel, strides=2, padding="same", kernel_regularizer=reg,
                                            name=layer_name, **kwargs)

    inputs = keras.Input(shape=(None, None, n_channels), name="M")
    c1 = leaky_relu(conv(8, 9, "conv1")(inputs), 0.2, "conv1")
    c2 = leaky_relu(conv(16, 9, "conv2")(c1), 0.2, "conv2")
    c3 = leaky_relu(conv(64, 7, "conv3")(c2), 0.2, "conv3")
    c4 = leaky_relu(conv(128, 7, "conv4")(c3), 0.2, "conv4")
    d3 = leaky_relu(deconv(64, 7, "deconv3")(c4), 0.2, "deconv3")
    d4 = leaky_relu(deconv(16, 9, "deconv4")(keras.layers.Concatenate(name="skip3")([d3, c3])), 0.2, "deconv4")
    d5 = leaky_relu(deconv(8, 9, "deconv5")(keras.layers.Concatenate(name="skip2")([d4, c2])), 0.2, "deconv5")
    outputs = deconv(1, 9, "deconv6", dtype="float32")(keras.layers.Concatenate(name="skip1")([d5, c1]))
    return keras.Model(inputs, outputs, name=name)


@contextlib.contextmanager
def dtype_policy(precision: str) -> Iterator[None]:
    """Build the layers created inside with a Keras dtype policy (``float32``, ``mixed_bfloat16`` or
    ``mixed_float16``: half-precision compute, float32 weights); the output layers of the networks here
    always compute in float32. The global policy is restored on exit, so the standardisation wrapper
    and everything after stay in float32. Under ``mixed_float16`` ``compile`` scales the loss."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(precision)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


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
