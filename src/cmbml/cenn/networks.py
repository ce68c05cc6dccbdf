"""The CENN encoder-decoder network and the architecture registry (``cenn_net.architecture``).

Each architecture is one class registered in :data:`ARCHITECTURES`: ``Params`` (a pydantic model of its
block ``cenn_net.<name>``) and ``build``, which returns an uncompiled Keras model from standardised
patches ``(n, n, channels)`` to the standardised target-channel CMB ``(n, n, n_outputs)``: every component
of a patch at once (E; B; or Q and U together, channels ``[Q at each frequency, U at each frequency]``, so that
the network can tell E from B, which no filter shared by Q and U can). Keras is imported
inside the functions only, so that checking parameters stays fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from pydantic import BaseModel, ConfigDict

from cmbml.common.registry import Registry

if TYPE_CHECKING:
    import keras

ARCHITECTURES: Registry = Registry("cenn_net.architecture")


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
    import keras

    scaled = keras.layers.Rescaling(negative_slope, name=f"{name}_slope")(x)
    return keras.layers.Maximum(name=f"{name}_leaky")([x, scaled])


def cenn_network(n_channels: int = 3, l2: float = 1e-6, name: str = "cenn", n_outputs: int = 1) -> keras.Model:
    """CENN (Casas et al. 2022): a convolutional encoder-decoder with concatenated skips.

    Encoder: Conv2D 8/16/64/128 filters, kernels 9/9/7/7, stride 2, LeakyReLU(0.2). Decoder: four
    stride-2 transposed convolutions (64/16/8/1 filters, kernels 7/9/9/9), each but the last
    concatenated with the encoder output of the same size. L2 weight decay on every kernel.
    The output layer is linear (the CMB is signed), with ``n_outputs`` maps (2 for Q and U seen together, whose
    inputs are then the ``n_channels`` = 2 x frequencies of both). About 1.0 M parameters; the patch side can
    be any multiple of 16 (the model is built without a fixed size).

    LeakyReLU(0.2) is built as ``max(x, 0.2 x)`` (:func:`leaky_relu`), not with ``keras.layers.LeakyReLU``:
    TensorFlow's Grappler remapper (with oneDNN, the default on recent x86 CPUs) fuses
    Conv2D + BiasAdd + LeakyRelu and deletes the BiasAdd that the training graph's LeakyReluGrad still
    reads, then abandons the whole pass with "remapper failed: ... fanout ... LeakyReluGrad exist for
    missing node .../BiasAdd" on every fit. The maximum has the same values and, away from a
    pre-activation of exactly 0, the same gradient.
    """
    import keras

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
    outputs = deconv(n_outputs, 9, "deconv6", dtype="float32")(keras.layers.Concatenate(name="skip1")([d5, c1]))
    return keras.Model(inputs, outputs, name=name)



@ARCHITECTURES.register
class Original:
    """The published CENN (Casas et al. 2022): four stride-2 convolutions, four transposed convolutions
    with skips, about 1.0 M parameters; L2 weight decay ``cenn_train.l2``."""

    name: ClassVar[str] = "original"

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid")

    @staticmethod
    def build(params: Params, n_channels: int, l2: float, name: str = "cenn", n_outputs: int = 1) -> keras.Model:
        return cenn_network(n_channels=n_channels, l2=l2, name=name, n_outputs=n_outputs)
